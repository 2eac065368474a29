package middleware

import (
	"errors"
	"log/slog"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	wmmiddleware "github.com/ThreeDotsLabs/watermill/message/router/middleware"

	"github.com/social/user-events-router/handlers"
)

// ChainOptions configures the middleware chain.
type ChainOptions struct {
	Logger *slog.Logger
	Poison *Poison
	// Retries in process for transient failures (not counting the first attempt).
	RetryMax             int
	RetryInitialInterval time.Duration
	RetryMaxInterval     time.Duration
	// HandlerTimeout bounds each attempt.
	HandlerTimeout time.Duration
	// Observe, when set, runs right inside Correlation to record the final
	// outcome of each delivery (metrics).
	Observe message.HandlerMiddleware
	// OnRetryFunc, when set, is called on each in-process retry.
	OnRetryFunc func()
}

// Chain returns the middleware, outermost first. The order is the design:
//
//  1. Correlation — outermost, so every later step (log lines, poison
//     entries, commands) carries the correlation id, and the outcome of the
//     whole delivery is logged once.
//     (Metrics, when given, runs right inside it and records the same
//     final outcome.)
//  2. Poison — outside Retry, so it judges only the final outcome of all
//     in-process attempts: permanent errors, panics that survived the
//     retries, and transient errors on the last delivery become committed
//     poison entries (and the message is acked); any other error passes on
//     and the message is handed back for a delayed redelivery.
//  3. Retry — retries transient errors (and panics) in process with
//     exponential backoff and jitter; permanent errors are not retried.
//  4. Timeout — inside Retry, so each attempt gets its own deadline.
//  5. Recoverer — innermost, so a panic becomes an error that Retry and
//     Poison can see, with its stack.
func Chain(o ChainOptions) ([]message.HandlerMiddleware, error) {
	if o.Logger == nil || o.Poison == nil {
		return nil, errors.New("middleware: Chain needs a logger and a poison middleware")
	}
	if o.RetryMax < 0 {
		return nil, errors.New("middleware: RetryMax must not be negative")
	}
	if o.HandlerTimeout <= 0 || o.RetryInitialInterval <= 0 {
		return nil, errors.New("middleware: HandlerTimeout and RetryInitialInterval must be positive")
	}
	retry := retry(retryOptions{
		max: o.RetryMax, initial: o.RetryInitialInterval, ceil: o.RetryMaxInterval,
		multiplier: 2, randomization: 0.5,
		logger: o.Logger.With("component", "retry"),
		shouldRetryFunc: func(err error) bool {
			return !handlers.IsPermanent(err) && !handlers.IsHold(err)
		},
	})
	chain := []message.HandlerMiddleware{Correlation(o.Logger)}
	if o.Observe != nil {
		chain = append(chain, o.Observe)
	}
	chain = append(chain, o.Poison.Middleware, retry)
	if o.OnRetryFunc != nil {
		chain = append(chain, countRetries(o.OnRetryFunc))
	}
	return append(chain,
		wmmiddleware.Timeout(o.HandlerTimeout),
		wmmiddleware.Recoverer,
	), nil
}

// countRetries sits just inside Retry: every call after a message's first
// is a retry.
func countRetries(onRetry func()) message.HandlerMiddleware {
	return func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			if handlers.Attempted(msg.Metadata) {
				onRetry()
			}
			handlers.SetAttempted(msg.Metadata)
			return h(msg)
		}
	}
}

// Wrap applies middleware (outermost first) to h, for the paths that call
// the chain directly instead of through the Watermill router: HTTP ingress
// and replay.
func Wrap(h message.HandlerFunc, mws []message.HandlerMiddleware) message.HandlerFunc {
	for i := len(mws) - 1; i >= 0; i-- {
		h = mws[i](h)
	}
	return h
}
