// Package router connects the router to NATS JetStream and wires the
// Watermill router: it provisions the Auth Service's stream when missing,
// binds the shared durable consumer (as found, or creates a sensible one),
// turns JetStream messages into Watermill messages with their delivery
// facts, and runs the dispatch handler behind the middleware chain. It also
// serves the HTTP fallback and the admin endpoints, and watches what the
// router depends on (Health) for /readyz, /status and the state metrics.
package router
