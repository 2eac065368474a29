package handlers

import (
	"crypto/sha1"
	"encoding/json"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/social/user-events-router/schema"
)

// Namespaces of the name-based (version 5) UUIDs the router derives. They are
// fixed forever: changing one changes every command id and breaks dedup.
var (
	commandNamespace     = uuid.MustParse("6f0c1d2e-8a4b-4c1e-9b7d-3e5a2f1c0d9b")
	correlationNamespace = uuid.MustParse("b3a1e7c4-5d2f-4e8a-a6c9-1f0e2d3c4b5a")
)

// canonical is the part of an event that decides its effect: the same
// values always give the same bytes, whichever path the event came by. Its
// hash (ContentHash) tells the ledger two arrivals of one event apart from
// two events. (Before the ledger, a command's id was UUIDv5 of these bytes.)
// request_id, service_name and sequence are left out on purpose: they
// describe the delivery, not the change.
func canonical(ev schema.UserEvent) []byte {
	fields := [...]string{
		"v1",
		ev.Action,
		ev.ID,
		ev.Email,
		ev.Username,
		ev.Timestamp.UTC().Format(time.RFC3339Nano),
		ev.DisplayName,
		ev.Avatar,
	}
	// The bytes are those of json.Marshal of the list, forever: they name
	// every command already stored. Strings that encoding/json writes as
	// they are (printable ASCII but for " \ < > &, which it escapes) are
	// appended directly; anything else goes through json.Marshal itself.
	// TestCanonicalIsJSONOfTheList and its fuzz test hold the two together.
	n := 2 + len(fields)
	for _, f := range fields {
		if !plainJSON(f) {
			b, _ := json.Marshal(fields[:])
			return b
		}
		n += len(f) + 2
	}
	b := make([]byte, 0, n)
	b = append(b, '[')
	for i, f := range fields {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = append(b, f...)
		b = append(b, '"')
	}
	return append(b, ']')
}

// plainJSON reports whether encoding/json writes s between quotes as it is.
func plainJSON(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}

// CommandID is the id of the command the ledger numbered seq for userID:
// the same decision always gives the same id, so a command committed twice
// (a retried batch, a second replica deciding after a failover) is one row.
func CommandID(userID string, seq uint64) string {
	var buf [96]byte
	name := append(buf[:0], "v2/"...)
	name = append(name, userID...)
	name = append(name, '/')
	return NameUUID(commandNamespace, strconv.AppendUint(name, seq, 10))
}

// MintCorrelationID gives an event without request_id a correlation id that
// is the same on every delivery of that event, so redeliveries and the
// HTTP+NATS double delivery can be followed under one id in the logs.
func MintCorrelationID(raw []byte) string {
	return NameUUID(correlationNamespace, raw)
}

// NameUUID is uuid.NewSHA1(ns, name).String(), the version 5 UUID of name
// in ns (TestNameUUIDIsNewSHA1), hashed without the two allocations of a
// hash.Hash when ns and name fit in a buffer on the stack: the router
// derives three of them for every event.
func NameUUID(ns uuid.UUID, name []byte) string {
	var buf [256]byte
	b := append(buf[:0], ns[:]...)
	b = append(b, name...) // a longer name moves b to the heap, not name
	sum := sha1.Sum(b)
	var u uuid.UUID
	copy(u[:], sum[:len(u)])
	u[6] = (u[6] & 0x0f) | 0x50 // version 5
	u[8] = (u[8] & 0x3f) | 0x80 // RFC 4122 variant
	return u.String()
}

// ResolveCorrelationID picks the correlation id of a message: the event's
// request_id, else one the transport already set (e.g. HTTP X-Request-ID),
// else one minted from the raw bytes.
func ResolveCorrelationID(requestID, existing string, raw []byte) string {
	switch {
	case requestID != "":
		return requestID
	case existing != "":
		return existing
	}
	return MintCorrelationID(raw)
}
