package router

import (
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
)

// metaAckToken links a Watermill message to the JetStream message it came
// from, so the acker can settle it.
const metaAckToken = "ack_token"

// acker owns the JetStream acks. The watermill-nats subscriber would ack
// in its own goroutine after our handler returned, racing a shutdown that
// closes the connection; and it would forget a message once it stops
// waiting. Instead, the unmarshaler keeps the JetStream message aside and
// blanks the copy the subscriber holds (a message without a reply subject
// is never acked by it), and the acker acks (synchronously, after the
// commit) or NAKs (with the backoff delay) itself. drainingSubscriber calls
// it, and can therefore wait until every ack has really reached the broker.
type acker struct {
	backoff Backoff
	logger  *slog.Logger

	next    atomic.Uint64
	pending sync.Map // token → *nats.Msg
}

// Unmarshal implements the watermill-nats Unmarshaler.
func (a *acker) Unmarshal(m *nats.Msg) (*message.Message, error) {
	msg, err := Unmarshaler{}.Unmarshal(m)
	if err != nil || m.Reply == "" {
		return msg, err
	}
	token := strconv.FormatUint(a.next.Add(1), 10)
	a.pending.Store(token, &nats.Msg{Subject: m.Subject, Reply: m.Reply, Header: m.Header, Data: m.Data, Sub: m.Sub})
	msg.Metadata.Set(metaAckToken, token)
	m.Reply = "" // the subscriber must not ack: the acker does, after the commit
	return msg, nil
}

// settle acks msg's JetStream message after a successful handling, or NAKs
// it with the backoff delay for its delivery count.
func (a *acker) settle(msg *message.Message, ok bool) {
	v, found := a.pending.LoadAndDelete(msg.Metadata.Get(metaAckToken))
	if !found {
		return
	}
	m := v.(*nats.Msg)
	if ok {
		if err := m.AckSync(); err != nil {
			// The broker redelivers after its ack wait; the command id
			// keeps the repeat from being stored twice.
			a.logger.Warn("ack not confirmed; the message will be redelivered", "message_uuid", msg.UUID, "error", err)
		}
		return
	}
	delay := a.backoff.First
	if meta, err := m.Metadata(); err == nil {
		delay = a.backoff.WaitTime(meta.NumDelivered)
	}
	if err := m.NakWithDelay(delay); err != nil {
		a.logger.Warn("nak not sent; the message will be redelivered after the ack wait", "message_uuid", msg.UUID, "error", err)
	}
}

// forget drops the JetStream message of msg without acking it: the broker
// redelivers it after its ack wait.
func (a *acker) forget(msg *message.Message) {
	a.pending.Delete(msg.Metadata.Get(metaAckToken))
}
