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

// New builds the Watermill router: a JetStream subscriber bound to the
// durable with manual acks, and one handler behind the middleware chain.
func New(o Options) (*message.Router, error) {
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
	sub, err := NewSubscriber(o.Conn, o.Config, o.Binding, wmLogger)
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
	r.AddConsumerHandler(HandlerName, o.Config.Subject, sub, o.Handle)
	return r, nil
}

// NewSubscriber is the watermill-nats JetStream subscriber bound to the
// durable of b. Acks are manual: the client library's automatic ack (after
// the callback returns) would delete a message from the WorkQueue stream
// before its command is committed. Watermill acks only after the handler
// returned without error, i.e. after the commit.
func NewSubscriber(nc *nats.Conn, cfg configs.Config, b Binding, logger watermill.LoggerAdapter) (*wmnats.Subscriber, error) {
	count := cfg.Subscribers
	if b.Queue == "" {
		// Without a deliver group only one subscription may bind the consumer.
		count = 1
	}
	return wmnats.NewSubscriberWithNatsConn(nc, wmnats.SubscriberSubscriptionConfig{
		Unmarshaler:      Unmarshaler{},
		SubscribersCount: count,
		// Past this, the subscriber stops waiting for our ack and the broker
		// redelivers after its own ack wait; never an ack without a commit.
		AckWaitTimeout:   b.AckWait,
		CloseTimeout:     cfg.CloseTimeout,
		SubscribeTimeout: 30 * time.Second,
		NakDelay:         Backoff{First: cfg.NakDelay, Max: cfg.NakDelayMax},
		QueueGroupPrefix: b.Queue,
		JetStream: wmnats.JetStreamConfig{
			SubscribeOptions: []nats.SubOpt{nats.Bind(b.Stream, b.Durable), nats.ManualAck()},
			DurablePrefix:    b.Durable,
		},
	}, logger)
}
