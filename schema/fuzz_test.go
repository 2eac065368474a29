package schema_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/social/user-events-router/schema"
)

// maxErrorLen bounds Error(): at most ten problems, each with cut values.
const maxErrorLen = 8 << 10

func FuzzDecodeEvent(f *testing.F) {
	p := producerBody()
	seeds := []struct {
		subject string
		body    string
	}{
		{"user.events.created", producerPayload},
		{"", producerPayload},
		{"user.events.deleted", producerPayload},
		{"user.events.updated", p.with("action", `"updated"`).with("displayName", `"Alice"`).with("avatar", `"a.png"`).with("role", `"admin"`).with("isActive", "true").String()},
		{"user.events.created", p.with("sequence", "42").with("request_id", "null").String()},
		{"user.events.created", p.with("timestamp", `"2026-11-28T14:28:17.5+01:00"`).String()},
		{"user.events.created", p.with("id", `"78AF4BC4-AFCE-4676-B373-5B802A2DFD2E"`).String()},
		{"user.events.created", p.with("extra", nested(40)).String()},
		{"user.events.created", p.with("extra", strings.Repeat(`{"a":[`, 300)+strings.Repeat("]}", 300)).String()},
		{"user.events.created", p.add("id", `"x"`).String()},
		{"user.events.created", p.add("x", "1").add("x", `"y"`).String()},
		{"user.events.created", p.with("email", `"<alice@example.com>"`).String()},
		{"user.events.created", p.with("email", `""`).with("username", `"สมชาย_ใจดี_1a2b3c4d"`).String()},
		{"user.events.created", p.with("email", `"a\u0000"`).with("username", `"\u001b[31m\u202e"`).String()},
		{"user.events.created", p.with("request_id", `"\u0000\u001b\u202e\ud800\r\n"`).with("service_name", "7").String()},
		{"user.events.created", p.with("displayName", `"\u001b]0;x\u0007"`).with("avatar", `"javascript:alert(1)"`).String()},
		{"user.events.created", p.with("displayName", `"Zoë \ud83d\ude00"`).with("avatar", `"https://cdn.example.com/a.png"`).String()},
		{"user.events.created", p.with("username", `"\ud800"`).String()},
		{"user.events.created", p.with("timestamp", `"2026-11-28T13:28:17+24:00"`).String()},
		{"user.events.created", p.with("sequence", "1e3").String()},
		{"user.events.created", p.with("timestamp", `"9999-12-31T23:59:59-01:00"`).String()},
		{"user.events.created", "\xEF\xBB\xBF" + producerPayload},
		{"user.events.created", producerPayload + "{}"},
		{"user.events.created", producerPayload[:50]},
		{"user.events.created", "{\"id\":\"\xff\"}"},
		{"user.events.created", `{}`},
		{"user.events.created", `[]`},
		{"user.events.created", `null`},
		{"user.events.created", ""},
	}
	for _, s := range seeds {
		f.Add(s.subject, []byte(s.body))
	}

	f.Fuzz(func(t *testing.T, subject string, data []byte) {
		ev, err := schema.DecodeEvent(subject, data)
		if err != nil {
			checkRejection(t, ev, err)
			return
		}
		checkInvariants(t, subject, ev)

		// An accepted event re-encoded as JSON decodes to itself (what
		// was dropped is not part of it).
		again, err := json.Marshal(ev)
		if err != nil {
			t.Fatalf("json.Marshal(accepted event %+v): %v", ev, err)
		}
		back, err := schema.DecodeEvent(subject, again)
		if err != nil {
			t.Fatalf("re-encoded event %s rejected: %v", again, err)
		}
		ev.Dropped = nil
		if !equalEvents(back, ev) {
			t.Fatalf("round trip changed the event:\n%+v\n%+v", ev, back)
		}
	})
}

func checkRejection(t *testing.T, ev schema.UserEvent, err error) {
	t.Helper()
	if !errors.Is(err, schema.ErrInvalidEvent) {
		t.Fatalf("error %v does not match ErrInvalidEvent", err)
	}
	var invalid *schema.InvalidEventError
	if !errors.As(err, &invalid) || len(invalid.Problems) == 0 {
		t.Fatalf("error %#v is not an *InvalidEventError with problems", err)
	}
	msg := err.Error()
	if strings.ContainsAny(msg, "\r\n") || len(msg) > maxErrorLen {
		t.Fatalf("error is not one short line (%d bytes): %q", len(msg), msg)
	}
	if !reflect.DeepEqual(ev, schema.UserEvent{}) {
		t.Fatalf("rejected event returned %+v", ev)
	}
}

func checkInvariants(t *testing.T, subject string, ev schema.UserEvent) {
	t.Helper()
	id, err := uuid.Parse(ev.ID)
	if err != nil || id.String() != ev.ID || id == uuid.Nil {
		t.Fatalf("accepted id %q is not a canonical non-nil UUID", ev.ID)
	}
	switch ev.Action {
	case schema.ActionCreated, schema.ActionUpdated, schema.ActionDeleted:
	default:
		t.Fatalf("accepted action %q", ev.Action)
	}
	if subject != "" && schema.ActionFromSubject(subject) != ev.Action {
		t.Fatalf("accepted action %q on subject %q", ev.Action, subject)
	}
	if ev.Timestamp.IsZero() || ev.Timestamp.Location() != time.UTC {
		t.Fatalf("accepted timestamp %v is zero or not UTC", ev.Timestamp)
	}
	// Nothing accepted holds NUL or bytes that are not UTF-8 (which JSON
	// would silently replace); the delivery fields are bounded printable
	// text; a kept cosmetic field has no control character.
	for name, v := range map[string]string{
		"id": ev.ID, "email": ev.Email, "username": ev.Username, "request_id": ev.RequestID,
		"service_name": ev.ServiceName, "displayName": ev.DisplayName, "avatar": ev.Avatar,
	} {
		if strings.IndexByte(v, 0) >= 0 || !utf8.ValidString(v) {
			t.Fatalf("accepted %s %q holds NUL or is not UTF-8", name, v)
		}
	}
	if ev.RequestID != schema.PrintableText(ev.RequestID, schema.MaxRequestIDBytes) ||
		ev.ServiceName != schema.PrintableText(ev.ServiceName, schema.MaxServiceNameBytes) {
		t.Fatalf("request_id %q or service_name %q is not bounded printable text", ev.RequestID, ev.ServiceName)
	}
	if strings.IndexFunc(ev.DisplayName+ev.Avatar, unicode.IsControl) >= 0 ||
		utf8.RuneCountInString(ev.DisplayName) > 100 || utf8.RuneCountInString(ev.Avatar) > 500 {
		t.Fatalf("kept displayName %q or avatar %q is unusable", ev.DisplayName, ev.Avatar)
	}
	for _, p := range ev.Dropped {
		if strings.ContainsAny(p.String(), "\r\n") || len(p.String()) > 200 {
			t.Fatalf("dropped-field note is not one short line: %q", p)
		}
	}
}
