package handlers

import (
	"strconv"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
)

// Metadata keys the router sets on incoming messages. They are the only
// contract between the transport (NATS, HTTP, replay) and the handlers.
//
// This file is the only one that reads or writes them: everyone else goes
// through the typed accessors below (TestMetadataKeysOnlyThroughAccessors
// holds the rule). The keys' string values are stored — in the poison
// queue's JSON (read by SQL generated columns, store/poisonschema.go) and
// on command messages — so they never change.
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
	// Set by the Poison middleware on a message it kept: the entry's id
	// (before the write, so a failing write's log line names it; a replay
	// carries it from the start), and, once written, its class and reason.
	MetaPoisonClass  = "poison_class"
	MetaPoisonReason = "poison_reason"
	MetaPoisonID     = "poison_id"
	// MetaReplayedAt is when a poison entry was replayed (RFC 3339).
	MetaReplayedAt = "replayed_at"
	// MetaAttempted marks a message that has had one attempt in this
	// process (for counting in-process retries).
	MetaAttempted = "attempted"
)

// Subject is the subject the message came on ("" for HTTP).
func Subject(md message.Metadata) string { return md.Get(MetaSubject) }

// SetSubject records the subject the message came on.
func SetSubject(md message.Metadata, s string) { md.Set(MetaSubject, s) }

// Stream is the JetStream stream the message came from.
func Stream(md message.Metadata) string { return md.Get(MetaStream) }

// SetStream records the JetStream stream the message came from.
func SetStream(md message.Metadata, s string) { md.Set(MetaStream, s) }

// StreamSeq is the message's stream sequence; false when there is none (or
// it is not a number).
func StreamSeq(md message.Metadata) (uint64, bool) { return parseUint(md.Get(MetaStreamSeq)) }

// StreamSeqText is the stream sequence as the metadata holds it.
func StreamSeqText(md message.Metadata) string { return md.Get(MetaStreamSeq) }

// SetStreamSeq records the message's stream sequence.
func SetStreamSeq(md message.Metadata, n uint64) { md.Set(MetaStreamSeq, strconv.FormatUint(n, 10)) }

// DeliveryAttempt is the broker's delivery count of the message (1 on the
// first delivery); false when there is none (or it is not a number).
func DeliveryAttempt(md message.Metadata) (uint64, bool) {
	return parseUint(md.Get(MetaDeliveryAttempt))
}

// DeliveryAttemptText is the delivery count as the metadata holds it.
func DeliveryAttemptText(md message.Metadata) string { return md.Get(MetaDeliveryAttempt) }

// SetDeliveryAttempt records the broker's delivery count of the message.
func SetDeliveryAttempt(md message.Metadata, n uint64) {
	md.Set(MetaDeliveryAttempt, strconv.FormatUint(n, 10))
}

// Ingress is the path the message came by (schema.IngressNATS, …), "" when
// unset.
func Ingress(md message.Metadata) string { return md.Get(MetaIngress) }

// SetIngress records the path the message came by.
func SetIngress(md message.Metadata, s string) { md.Set(MetaIngress, s) }

// CorrelationID is the message's correlation id. Admit sets it, once, before
// anything else runs; everyone else only reads it.
func CorrelationID(md message.Metadata) string { return md.Get(MetaCorrelationID) }

// SetCorrelationID records a correlation id: the transport's candidate (an
// HTTP X-Request-ID, a replayed entry's) before Admit, Admit's resolved id,
// or a command message's.
func SetCorrelationID(md message.Metadata, id string) { md.Set(MetaCorrelationID, id) }

// HandlerName is the name of the handler that took the message.
func HandlerName(md message.Metadata) string { return md.Get(MetaHandler) }

// SetHandler records the name of the handler that took the message.
func SetHandler(md message.Metadata, name string) { md.Set(MetaHandler, name) }

// CommandType is the type of the command written for the message.
func CommandType(md message.Metadata) string { return md.Get(MetaCommandType) }

// SetCommandType records the type of the command written for the message.
func SetCommandType(md message.Metadata, t string) { md.Set(MetaCommandType, t) }

// Action is the decoded event's action ("" when it did not decode).
func Action(md message.Metadata) string { return md.Get(MetaAction) }

// SetAction records the decoded event's action.
func SetAction(md message.Metadata, a string) { md.Set(MetaAction, a) }

// UserID is the decoded event's user id.
func UserID(md message.Metadata) string { return md.Get(MetaUserID) }

// SetUserID records the decoded event's user id.
func SetUserID(md message.Metadata, id string) { md.Set(MetaUserID, id) }

// OccurredAt is the decoded event's timestamp; false when unset or not
// RFC 3339.
func OccurredAt(md message.Metadata) (time.Time, bool) {
	at, err := time.Parse(time.RFC3339Nano, md.Get(MetaOccurredAt))
	return at, err == nil
}

// SetOccurredAt records the decoded event's timestamp (in UTC).
func SetOccurredAt(md message.Metadata, at time.Time) {
	md.Set(MetaOccurredAt, at.UTC().Format(time.RFC3339Nano))
}

// VerdictOf is the ledger's verdict on the message (VerdictNew, …), "" before
// it was decided.
func VerdictOf(md message.Metadata) string { return md.Get(MetaVerdict) }

// SetVerdict records the ledger's verdict on the message.
func SetVerdict(md message.Metadata, why string) { md.Set(MetaVerdict, why) }

// CommandIDOf is the id of the command written for the message.
func CommandIDOf(md message.Metadata) string { return md.Get(MetaCommandID) }

// SetCommandID records the id of the command written for the message.
func SetCommandID(md message.Metadata, id string) { md.Set(MetaCommandID, id) }

// Dropped lists the optional fields the decoder dropped ("; "-separated),
// "" when none.
func Dropped(md message.Metadata) string { return md.Get(MetaDropped) }

// SetDropped records the optional fields the decoder dropped.
func SetDropped(md message.Metadata, dropped []string) {
	md.Set(MetaDropped, strings.Join(dropped, "; "))
}

// PoisonClass is the class of the poison entry the message was kept in, ""
// when it was not.
func PoisonClass(md message.Metadata) string { return md.Get(MetaPoisonClass) }

// PoisonReason is the reason of the poison entry the message was kept in.
func PoisonReason(md message.Metadata) string { return md.Get(MetaPoisonReason) }

// SetPoisoned records that the message is kept in the poison queue, with
// class and reason.
func SetPoisoned(md message.Metadata, class, reason string) {
	md.Set(MetaPoisonClass, class)
	md.Set(MetaPoisonReason, reason)
}

// PoisonID is the id of the message's poison entry (being written, written,
// or replayed).
func PoisonID(md message.Metadata) string { return md.Get(MetaPoisonID) }

// SetPoisonID records the id of the message's poison entry.
func SetPoisonID(md message.Metadata, id string) { md.Set(MetaPoisonID, id) }

// SetReplayedAt records when a poison entry was replayed.
func SetReplayedAt(md message.Metadata, at time.Time) {
	md.Set(MetaReplayedAt, at.UTC().Format(time.RFC3339))
}

// Attempted reports whether the message has had an attempt in this process.
func Attempted(md message.Metadata) bool { return md.Get(MetaAttempted) != "" }

// SetAttempted marks the message as having had an attempt in this process.
func SetAttempted(md message.Metadata) { md.Set(MetaAttempted, "1") }

func parseUint(s string) (uint64, bool) {
	n, err := strconv.ParseUint(s, 10, 64)
	return n, err == nil
}
