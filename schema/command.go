package schema

import "time"

// CommandType tells the Social Monolith what to do with a user's profile;
// each event action maps to one type.
type CommandType string

// Command types, one per event action.
const (
	CommandCreateProfile CommandType = "create_profile" // from created
	CommandSyncIdentity  CommandType = "sync_identity"  // from updated
	CommandDeleteProfile CommandType = "delete_profile" // from deleted
)

// CommandSchemaVersion is written into every command so the monolith can
// refuse shapes it does not know.
const CommandSchemaVersion = 1

// Ingress paths an event can take into the router (Source.Ingress).
const (
	IngressNATS   = "nats"
	IngressHTTP   = "http"
	IngressReplay = "replay"
)

// Source records where a command's event came from, for tracing a command
// back to the producer, the stream and the delivery.
type Source struct {
	Service         string `json:"service"`
	Subject         string `json:"subject"`
	Ingress         string `json:"ingress"`
	StreamSequence  uint64 `json:"stream_sequence,omitempty"`  // JetStream only
	DeliveryAttempt uint64 `json:"delivery_attempt,omitempty"` // JetStream only
	RequestID       string `json:"request_id"`                 // the event's, possibly ""
}

// ProfileDefaults are embedded (as a pointer, no json tag) in Command so that
// for create_profile display_name, avatar and bio appear at the top level of
// the JSON, and for other types not at all.
type ProfileDefaults struct {
	DisplayName string `json:"display_name"`
	Avatar      string `json:"avatar"`
	Bio         string `json:"bio"`
}

// Command is the profile-sync command payload (DESIGN §3): what the Social
// Monolith applies to its copy of a user. It carries identity only, never
// the Auth Service's role, isActive or permissions.
type Command struct {
	CommandID     string      `json:"command_id"` // deterministic: UUIDv5 of user id and UserSequence
	Type          CommandType `json:"type"`
	SchemaVersion int         `json:"schema_version"` // CommandSchemaVersion
	UserID        string      `json:"user_id"`
	Email         string      `json:"email"`
	Username      string      `json:"username"`
	OccurredAt    time.Time   `json:"occurred_at"` // the event's timestamp
	// Generation counts the user's registrations, from 1: a created after
	// the user's deletion starts the next one.
	Generation int `json:"generation"`
	// UserSequence numbers the user's commands, from 1, in the order the
	// router committed them. A consumer orders a user's commands by
	// (Generation, OccurredAt, UserSequence).
	UserSequence  uint64 `json:"user_sequence"`
	CorrelationID string `json:"correlation_id"`
	Source        Source `json:"source"`
	// *ProfileDefaults is set for create_profile only.
	*ProfileDefaults
}
