package consume

import (
	"strconv"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/social/user-events-router/handlers"
	"github.com/social/user-events-router/schema"
)

// messageNamespace derives stable message UUIDs from stream positions.
var messageNamespace = uuid.MustParse("0b7e4c0a-2f51-4d8e-9a63-5c1d7e9f2a48")

// Unmarshaler turns a JetStream message into a Watermill message that
// carries the delivery facts (subject, stream sequence, delivery count) as
// metadata. The producer sends no headers, so the message UUID is derived
// from the stream and sequence: the same on every redelivery.
//
// It never fails: a message it could not describe would be left unacked
// and redelivered forever. Anything wrong with the body is for the handler
// to find and poison, with the original bytes.
type Unmarshaler struct{}

// Unmarshal describes one JetStream message for the handler.
func (Unmarshaler) Unmarshal(m jetstream.Msg) (*message.Message, error) {
	// Sized for what the handler chain adds (action, user, correlation id, …).
	md := make(message.Metadata, 16)
	for k, v := range m.Headers() {
		// Not the publisher's dedup id, nor the pin the server puts on
		// every delivery of a pinned durable: they name the delivery, not
		// the event.
		if len(v) > 0 && k != jetstream.MsgIDHeader && k != pinIDHeader {
			md.Set("header_"+k, v[0])
		}
	}
	handlers.SetSubject(md, m.Subject())
	handlers.SetIngress(md, schema.IngressNATS)

	var id string
	if meta, err := m.Metadata(); err == nil {
		handlers.SetStream(md, meta.Stream)
		handlers.SetStreamSeq(md, meta.Sequence.Stream)
		handlers.SetDeliveryAttempt(md, meta.NumDelivered)
		var buf [64]byte
		name := append(buf[:0], meta.Stream...)
		name = append(name, ':')
		id = handlers.NameUUID(messageNamespace, strconv.AppendUint(name, meta.Sequence.Stream, 10))
	} else {
		// Not a JetStream delivery (no ack reply): name it by content.
		id = handlers.NameUUID(messageNamespace, append([]byte(m.Subject()+"\x00"), m.Data()...))
	}
	msg := message.NewMessage(id, m.Data())
	msg.Metadata = md
	return msg, nil
}
