package schema

import (
	"errors"
	"strconv"
	"strings"
	"unicode/utf8"
)

// ErrInvalidEvent is matched with errors.Is by every decoding/validation
// failure. It marks a permanent error: the body itself is wrong, so no retry
// can fix it and the event belongs in the poison queue.
var ErrInvalidEvent = errors.New("invalid event")

// Problem is one thing wrong with an event, so that a caller (the HTTP
// ingress, the poison queue) can report every fault at once instead of one
// per attempt.
type Problem struct {
	// Field is the top-level JSON field name ("" for the whole body). Field
	// names that are not the router's own come from outside and are cut to
	// 64 bytes.
	Field string `json:"field"`
	// Message says what is wrong, on one line; long values are cut.
	Message string `json:"message"`
}

// String renders the problem as "field: message", or just the message for
// the whole body.
func (p Problem) String() string {
	if p.Field == "" {
		return p.Message
	}
	return fieldLabel(p.Field) + ": " + p.Message
}

// maxProblemsInError bounds Error() so that a body with thousands of
// duplicate keys still logs as one readable line; Problems keeps them all.
const maxProblemsInError = 10

// InvalidEventError lists every problem found in one event. It matches
// ErrInvalidEvent with errors.Is.
type InvalidEventError struct {
	Problems []Problem
}

// Error renders the problems on one line, e.g.
// `invalid event: id: not a UUID: "abc"; email: missing`.
func (e *InvalidEventError) Error() string {
	if e == nil || len(e.Problems) == 0 {
		return ErrInvalidEvent.Error()
	}
	var b strings.Builder
	b.WriteString(ErrInvalidEvent.Error())
	b.WriteString(": ")
	for i, p := range e.Problems {
		if i == maxProblemsInError {
			b.WriteString("; and ")
			b.WriteString(strconv.Itoa(len(e.Problems) - i))
			b.WriteString(" more")
			break
		}
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(p.String())
	}
	return b.String()
}

// Is reports whether target is ErrInvalidEvent, so callers classify the
// failure as permanent without knowing this type.
func (e *InvalidEventError) Is(target error) bool {
	return target == ErrInvalidEvent
}

// maxQuotedBytes is how much of an outside value a message repeats.
const maxQuotedBytes = 64

// truncate cuts s to maxQuotedBytes on a rune boundary and marks the cut
// with "…".
func truncate(s string) string {
	if len(s) <= maxQuotedBytes {
		return s
	}
	cut := maxQuotedBytes
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// quote renders an outside value for a message: cut, then Go-quoted so that
// control characters and quotes cannot break the line.
func quote(s string) string {
	return strconv.Quote(truncate(s))
}

// fieldLabel prints plain field names as they are and quotes anything else
// (spaces, colons, control characters) so the "field: message" shape stays
// unambiguous.
func fieldLabel(field string) string {
	for i := 0; i < len(field); i++ {
		c := field[i]
		plain := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.'
		if !plain {
			return quote(field)
		}
	}
	return field
}
