package handlers

import (
	"context"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/social/user-events-router/schema"
)

// admission is what Admit found of a message's body: the decoded event, or
// why it does not decode.
type admission struct {
	ev  schema.UserEvent
	err error
}

type admissionKey struct{}

// Admit is the first step of handling a message: it decodes the body, once
// (the dispatcher takes the result from msg's context instead of decoding
// again, on every in-process attempt), and gives msg its correlation id —
// Admit is that id's one owner: the event's request_id when it has one,
// else the id the transport supplied (an HTTP X-Request-ID, a replayed
// entry's), else one minted from the message's bytes (stable across
// redeliveries). The Correlation middleware calls it before anything else
// runs, so the log line of an event that fails to decode carries the id
// too; the dispatcher calls it only for a message that has not been
// through the middleware (a dry run), and otherwise only reads the id.
//
// request_id is read leniently: a body too broken to decode (or whose
// request_id the decoder dropped) has it peeked at. Both candidates come
// from outside, so they are taken as schema.PrintableText of at most
// schema.MaxRequestIDBytes, exactly as DecodeEvent makes
// UserEvent.RequestID: the id is printable, bounded, and the same whether
// the body decodes or not.
//
// Admit is a no-op on a message it has admitted already.
func Admit(msg *message.Message) {
	if _, ok := admitted(msg); ok {
		return
	}
	ev, err := schema.DecodeEvent(Subject(msg.Metadata), msg.Payload)
	requestID := ev.RequestID
	if err != nil || requestID == "" && droppedRequestID(ev) {
		_, requestID = schema.Peek(msg.Payload)
		requestID = schema.PrintableText(requestID, schema.MaxRequestIDBytes)
	}
	existing := schema.PrintableText(CorrelationID(msg.Metadata), schema.MaxRequestIDBytes)
	SetCorrelationID(msg.Metadata, ResolveCorrelationID(requestID, existing, msg.Payload))
	msg.SetContext(context.WithValue(msg.Context(), admissionKey{}, &admission{ev: ev, err: err}))
}

// admitted is what Admit stored in msg's context.
func admitted(msg *message.Message) (*admission, bool) {
	a, ok := msg.Context().Value(admissionKey{}).(*admission)
	return a, ok
}

// admit returns msg's admission, admitting it first if need be.
func admit(msg *message.Message) *admission {
	if a, ok := admitted(msg); ok {
		return a
	}
	Admit(msg)
	a, _ := admitted(msg)
	return a
}

// droppedRequestID reports whether the decoder dropped ev's request_id (a
// repeated key, or not a string): the lenient reading may still find one.
func droppedRequestID(ev schema.UserEvent) bool {
	for _, p := range ev.Dropped {
		if p.Field == "request_id" {
			return true
		}
	}
	return false
}
