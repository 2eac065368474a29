// Package middleware holds the Watermill middleware every event passes
// through, whichever way it arrived (NATS, HTTP, replay): correlation ids
// and logging, poison-queue routing, retries, per-attempt timeouts and panic
// recovery. chain.go builds them in their one correct order.
package middleware
