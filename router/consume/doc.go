// Package consume takes the user events off the JetStream durable that
// router/broker bound, for one Watermill handler: the Subscriber (through
// nats.go's jetstream package, or its one legacy subscription where only
// that lifts the client's pending limits), the Unmarshaler that turns a
// JetStream message into a Watermill message with its delivery facts, the
// sequencer that keeps one user's events in stream order, the byte budget
// behind MAX_IN_FLIGHT_BYTES, the workers that run the handlers, and the
// Backoff of a message handed back. router.New assembles it with the
// handler chain.
package consume
