package consume

import (
	"context"
	"math"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/social/user-events-router/router/broker"
)

// This file is the one place the subscriber still uses nats.go's legacy
// JetStream API, for the one thing the jetstream package's push consumers
// cannot do (nats.go v1.55.0): lift the client's pending limits.
//
// PushConsumer.Consume (jetstream/push.go) subscribes to the deliver
// subject with conn.QueueSubscribe (or conn.Subscribe), which gives the
// subscription the client's default limits, nats.DefaultSubPendingMsgsLimit
// (500,000 messages) and nats.DefaultSubPendingBytesLimit (64 MiB), set in
// nats.go's subscribeLocked. Past them the client drops what the broker
// pushes, as a slow consumer. Nothing there changes them: the only
// PushConsumeOpt is ConsumeErrHandler; the *nats.Subscription stays inside
// the unexported pushSubscription; and jetstream.Msg does not give out its
// *nats.Msg (toJSMsg is unexported either), so neither can the subscriber
// subscribe to the deliver subject itself and still hand out jetstream
// messages. The legacy js.Subscribe returns its *nats.Subscription, whose
// SetPendingLimits does it (and even raises the limits itself for a
// durable with a max ack pending over the default, in js.go's subscribe).
//
// Whether the defaults suffice depends on the durable (see
// broker.PendingLimitsNeeded); where they do not, the subscriber subscribes here,
// and sees the same jetstream.ConsumeContext and jetstream.Msg either way.

// subscribeLegacy binds a subscription to the durable of b (in its deliver
// group, if it has one) through the legacy API, with no pending limits: the
// durable's MaxAckPending bounds what the broker pushes. It delivers to
// handler as PushConsumer.Consume does.
//
// pendingBytes bounds what the client holds of what the broker pushed and
// the subscriber has not received yet (-1: no bound). Past it the client
// drops what arrives, as a slow consumer, and the broker delivers it again
// after the ack wait — on a durable that redelivers without limit a trip,
// not a delivery (see broker.ClientPendingBytes).
func subscribeLegacy(nc *nats.Conn, b broker.Binding, topic string, handler jetstream.MessageHandler, pendingBytes int64) (jetstream.ConsumeContext, error) {
	js, err := nc.JetStream()
	if err != nil {
		return nil, err
	}
	cb := func(m *nats.Msg) { handler(legacyMsg{m}) }
	opts := []nats.SubOpt{nats.Bind(b.Stream, b.Durable), nats.ManualAck()}
	var sub *nats.Subscription
	if b.Queue != "" {
		sub, err = js.QueueSubscribe(topic, b.Queue, cb, opts...)
	} else {
		sub, err = js.Subscribe(topic, cb, opts...)
	}
	if err != nil {
		return nil, err
	}
	if pendingBytes > math.MaxInt {
		pendingBytes = -1
	}
	if err := sub.SetPendingLimits(-1, int(pendingBytes)); err != nil {
		_ = sub.Unsubscribe()
		return nil, err
	}
	c := &legacyConsume{sub: sub, closed: make(chan struct{})}
	sub.SetClosedHandler(func(string) { c.close() })
	if !sub.IsValid() {
		c.close() // gone before the handler was set
	}
	return c, nil
}

// legacyConsume is a legacy subscription as a jetstream.ConsumeContext.
type legacyConsume struct {
	sub    *nats.Subscription
	once   sync.Once
	closed chan struct{}
}

func (c *legacyConsume) close() { c.once.Do(func() { close(c.closed) }) }

// Stop unsubscribes; messages the client holds are dropped.
func (c *legacyConsume) Stop() { _ = c.sub.Unsubscribe() }

// Drain unsubscribes once the client has passed on the messages it holds.
// Its error is dropped, as the jetstream package's Drain drops it: a
// subscription that cannot drain is closed already, and Closed says so.
func (c *legacyConsume) Drain() { _ = c.sub.Drain() }

// Closed is closed once the callback has returned for the last message.
func (c *legacyConsume) Closed() <-chan struct{} { return c.closed }

// legacyMsg is a message of a legacy subscription as a jetstream.Msg.
type legacyMsg struct{ m *nats.Msg }

func (l legacyMsg) Data() []byte         { return l.m.Data }
func (l legacyMsg) Headers() nats.Header { return l.m.Header }
func (l legacyMsg) Subject() string      { return l.m.Subject }
func (l legacyMsg) Reply() string        { return l.m.Reply }
func (l legacyMsg) Ack() error           { return l.m.Ack() }
func (l legacyMsg) Nak() error           { return l.m.Nak() }
func (l legacyMsg) InProgress() error    { return l.m.InProgress() }
func (l legacyMsg) Term() error          { return l.m.Term() }
func (l legacyMsg) TermWithReason(string) error {
	// The legacy API sends no reason; the message is terminated all the same.
	return l.m.Term()
}

func (l legacyMsg) NakWithDelay(d time.Duration) error { return l.m.NakWithDelay(d) }

func (l legacyMsg) DoubleAck(ctx context.Context) error { return l.m.AckSync(nats.Context(ctx)) }

func (l legacyMsg) Metadata() (*jetstream.MsgMetadata, error) {
	md, err := l.m.Metadata()
	if err != nil {
		return nil, err
	}
	return &jetstream.MsgMetadata{
		Sequence:     jetstream.SequencePair{Consumer: md.Sequence.Consumer, Stream: md.Sequence.Stream},
		NumDelivered: md.NumDelivered,
		NumPending:   md.NumPending,
		Timestamp:    md.Timestamp,
		Stream:       md.Stream,
		Consumer:     md.Consumer,
		Domain:       md.Domain,
	}, nil
}
