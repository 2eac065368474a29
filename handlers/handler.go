package handlers

import (
	"github.com/social/user-events-router/schema"
)

// Delivery is what the transport knows about one arrival of an event.
type Delivery struct {
	Subject         string
	Ingress         string
	StreamSequence  uint64
	DeliveryAttempt uint64
	CorrelationID   string
}

// BuildFunc makes the command for one valid event. It is pure: no I/O, so it
// is trivially testable and safe to retry.
type BuildFunc func(ev schema.UserEvent, d Delivery) schema.Command

// Handler is the registration of one action.
type Handler struct {
	// Name is stable: it appears in logs, metrics and poison entries.
	Name   string
	Action string
	Build  BuildFunc
}

// Registry maps an event action to its handler.
type Registry map[string]Handler

// DefaultRegistry is every action the router understands. Register a new
// event type here.
func DefaultRegistry() Registry {
	return Registry{
		schema.ActionCreated: Created,
		schema.ActionUpdated: Updated,
		schema.ActionDeleted: Deleted,
	}
}

// newCommand fills the fields every command type shares but the ledger's:
// the dispatcher adds command_id, generation and user_sequence.
func newCommand(t schema.CommandType, ev schema.UserEvent, d Delivery) schema.Command {
	return schema.Command{
		Type:          t,
		SchemaVersion: schema.CommandSchemaVersion,
		UserID:        ev.ID,
		Email:         ev.Email,
		Username:      ev.Username,
		OccurredAt:    ev.Timestamp.UTC(),
		CorrelationID: d.CorrelationID,
		Source: schema.Source{
			Service:         ev.ServiceName,
			Subject:         d.Subject,
			Ingress:         d.Ingress,
			StreamSequence:  d.StreamSequence,
			DeliveryAttempt: d.DeliveryAttempt,
			RequestID:       ev.RequestID,
		},
	}
}
