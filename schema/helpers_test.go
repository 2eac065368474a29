package schema_test

import (
	"strings"
	"time"

	"github.com/social/user-events-router/schema"
)

// producerPayload is what the real Auth Service sends, byte for byte
// (DESIGN §2).
const producerPayload = `{"id":"78af4bc4-afce-4676-b373-5b802a2dfd2e","email":"alice@example.com","username":"alice01","action":"created","request_id":"","timestamp":"2026-11-28T13:28:17Z","service_name":"gofiber-auth"}`

// field is one top-level member of a test body, with its value as raw JSON.
type field struct{ key, raw string }

// body is a JSON object built member by member, so tests can write
// duplicate keys and exact bytes that a map would not allow.
type body []field

// producerBody returns producerPayload as fields; TestProducerBody checks
// that the two agree.
func producerBody() body {
	return body{
		{"id", `"78af4bc4-afce-4676-b373-5b802a2dfd2e"`},
		{"email", `"alice@example.com"`},
		{"username", `"alice01"`},
		{"action", `"created"`},
		{"request_id", `""`},
		{"timestamp", `"2026-11-28T13:28:17Z"`},
		{"service_name", `"gofiber-auth"`},
	}
}

// with returns a copy with key set to raw, in place if key is present,
// appended otherwise.
func (b body) with(key, raw string) body {
	out := append(body(nil), b...)
	for i := range out {
		if out[i].key == key {
			out[i].raw = raw
			return out
		}
	}
	return append(out, field{key, raw})
}

// add returns a copy with key appended even if it is present.
func (b body) add(key, raw string) body {
	return append(append(body(nil), b...), field{key, raw})
}

// without returns a copy without key.
func (b body) without(key string) body {
	var out body
	for _, f := range b {
		if f.key != key {
			out = append(out, f)
		}
	}
	return out
}

func (b body) String() string {
	var s strings.Builder
	s.WriteByte('{')
	for i, f := range b {
		if i > 0 {
			s.WriteByte(',')
		}
		s.WriteString(`"` + f.key + `":` + f.raw)
	}
	s.WriteByte('}')
	return s.String()
}

func (b body) bytes() []byte { return []byte(b.String()) }

// nested returns raw JSON of arrays nested levels deep: nested(2) is [[]].
func nested(levels int) string {
	return strings.Repeat("[", levels) + strings.Repeat("]", levels)
}

// sampleCommand returns a well-formed command of type typ that came in by
// ingress, as a handler would build it from producerPayload.
func sampleCommand(typ schema.CommandType, ingress string) schema.Command {
	cmd := schema.Command{
		CommandID:     "0f8d6a3e-2b1c-5d4e-9f6a-7b8c9d0e1f2a",
		Type:          typ,
		SchemaVersion: schema.CommandSchemaVersion,
		UserID:        "78af4bc4-afce-4676-b373-5b802a2dfd2e",
		Email:         "alice@example.com",
		Username:      "alice01",
		OccurredAt:    time.Date(2026, 11, 28, 13, 28, 17, 0, time.UTC),
		Generation:    1,
		UserSequence:  1,
		CorrelationID: "5b1e0c8e-8f0a-4b9e-a0d4-2f4f3c2a1b00",
		Source: schema.Source{
			Service:   "gofiber-auth",
			Subject:   "user.events.created",
			Ingress:   ingress,
			RequestID: "",
		},
	}
	if ingress == schema.IngressNATS {
		cmd.Source.StreamSequence = 17
		cmd.Source.DeliveryAttempt = 1
	}
	if typ == schema.CommandCreateProfile {
		cmd.ProfileDefaults = &schema.ProfileDefaults{DisplayName: "alice01"}
	}
	return cmd
}
