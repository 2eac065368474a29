package schema

import (
	"encoding/json"
	"strconv"
	"unicode/utf8"
)

// MarshalCommand is json.Marshal(c), byte for byte (TestMarshalCommandIsJSON
// and FuzzMarshalCommand compare the two), written by hand: a command is
// encoded for every event, and reflection made it a fifth of the handler
// chain's CPU.
func MarshalCommand(c Command) ([]byte, error) {
	at, err := c.OccurredAt.MarshalJSON()
	if err != nil { // a year outside 0–9999: encoding/json's error
		return json.Marshal(c)
	}
	// The keys, quotes and numbers take under 400 bytes; the strings
	// their length (more only when escaped).
	n := 400 + len(c.CommandID) + len(c.Type) + len(c.UserID) + len(c.Email) + len(c.Username) +
		len(c.CorrelationID) + len(c.Source.Service) + len(c.Source.Subject) + len(c.Source.Ingress) + len(c.Source.RequestID)
	if p := c.ProfileDefaults; p != nil {
		n += 40 + len(p.DisplayName) + len(p.Avatar) + len(p.Bio)
	}
	b := make([]byte, 0, n)
	b = append(b, `{"command_id":`...)
	b = appendString(b, c.CommandID)
	b = append(b, `,"type":`...)
	b = appendString(b, string(c.Type))
	b = append(b, `,"schema_version":`...)
	b = strconv.AppendInt(b, int64(c.SchemaVersion), 10)
	b = append(b, `,"user_id":`...)
	b = appendString(b, c.UserID)
	b = append(b, `,"email":`...)
	b = appendString(b, c.Email)
	b = append(b, `,"username":`...)
	b = appendString(b, c.Username)
	b = append(b, `,"occurred_at":`...)
	b = append(b, at...)
	b = append(b, `,"generation":`...)
	b = strconv.AppendInt(b, int64(c.Generation), 10)
	b = append(b, `,"user_sequence":`...)
	b = strconv.AppendUint(b, c.UserSequence, 10)
	b = append(b, `,"correlation_id":`...)
	b = appendString(b, c.CorrelationID)
	b = append(b, `,"source":{"service":`...)
	b = appendString(b, c.Source.Service)
	b = append(b, `,"subject":`...)
	b = appendString(b, c.Source.Subject)
	b = append(b, `,"ingress":`...)
	b = appendString(b, c.Source.Ingress)
	if c.Source.StreamSequence != 0 {
		b = append(b, `,"stream_sequence":`...)
		b = strconv.AppendUint(b, c.Source.StreamSequence, 10)
	}
	if c.Source.DeliveryAttempt != 0 {
		b = append(b, `,"delivery_attempt":`...)
		b = strconv.AppendUint(b, c.Source.DeliveryAttempt, 10)
	}
	b = append(b, `,"request_id":`...)
	b = appendString(b, c.Source.RequestID)
	b = append(b, '}')
	if p := c.ProfileDefaults; p != nil {
		b = append(b, `,"display_name":`...)
		b = appendString(b, p.DisplayName)
		b = append(b, `,"avatar":`...)
		b = appendString(b, p.Avatar)
		b = append(b, `,"bio":`...)
		b = appendString(b, p.Bio)
	}
	return append(b, '}'), nil
}

// appendString appends s as encoding/json writes a string by default:
// quoted, with <, > and & escaped for HTML, control characters as \b, \f,
// \n, \r, \t or \u00XX, invalid UTF-8 as \ufffd, and U+2028 and U+2029
// escaped.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
