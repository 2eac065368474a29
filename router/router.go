package router

import (
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"

	"github.com/social/user-events-router/configs"
	"github.com/social/user-events-router/router/broker"
	"github.com/social/user-events-router/router/consume"
)

// HandlerName is the Watermill handler that consumes the user events. It is
// stable: it appears in logs, metrics and poison entries.
const HandlerName = "user_events"

// Options wires one Watermill router.
type Options struct {
	Config  configs.Config
	Binding broker.Binding
	// Conn is dedicated to the subscriber: closing the router drains it.
	Conn   *nats.Conn
	Logger *slog.Logger
	// Handle commits the command for one message (see handlers.Dispatcher).
	Handle message.NoPublishHandlerFunc
	// Middleware wraps Handle, outermost first.
	Middleware []message.HandlerMiddleware
	// OnAck, if set, is told how long each acked message was in the process.
	OnAck func(time.Duration)
}

// Router is the Watermill router with its JetStream subscriber.
type Router struct {
	*message.Router
	sub          *consume.Subscriber
	closeTimeout time.Duration
	onAck        func(time.Duration)
	lastAck      atomic.Int64 // Unix nanoseconds; 0 before the first ack
}

// LastAck is when this process last acked a JetStream message (after its
// command was committed); the zero time before the first.
func (r *Router) LastAck() time.Time {
	if n := r.lastAck.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
}

func (r *Router) acked(d time.Duration) {
	r.lastAck.Store(time.Now().UnixNano())
	if r.onAck != nil {
		r.onAck(d)
	}
}

// InFlight is how many JetStream messages this process has received and
// not yet acked or nacked.
func (r *Router) InFlight() int { return r.sub.InFlight() }

// InFlightBytes is the bytes of those messages, which MAX_IN_FLIGHT_BYTES
// bounds.
func (r *Router) InFlightBytes() int64 { return r.sub.InFlightBytes() }

// Close closes the Watermill router and then waits until the subscriber has
// settled every message in flight with the broker: Watermill's own Close
// returns once the handlers have returned, before their acks are sent, and
// the caller is about to close the NATS connection.
func (r *Router) Close() error {
	err := r.Router.Close()
	if !r.sub.WaitClosed(r.closeTimeout + 10*time.Second) {
		return errors.Join(err, errors.New("router: subscriber did not close in time"))
	}
	return err
}

// New builds the Watermill router: the JetStream subscriber bound to the
// durable (see Subscriber), and one handler behind the middleware chain.
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
	wmLogger := newWatermillLogger(o.Logger.With("component", "watermill"))
	rt := &Router{closeTimeout: o.Config.CloseTimeout, onAck: o.OnAck}
	sub, err := consume.NewSubscriber(consume.SubscriberOptions{
		Conn:             o.Conn,
		Binding:          o.Binding,
		MaxInFlight:      o.Config.MaxInFlight,
		MaxInFlightBytes: o.Config.MaxInFlightBytes,
		Backoff:          consume.Backoff{First: o.Config.NakDelay, Max: o.Config.NakDelayMax},
		CloseTimeout:     o.Config.CloseTimeout,
		Logger:           o.Logger,
		OnAck:            rt.acked,
	})
	if err != nil {
		return nil, err
	}
	r, err := message.NewRouter(message.RouterConfig{CloseTimeout: o.Config.CloseTimeout}, wmLogger)
	if err != nil {
		return nil, err
	}
	// Outermost: it acks or NAKs each message with the outcome of the rest.
	r.AddMiddleware(sub.Middleware)
	for _, m := range o.Middleware {
		r.AddMiddleware(m)
	}
	r.AddConsumerHandler(HandlerName, o.Config.Subject, sub, o.Handle)
	rt.Router, rt.sub = r, sub
	return rt, nil
}
