package handlers

// Metadata keys the router sets on incoming messages. They are the only
// contract between the transport (NATS, HTTP, replay) and the handlers.
const (
	MetaSubject         = "subject"
	MetaStream          = "stream"
	MetaStreamSeq       = "stream_seq"
	MetaDeliveryAttempt = "delivery_attempt"
	MetaIngress         = "ingress"
	MetaCorrelationID   = "correlation_id"
	MetaHandler         = "handler"
	MetaCommandType     = "command_type"
	// Set by the dispatcher once the event decoded, for logs and metrics.
	MetaAction     = "action"
	MetaUserID     = "user_id"
	MetaOccurredAt = "occurred_at"
	// Set by the dispatcher once the event is handled: the ledger's verdict
	// (VerdictNew, VerdictCopy, …) and, when a command was written, its id.
	MetaVerdict   = "verdict"
	MetaCommandID = "command_id"
	// MetaDropped lists the optional fields the decoder dropped as unusable
	// (schema.UserEvent.Dropped), for the event's log line.
	MetaDropped = "dropped"
)
