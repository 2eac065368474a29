package handlers

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/social/user-events-router/schema"
)

// Dispatcher decodes an incoming event, picks the handler of its action,
// and commits the command it builds. It returns only after the command is
// durably written, so the caller may ack (NATS) or answer 200 (HTTP).
type Dispatcher struct {
	registry  Registry
	publisher message.Publisher
	topic     string
}

// NewDispatcher validates its dependencies; publisher writes commands to topic.
func NewDispatcher(registry Registry, publisher message.Publisher, topic string) (*Dispatcher, error) {
	if len(registry) == 0 {
		return nil, errors.New("handlers: empty registry")
	}
	for action, h := range registry {
		if h.Name == "" || h.Build == nil || h.Action != action {
			return nil, fmt.Errorf("handlers: registration for action %q is incomplete or mismatched", action)
		}
	}
	if publisher == nil {
		return nil, errors.New("handlers: nil publisher")
	}
	if topic == "" {
		return nil, errors.New("handlers: empty command topic")
	}
	return &Dispatcher{registry: registry, publisher: publisher, topic: topic}, nil
}

// Handle is a message.NoPublishHandlerFunc: it builds and commits the
// command for msg, or returns why it could not. Decoding failures are
// permanent (errors.Is schema.ErrInvalidEvent); commit failures are not.
func (d *Dispatcher) Handle(msg *message.Message) error {
	cmd, err := d.Build(msg)
	if err != nil {
		return err
	}
	payload, err := json.Marshal(cmd)
	if err != nil {
		return Permanent(fmt.Errorf("encode command: %w", err))
	}
	out := message.NewMessage(cmd.CommandID, payload)
	out.Metadata.Set(MetaCorrelationID, cmd.CorrelationID)
	out.Metadata.Set(MetaCommandType, string(cmd.Type))
	out.SetContext(msg.Context())
	if err := d.publisher.Publish(d.topic, out); err != nil {
		return fmt.Errorf("commit command %s: %w", cmd.CommandID, err)
	}
	return nil
}

// Build decodes msg and returns its command without committing it. It also
// records the handler name and correlation id in msg's metadata for logs.
func (d *Dispatcher) Build(msg *message.Message) (schema.Command, error) {
	subject := msg.Metadata.Get(MetaSubject)
	ev, err := schema.DecodeEvent(subject, msg.Payload)
	if err != nil {
		return schema.Command{}, fmt.Errorf("decode %s: %w", orHTTP(subject), err)
	}
	msg.Metadata.Set(MetaAction, ev.Action)
	msg.Metadata.Set(MetaUserID, ev.ID)
	msg.Metadata.Set(MetaOccurredAt, ev.Timestamp.UTC().Format(time.RFC3339Nano))
	h, ok := d.registry[ev.Action]
	if !ok {
		return schema.Command{}, Permanent(fmt.Errorf("no handler for action %q", ev.Action))
	}
	msg.Metadata.Set(MetaHandler, h.Name)

	corr := ResolveCorrelationID(ev.RequestID, msg.Metadata.Get(MetaCorrelationID), msg.Payload)
	msg.Metadata.Set(MetaCorrelationID, corr)

	ingress := msg.Metadata.Get(MetaIngress)
	if ingress == "" {
		ingress = schema.IngressNATS
	}
	return h.Build(ev, Delivery{
		Subject:         subjectOf(subject, ev.Action),
		Ingress:         ingress,
		StreamSequence:  parseUint(msg.Metadata.Get(MetaStreamSeq)),
		DeliveryAttempt: parseUint(msg.Metadata.Get(MetaDeliveryAttempt)),
		CorrelationID:   corr,
	}), nil
}

// subjectOf names the subject an event belongs on; HTTP arrivals have none,
// so the command records the subject the Auth Service would have used.
func subjectOf(subject, action string) string {
	if subject != "" {
		return subject
	}
	return "user.events." + action
}

func orHTTP(subject string) string {
	if subject == "" {
		return "event"
	}
	return subject
}

func parseUint(s string) uint64 {
	n, _ := strconv.ParseUint(s, 10, 64)
	return n
}
