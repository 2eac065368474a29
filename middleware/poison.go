package middleware

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	wmmiddleware "github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/google/uuid"

	"github.com/social/user-events-router/handlers"
	"github.com/social/user-events-router/schema"
	"github.com/social/user-events-router/store"
)

// Error classes of poison entries.
const (
	ClassPermanent          = "permanent"
	ClassPanic              = "panic"
	ClassTransientExhausted = "transient_exhausted"
)

// poisonWriteTimeout bounds one poison-queue write.
const poisonWriteTimeout = 10 * time.Second

// PoisonSink stores poison entries; store.DB is one.
type PoisonSink interface {
	PutPoison(ctx context.Context, e store.PoisonEntry) error
}

// poisonNamespace keys poison entries by content, so the same bad message
// (redelivered, republished or posted again) updates one entry.
var poisonNamespace = uuid.MustParse("3d9f6c2b-7a41-4e0d-8c5b-2f6e1a9d4c70")

// PoisonID is the key of the poison entry for payload on subject.
func PoisonID(subject string, payload []byte) string {
	return uuid.NewSHA1(poisonNamespace, append([]byte(subject+"\x00"), payload...)).String()
}

// Poison routes a message whose handling cannot succeed to the poison queue
// and lets it be acked once the entry is committed:
//   - a permanent error (bad input): at once;
//   - a panic: after the in-process retries (it sits outside Retry);
//   - a transient error on the consumer's last delivery (maxDeliver > 0):
//     rather than leave the message stranded in the stream.
//
// Any other error passes through, so the message is handed back to the
// broker for a delayed redelivery. If the entry cannot be written, the
// original error passes through too: nothing is acked without a commit.
type Poison struct {
	Sink PoisonSink
	// MaxDeliver is the consumer's limit; -1 or 0 means unlimited.
	MaxDeliver int
	// Now is the clock (tests may set it).
	Now func() time.Time
}

// NewPoison validates its dependencies.
func NewPoison(sink PoisonSink, maxDeliver int) (*Poison, error) {
	if sink == nil {
		return nil, errors.New("middleware: nil poison sink")
	}
	return &Poison{Sink: sink, MaxDeliver: maxDeliver, Now: time.Now}, nil
}

// Middleware implements message.HandlerMiddleware.
func (p *Poison) Middleware(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		// Inner middleware (Timeout) leaves a cancelled context on msg;
		// the poison write needs the delivery's own.
		ctx := msg.Context()
		out, err := h(msg)
		msg.SetContext(ctx)
		if err == nil {
			return out, nil
		}
		class := p.classify(err, msg)
		if class == "" {
			return nil, err
		}
		entry := p.entry(msg, class, err)
		// The id goes on the message before the write, so that the log
		// line of a write that fails names the entry too.
		handlers.SetPoisonID(msg.Metadata, entry.ID)
		// The write must not die with the delivery's context: on the last
		// delivery a shutdown would otherwise strand the message.
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), poisonWriteTimeout)
		defer cancel()
		if werr := p.Sink.PutPoison(wctx, entry); werr != nil {
			return nil, fmt.Errorf("write poison entry %s: %w (while handling: %w)", entry.ID, werr, err)
		}
		handlers.SetPoisoned(msg.Metadata, class, entry.Reason)
		return nil, nil
	}
}

func (p *Poison) classify(err error, msg *message.Message) string {
	var panicErr wmmiddleware.RecoveredPanicError
	if handlers.IsHold(err) {
		return "" // not a failure: it comes back later
	}
	switch {
	case handlers.IsPermanent(err):
		return ClassPermanent
	case errors.As(err, &panicErr):
		return ClassPanic
	case p.lastDelivery(msg):
		return ClassTransientExhausted
	}
	return ""
}

func (p *Poison) lastDelivery(msg *message.Message) bool {
	if p.MaxDeliver <= 0 {
		return false
	}
	n, ok := handlers.DeliveryAttempt(msg.Metadata)
	return ok && n >= uint64(p.MaxDeliver)
}

func (p *Poison) entry(msg *message.Message, class string, err error) store.PoisonEntry {
	e := NewPoisonEntry(msg.Payload, msg.Metadata, class, reason(err), p.Now())
	var panicErr wmmiddleware.RecoveredPanicError
	if errors.As(err, &panicErr) {
		e.Stack = panicErr.Stacktrace
	}
	return e
}

// NewPoisonEntry is the one builder of a poison entry, for every path that
// keeps a message it cannot handle (this middleware, and the HTTP ingress
// for a body over its size limit): the payload byte for byte, keyed by
// PoisonID of its subject, with the facts md carries (handlers.Meta*:
// subject, handler, ingress, correlation id, user, action, stream position,
// delivery count), failed for reason with class at now.
func NewPoisonEntry(payload []byte, md message.Metadata, class, reason string, now time.Time) store.PoisonEntry {
	subject := handlers.Subject(md)
	now = now.UTC()
	e := store.PoisonEntry{
		ID:            PoisonID(subject, payload),
		Payload:       payload,
		Reason:        reason,
		Class:         class,
		Subject:       subject,
		Handler:       handlers.HandlerName(md),
		Ingress:       handlers.Ingress(md),
		CorrelationID: handlers.CorrelationID(md),
		// Set when the event decoded; otherwise the store reads them
		// from the payload as well as it can.
		UserID:       handlers.UserID(md),
		Action:       handlers.Action(md),
		Stream:       handlers.Stream(md),
		FirstFailure: now,
		LastFailure:  now,
	}
	if e.Ingress == schema.IngressReplay {
		// A replay that failed again: the store keeps the entry's own
		// ingress and delivery facts and counts the replay.
		e.Replays, e.LastReplayAt = 1, now
	}
	e.StreamSeq, _ = handlers.StreamSeq(md)
	e.DeliveryCount, _ = handlers.DeliveryAttempt(md)
	return e
}

// reason is the error as one readable line; a panic's stack is kept apart.
func reason(err error) string {
	var panicErr wmmiddleware.RecoveredPanicError
	if errors.As(err, &panicErr) {
		return fmt.Sprintf("panic: %v", panicErr.V)
	}
	return strings.ReplaceAll(err.Error(), "\n", " ")
}
