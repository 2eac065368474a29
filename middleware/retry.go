package middleware

import (
	"context"
	"log/slog"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/cenkalti/backoff/v5"

	"github.com/social/user-events-router/handlers"
)

// retryOptions are the in-process retry settings of ChainOptions.
type retryOptions struct {
	max             int
	initial, ceil   time.Duration
	multiplier      float64
	randomization   float64
	logger          *slog.Logger
	shouldRetryFunc func(error) bool
}

// retry retries a transient error (and a recovered panic) in process, up to
// max times, waiting initial × multiplier^k with jitter, at most ceil,
// between tries. Each try starts from the message's context as it came in,
// so a try's deadline (Timeout, inside) does not cut the next one short.
// When the context ends while it waits, it returns the context's cause.
//
// It does what Watermill's middleware.Retry did here, less its cost on the
// path that matters: that one built a backoff, its options and closures for
// every message, and nearly every message succeeds on its first try. Here
// the first try is a plain call, and the backoff exists only once it failed.
func retry(o retryOptions) message.HandlerMiddleware {
	return func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			ctx := msg.Context()
			out, err := h(msg)
			if err == nil || o.max == 0 || !o.shouldRetryFunc(err) {
				return out, err
			}
			b := backoff.NewExponentialBackOff()
			b.InitialInterval, b.MaxInterval = o.initial, o.ceil
			b.Multiplier, b.RandomizationFactor = o.multiplier, o.randomization
			b.Reset()
			for n := 1; n <= o.max; n++ {
				if cause := context.Cause(ctx); cause != nil {
					return out, cause
				}
				wait := b.NextBackOff()
				o.logger.LogAttrs(ctx, slog.LevelWarn, "handler failed; retrying in process",
					slog.String("error", err.Error()), slog.Int("retry", n), slog.Int("max_retries", o.max),
					slog.Duration("wait", wait), slog.String("message_uuid", msg.UUID),
					slog.String("correlation_id", handlers.CorrelationID(msg.Metadata)))
				t := time.NewTimer(wait)
				select {
				case <-t.C:
				case <-ctx.Done():
					t.Stop()
					return out, context.Cause(ctx)
				}
				msg.SetContext(ctx)
				out, err = h(msg)
				if err == nil || !o.shouldRetryFunc(err) {
					return out, err
				}
			}
			return out, err
		}
	}
}
