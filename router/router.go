package router

import (
	"errors"
	"log/slog"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmnats "github.com/ThreeDotsLabs/watermill-nats/v2/pkg/nats"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"

	"github.com/social/user-events-router/configs"
)

// HandlerName is the Watermill handler that consumes the user events. It is
// stable: it appears in logs, metrics and poison entries.
const HandlerName = "user_events"

// Options wires one Watermill router.
type Options struct {
	Config  configs.Config
	Binding Binding
	// Conn is dedicated to the subscriber: closing the router drains it.
	Conn   *nats.Conn
	Logger *slog.Logger
	// Handle commits the command for one message (see handlers.Dispatcher).
	Handle message.NoPublishHandlerFunc
	// Middleware wraps Handle, outermost first.
	Middleware []message.HandlerMiddleware
}

// Router is the Watermill router with the count of messages in flight.
type Router struct {
	*message.Router
	drain        *drainingSubscriber
	closeTimeout time.Duration
}

// InFlight is how many messages are handed to the handler and not yet
// acked or nacked.
func (r *Router) InFlight() int { return r.drain.InFlight() }

// Close closes the Watermill router and then waits until the subscriber has
// settled every in-flight message with the broker and closed: Watermill's
// own Close returns once the handlers have returned, before their acks are
// sent, and the caller is about to close the NATS connection.
func (r *Router) Close() error {
	err := r.Router.Close()
	if !r.drain.waitClosed(r.closeTimeout + 5*time.Second) {
		return errors.Join(err, errors.New("router: subscriber did not close in time"))
	}
	return err
}

// New builds the Watermill router: a JetStream subscriber bound to the
// durable with manual acks, and one handler behind the middleware chain.
func New(o Options) (*Router, error) {
	if o.Conn == nil {
		return nil, errors.New("router: nil NATS connection")
	}
	if o.Handle == nil {
		return nil, errors.New("router: nil handler")
	}
	if o.Logger == nil {
		return nil, errors.New("router: nil logger")
	}
	wmLogger := watermill.NewSlogLoggerWithLevelMapping(o.Logger.With("component", "watermill"), map[slog.Level]slog.Level{
		// Watermill logs every message at info; keep that at debug.
		slog.LevelInfo: slog.LevelDebug,
	})
	a := &acker{backoff: Backoff{First: o.Config.NakDelay, Max: o.Config.NakDelayMax}, logger: o.Logger}
	sub, err := newSubscriber(o.Conn, o.Config, o.Binding, a, wmLogger)
	if err != nil {
		return nil, err
	}
	r, err := message.NewRouter(message.RouterConfig{CloseTimeout: o.Config.CloseTimeout}, wmLogger)
	if err != nil {
		return nil, err
	}
	for _, m := range o.Middleware {
		r.AddMiddleware(m)
	}
	drain := newDrainingSubscriber(sub, a, o.Config.CloseTimeout)
	r.AddConsumerHandler(HandlerName, o.Config.Subject, drain, o.Handle)
	return &Router{Router: r, drain: drain, closeTimeout: o.Config.CloseTimeout}, nil
}

// newSubscriber is the watermill-nats JetStream subscriber bound to the
// durable of b. Acks are manual: the client library's automatic ack (after
// the callback returns) would delete a message from the WorkQueue stream
// before its command is committed. The acker acks only after the handler
// returned without error, i.e. after the commit.
func newSubscriber(nc *nats.Conn, cfg configs.Config, b Binding, a *acker, logger watermill.LoggerAdapter) (*wmnats.Subscriber, error) {
	count := cfg.Subscribers
	if b.Queue == "" {
		// Without a deliver group only one subscription may bind the consumer.
		count = 1
	}
	return wmnats.NewSubscriberWithNatsConn(nc, wmnats.SubscriberSubscriptionConfig{
		Unmarshaler:      a,
		SubscribersCount: count,
		// How long one subscription waits for the handler before taking the
		// next message; the acker still settles a late one.
		AckWaitTimeout:   b.AckWait,
		CloseTimeout:     cfg.CloseTimeout,
		SubscribeTimeout: 30 * time.Second,
		QueueGroupPrefix: b.Queue,
		JetStream: wmnats.JetStreamConfig{
			SubscribeOptions: []nats.SubOpt{nats.Bind(b.Stream, b.Durable), nats.ManualAck()},
			DurablePrefix:    b.Durable,
		},
	}, logger)
}
