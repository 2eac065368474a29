// Package router connects the router to NATS JetStream and wires the
// Watermill router: it provisions the Auth Service's stream when missing,
// binds the shared durable consumer (as found, or creates a sensible one),
// turns JetStream messages into Watermill messages with their delivery
// facts, and runs the dispatch handler behind the middleware chain.
package router
