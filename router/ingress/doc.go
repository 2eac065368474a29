// Package ingress is the HTTP fallback: the Auth Service posts an event to
// POST /api/sync/users (Path) when NATS is down, and it runs through the
// same router.Pipeline as a JetStream message, answering 200 only once the
// command is committed. A body over the size limit is kept in the poison
// queue rather than lost. NewServer bounds every phase of a request.
package ingress
