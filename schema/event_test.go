package schema_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/social/user-events-router/schema"
)

func TestProducerBody(t *testing.T) {
	t.Parallel()
	if got := producerBody().String(); got != producerPayload {
		t.Fatalf("producerBody() = %s\nwant %s", got, producerPayload)
	}
}

func ptr[T any](v T) *T { return &v }

func TestDecodeEventAccepts(t *testing.T) {
	t.Parallel()
	alice := schema.UserEvent{
		ID:          "78af4bc4-afce-4676-b373-5b802a2dfd2e",
		Email:       "alice@example.com",
		Username:    "alice01",
		Action:      schema.ActionCreated,
		RequestID:   "",
		Timestamp:   time.Date(2026, 11, 28, 13, 28, 17, 0, time.UTC),
		ServiceName: "gofiber-auth",
	}
	with := func(change func(*schema.UserEvent)) schema.UserEvent {
		ev := alice
		change(&ev)
		return ev
	}

	tests := []struct {
		name    string
		subject string
		body    string
		want    schema.UserEvent
	}{
		{
			name:    "producer payload over NATS",
			subject: "user.events.created",
			body:    producerPayload,
			want:    alice,
		},
		{
			name: "producer payload over HTTP (no subject)",
			body: producerPayload,
			want: alice,
		},
		{
			name:    "schema V1 payload",
			subject: "user.events.updated",
			body: `{"id":"78AF4BC4-AFCE-4676-B373-5B802A2DFD2E","email":"alice@example.com","username":"alice01",` +
				`"displayName":"Alice A.","avatar":"https://cdn.example.com/a.png","role":"admin","isActive":true,` +
				`"permissions":["users:write"],"action":"updated","timestamp":"2026-11-28T14:28:17.250+01:00"}`,
			want: with(func(ev *schema.UserEvent) {
				ev.Action = schema.ActionUpdated
				ev.ServiceName = ""
				ev.Timestamp = time.Date(2026, 11, 28, 13, 28, 17, 250e6, time.UTC)
				ev.DisplayName = "Alice A."
				ev.Avatar = "https://cdn.example.com/a.png"
			}),
		},
		{
			name:    "optional fields null",
			subject: "user.events.created",
			body: producerBody().with("request_id", "null").with("service_name", "null").
				with("sequence", "null").with("displayName", "null").with("avatar", "null").String(),
			want: with(func(ev *schema.UserEvent) { ev.ServiceName = "" }),
		},
		{
			name:    "optional fields absent",
			subject: "user.events.created",
			body:    producerBody().without("request_id").without("service_name").String(),
			want:    with(func(ev *schema.UserEvent) { ev.ServiceName = "" }),
		},
		{
			name:    "request id and sequence",
			subject: "user.events.deleted",
			body:    producerBody().with("action", `"deleted"`).with("request_id", `"req-42"`).with("sequence", "18446744073709551615").String(),
			want: with(func(ev *schema.UserEvent) {
				ev.Action = schema.ActionDeleted
				ev.RequestID = "req-42"
				ev.Sequence = ptr(uint64(18446744073709551615))
			}),
		},
		{
			name:    "sequence zero",
			subject: "user.events.created",
			body:    producerBody().with("sequence", "0").String(),
			want:    with(func(ev *schema.UserEvent) { ev.Sequence = ptr(uint64(0)) }),
		},
		{
			name:    "white space around the object",
			subject: "user.events.created",
			body:    "\r\n\t " + producerPayload + " \n",
			want:    alice,
		},
		{
			name:    "unknown field nested exactly 32 levels",
			subject: "user.events.created",
			body:    producerBody().with("extra", nested(31)).String(),
			want:    alice,
		},
		{
			name:    "escaped strings and unicode",
			subject: "user.events.created",
			body:    producerBody().with("username", `"J\u00fcrgen \"J\" M\u00fcller"`).with("email", `"j\u00fcrgen@b\u00fccher.example"`).String(),
			want: with(func(ev *schema.UserEvent) {
				ev.Username = `Jürgen "J" Müller`
				ev.Email = "jürgen@bücher.example"
			}),
		},
		{
			name:    "custom subject prefix",
			subject: "tenant1.users.created",
			body:    producerPayload,
			want:    alice,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := schema.DecodeEvent(tt.subject, []byte(tt.body))
			if err != nil {
				t.Fatalf("DecodeEvent() error = %v", err)
			}
			if !equalEvents(got, tt.want) {
				t.Errorf("DecodeEvent() =\n%+v\nwant\n%+v", got, tt.want)
			}
			if got.Timestamp.Location() != time.UTC {
				t.Errorf("Timestamp location = %v, want UTC", got.Timestamp.Location())
			}
		})
	}
}

// equalEvents compares events by value, including *Sequence and the
// timestamp's instant.
func equalEvents(a, b schema.UserEvent) bool {
	if (a.Sequence == nil) != (b.Sequence == nil) || a.Sequence != nil && *a.Sequence != *b.Sequence {
		return false
	}
	if !a.Timestamp.Equal(b.Timestamp) {
		return false
	}
	a.Sequence, b.Sequence = nil, nil
	a.Timestamp, b.Timestamp = time.Time{}, time.Time{}
	return a == b
}

func TestDecodeEventDropsAuthOwnedFields(t *testing.T) {
	t.Parallel()
	body := producerBody().with("role", `"admin"`).with("isActive", "false").with("permissions", `["users:delete"]`)
	ev, err := schema.DecodeEvent("user.events.created", body.bytes())
	if err != nil {
		t.Fatal(err)
	}
	out, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"role", "isActive", "permissions"} {
		if strings.Contains(string(out), `"`+key+`"`) {
			t.Errorf("re-encoded event %s carries %q", out, key)
		}
	}
}

func TestDecodeEventMaxBytes(t *testing.T) {
	t.Parallel()
	padded := producerPayload + strings.Repeat(" ", schema.MaxEventBytes-len(producerPayload))
	if _, err := schema.DecodeEvent("user.events.created", []byte(padded)); err != nil {
		t.Errorf("body of exactly MaxEventBytes: %v", err)
	}
	_, err := schema.DecodeEvent("user.events.created", []byte(padded+" "))
	want := []schema.Problem{{Message: "body is 65537 bytes, limit is 65536"}}
	checkProblems(t, err, want)
}

func TestDecodeEventRejects(t *testing.T) {
	t.Parallel()
	p := producerBody()
	long := strings.Repeat("a", 100)
	longQuoted := `"` + strings.Repeat("a", 64) + `…"`
	body := func(s string) []schema.Problem { return []schema.Problem{{Message: s}} }
	one := func(field, msg string) []schema.Problem { return []schema.Problem{{Field: field, Message: msg}} }

	tests := []struct {
		name    string
		subject string // "user.events.created" when empty
		body    string
		want    []schema.Problem
	}{
		// The body as a whole.
		{name: "empty", body: "", want: body("body is empty")},
		{name: "white space only", body: " \r\n\t", want: body("body is empty (white space only)")},
		{name: "byte-order mark", body: "\xEF\xBB\xBF" + producerPayload, want: body("body starts with a UTF-8 byte-order mark")},
		{name: "invalid UTF-8", body: "{\"id\":\"\xff\"}", want: body("body is not valid UTF-8 at byte 8")},
		{name: "truncated", body: producerPayload[:40], want: body("not valid JSON: unexpected end of JSON input")},
		{name: "open brace only", body: "{", want: body("not valid JSON: unexpected end of JSON input")},
		{name: "missing colon", body: `{"id" 1}`, want: body("not valid JSON: invalid character '1' after object key at byte 7")},
		{name: "trailing comma", body: `{"id":"x",}`, want: body("not valid JSON: invalid character '}' looking for beginning of object key string at byte 11")},
		{name: "bad literal", body: `{"id":tru}`, want: body("not valid JSON: invalid character '}' in literal true (expecting 'e') at byte 10")},
		{name: "raw newline in string", body: "{\"id\":\"a\nb\"}", want: body(`not valid JSON: invalid character '\n' in string literal at byte 9`)},
		{name: "single quotes", body: `{'id':1}`, want: body("not valid JSON: invalid character '\\'' looking for beginning of object key string at byte 2")},
		{name: "array", body: `[` + producerPayload + `]`, want: body("body is a JSON array, not an object")},
		{name: "string", body: `"hello"`, want: body("body is a JSON string, not an object")},
		{name: "number", body: `42`, want: body("body is a JSON number, not an object")},
		{name: "boolean", body: `true`, want: body("body is a JSON boolean, not an object")},
		{name: "null", body: `null`, want: body("body is JSON null, not an object")},
		{name: "not JSON at all", body: `id=1&email=a`, want: body("not valid JSON: invalid character 'i' looking for beginning of value at byte 1")},
		{
			name: "trailing object",
			body: producerPayload + ` {}`,
			want: body(fmt.Sprintf("unexpected data after the JSON object at byte %d", len(producerPayload)+2)),
		},
		{
			name: "trailing garbage and a field problem",
			body: p.with("email", `"nope"`).String() + "x",
			want: []schema.Problem{
				{Message: fmt.Sprintf("unexpected data after the JSON object at byte %d", len(p.with("email", `"nope"`).String())+1)},
				{Field: "email", Message: `not an email address: "nope" (want exactly one '@')`},
			},
		},
		{name: "duplicate key", body: p.add("id", `"78af4bc4-afce-4676-b373-5b802a2dfd2e"`).String(), want: one("id", "duplicate key")},
		{name: "duplicate escaped key", body: p.add(`\u0069d`, `"x"`).String(), want: one("id", "duplicate key")},
		{name: "duplicate unknown key reported once", body: p.add("x", "1").add("x", "2").add("x", "3").String(), want: one("x", "duplicate key")},
		{name: "nested 33 levels", body: p.with("extra", nested(32)).String(), want: one("extra", "nested deeper than 32 levels")},
		{
			name: "deeply nested is walked, not recursed",
			body: p.with("extra", nested(30000)).without("email").String(),
			want: []schema.Problem{{Field: "extra", Message: "nested deeper than 32 levels"}, {Field: "email", Message: "missing"}},
		},
		{name: "nested objects", body: p.with("extra", strings.Repeat(`{"a":`, 32)+"1"+strings.Repeat("}", 32)).String(), want: one("extra", "nested deeper than 32 levels")},

		// Presence and types.
		{
			name: "empty object",
			body: `{}`,
			want: []schema.Problem{
				{Field: "id", Message: "missing"},
				{Field: "email", Message: "missing"},
				{Field: "username", Message: "missing"},
				{Field: "action", Message: "missing"},
				{Field: "timestamp", Message: "missing"},
			},
		},
		{name: "field names are case-sensitive", body: p.without("id").with("ID", `"78af4bc4-afce-4676-b373-5b802a2dfd2e"`).String(), want: one("id", "missing")},
		{name: "id null", body: p.with("id", "null").String(), want: one("id", "must be a string, got null")},
		{name: "id number", body: p.with("id", "7").String(), want: one("id", "must be a string, got number")},
		{name: "email boolean", body: p.with("email", "false").String(), want: one("email", "must be a string, got boolean")},
		{name: "username object", body: p.with("username", `{"first":"alice"}`).String(), want: one("username", "must be a string, got object")},
		{name: "action array", body: p.with("action", `["created"]`).String(), want: one("action", "must be a string, got array")},
		{name: "timestamp number", body: p.with("timestamp", "1795872497").String(), want: one("timestamp", "must be a string, got number")},
		{name: "request_id number", body: p.with("request_id", "12").String(), want: one("request_id", "must be a string, got number")},
		{name: "service_name boolean", body: p.with("service_name", "true").String(), want: one("service_name", "must be a string, got boolean")},
		{name: "displayName number", body: p.with("displayName", "1").String(), want: one("displayName", "must be a string, got number")},
		{name: "avatar object", body: p.with("avatar", "{}").String(), want: one("avatar", "must be a string, got object")},
		{name: "sequence string", body: p.with("sequence", `"1"`).String(), want: one("sequence", "must be a non-negative integer, got string")},
		{name: "sequence negative", body: p.with("sequence", "-1").String(), want: one("sequence", "must not be negative, got -1")},
		{name: "sequence fraction", body: p.with("sequence", "1.5").String(), want: one("sequence", "must be a whole number without fraction or exponent, got 1.5")},
		{name: "sequence exponent", body: p.with("sequence", "1e3").String(), want: one("sequence", "must be a whole number without fraction or exponent, got 1e3")},
		{name: "sequence too large", body: p.with("sequence", "18446744073709551616").String(), want: one("sequence", "must be at most 18446744073709551615, got 18446744073709551616")},

		// id.
		{name: "id not a UUID", body: p.with("id", `"abc"`).String(), want: one("id", `not a UUID: "abc"`)},
		{name: "id empty", body: p.with("id", `""`).String(), want: one("id", `not a UUID: ""`)},
		{name: "id braces", body: p.with("id", `"{78af4bc4-afce-4676-b373-5b802a2dfd2e}"`).String(), want: one("id", `not a UUID in the 36-character hyphenated form: "{78af4bc4-afce-4676-b373-5b802a2dfd2e}"`)},
		{name: "id urn", body: p.with("id", `"urn:uuid:78af4bc4-afce-4676-b373-5b802a2dfd2e"`).String(), want: one("id", `not a UUID in the 36-character hyphenated form: "urn:uuid:78af4bc4-afce-4676-b373-5b802a2dfd2e"`)},
		{name: "id without hyphens", body: p.with("id", `"78af4bc4afce4676b3735b802a2dfd2e"`).String(), want: one("id", `not a UUID in the 36-character hyphenated form: "78af4bc4afce4676b3735b802a2dfd2e"`)},
		{name: "id bad hyphen", body: p.with("id", `"78af4bc4-afce-4676-b373_5b802a2dfd2e"`).String(), want: one("id", `not a UUID: "78af4bc4-afce-4676-b373_5b802a2dfd2e"`)},
		{name: "id nil UUID", body: p.with("id", `"00000000-0000-0000-0000-000000000000"`).String(), want: one("id", "is the nil UUID")},
		{name: "id long value truncated", body: p.with("id", `"`+long+`"`).String(), want: one("id", "not a UUID: "+longQuoted)},

		// email.
		{name: "email empty", body: p.with("email", `""`).String(), want: one("email", "must not be empty")},
		{name: "email no at", body: p.with("email", `"alice"`).String(), want: one("email", `not an email address: "alice" (want exactly one '@')`)},
		{name: "email two ats", body: p.with("email", `"a@b@example.com"`).String(), want: one("email", `not an email address: "a@b@example.com" (want exactly one '@')`)},
		{name: "email empty local part", body: p.with("email", `"@example.com"`).String(), want: one("email", `not an email address: "@example.com" (empty local part)`)},
		{name: "email domain without dot", body: p.with("email", `"alice@localhost"`).String(), want: one("email", `not an email address: "alice@localhost" (domain has no dot)`)},
		{name: "email space", body: p.with("email", `"alice @example.com"`).String(), want: one("email", `not an email address: "alice @example.com" (contains white space or a control character)`)},
		{name: "email control character", body: p.with("email", `"alice\u0000@example.com"`).String(), want: one("email", `not an email address: "alice\x00@example.com" (contains white space or a control character)`)},
		{name: "email angle brackets", body: p.with("email", `"<alice@example.com>"`).String(), want: one("email", `not an email address: "<alice@example.com>" (not a plain RFC 5322 address)`)},
		{name: "email quoted local part", body: p.with("email", `"\"alice\"@example.com"`).String(), want: one("email", `not an email address: "\"alice\"@example.com" (not a plain RFC 5322 address)`)},
		{name: "email double dot", body: p.with("email", `"al..ice@example.com"`).String(), want: one("email", `not an email address: "al..ice@example.com" (not a plain RFC 5322 address)`)},
		{name: "email too long", body: p.with("email", `"`+strings.Repeat("a", 243)+`@example.com"`).String(), want: one("email", "is 255 bytes, limit is 254")},

		// username.
		{name: "username empty", body: p.with("username", `""`).String(), want: one("username", "must not be empty")},
		{name: "username blank", body: p.with("username", `"  \t "`).String(), want: one("username", `must not be blank: "  \t "`)},
		{name: "username too long", body: p.with("username", `"`+strings.Repeat("u", 256)+`"`).String(), want: one("username", "is 256 bytes, limit is 255")},
		{name: "username newline", body: p.with("username", `"alice\n01"`).String(), want: one("username", `contains a control character at byte 6: "alice\n01"`)},
		{name: "username DEL", body: p.with("username", `"alice\u007f"`).String(), want: one("username", `contains a control character at byte 6: "alice\x7f"`)},

		// action and subject.
		{name: "action unknown", body: p.with("action", `"create"`).String(), want: one("action", `unknown action "create" (want created, updated or deleted)`)},
		{name: "action wrong case", body: p.with("action", `"Created"`).String(), want: one("action", `unknown action "Created" (want created, updated or deleted)`)},
		{name: "action empty", body: p.with("action", `""`).String(), want: one("action", `unknown action "" (want created, updated or deleted)`)},
		{name: "action subject mismatch", subject: "user.events.deleted", body: producerPayload, want: one("action", `action "created" does not match subject "user.events.deleted"`)},
		{name: "action unknown subject", subject: "user.events.*", body: producerPayload, want: one("action", `action "created" does not match subject "user.events.*"`)},

		// timestamp.
		{name: "timestamp words", body: p.with("timestamp", `"yesterday"`).String(), want: one("timestamp", `not an RFC 3339 timestamp: "yesterday"`)},
		{name: "timestamp space separator", body: p.with("timestamp", `"2026-11-28 13:28:17Z"`).String(), want: one("timestamp", `not an RFC 3339 timestamp: "2026-11-28 13:28:17Z"`)},
		{name: "timestamp without zone", body: p.with("timestamp", `"2026-11-28T13:28:17"`).String(), want: one("timestamp", `not an RFC 3339 timestamp: "2026-11-28T13:28:17"`)},
		{name: "timestamp comma fraction", body: p.with("timestamp", `"2026-11-28T13:28:17,5Z"`).String(), want: one("timestamp", `not an RFC 3339 timestamp: "2026-11-28T13:28:17,5Z"`)},
		{name: "timestamp hour 24", body: p.with("timestamp", `"2026-11-28T24:00:00Z"`).String(), want: one("timestamp", `not an RFC 3339 timestamp: "2026-11-28T24:00:00Z"`)},
		{name: "timestamp February 30", body: p.with("timestamp", `"2026-02-30T00:00:00Z"`).String(), want: one("timestamp", `not an RFC 3339 timestamp: "2026-02-30T00:00:00Z"`)},
		{name: "timestamp unix seconds string", body: p.with("timestamp", `"1795872497"`).String(), want: one("timestamp", `not an RFC 3339 timestamp: "1795872497"`)},
		{name: "timestamp zero time", body: p.with("timestamp", `"0001-01-01T00:00:00Z"`).String(), want: one("timestamp", `is the zero time: "0001-01-01T00:00:00Z"`)},
		{name: "timestamp year 0", body: p.with("timestamp", `"0000-06-01T00:00:00Z"`).String(), want: one("timestamp", `out of range (years 0001 to 9999 in UTC): "0000-06-01T00:00:00Z"`)},
		{name: "timestamp past 9999 in UTC", body: p.with("timestamp", `"9999-12-31T23:59:59-01:00"`).String(), want: one("timestamp", `out of range (years 0001 to 9999 in UTC): "9999-12-31T23:59:59-01:00"`)},

		// Several problems at once.
		{
			name:    "every problem reported",
			subject: "user.events.updated",
			body:    `{"id":"abc","email":"alice","username":"","action":"created","request_id":5,"timestamp":"now","sequence":-3,"id":"x"}`,
			want: []schema.Problem{
				{Field: "id", Message: "duplicate key"},
				{Field: "id", Message: `not a UUID: "abc"`},
				{Field: "email", Message: `not an email address: "alice" (want exactly one '@')`},
				{Field: "username", Message: "must not be empty"},
				{Field: "action", Message: `action "created" does not match subject "user.events.updated"`},
				{Field: "request_id", Message: "must be a string, got number"},
				{Field: "timestamp", Message: `not an RFC 3339 timestamp: "now"`},
				{Field: "sequence", Message: "must not be negative, got -3"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			subject := tt.subject
			if subject == "" {
				subject = "user.events.created"
			}
			ev, err := schema.DecodeEvent(subject, []byte(tt.body))
			if ev != (schema.UserEvent{}) {
				t.Errorf("DecodeEvent() event = %+v, want the zero UserEvent on error", ev)
			}
			checkProblems(t, err, tt.want)
		})
	}
}

// checkProblems asserts that err is an invalid-event error listing exactly
// want, on one line.
func checkProblems(t *testing.T, err error, want []schema.Problem) {
	t.Helper()
	if err == nil {
		t.Fatalf("DecodeEvent() error = nil, want problems %+v", want)
	}
	if !errors.Is(err, schema.ErrInvalidEvent) {
		t.Errorf("errors.Is(%v, ErrInvalidEvent) = false", err)
	}
	var invalid *schema.InvalidEventError
	if !errors.As(err, &invalid) {
		t.Fatalf("error %T is not *InvalidEventError", err)
	}
	if !slices.Equal(invalid.Problems, want) {
		t.Errorf("problems =\n%q\nwant\n%q", invalid.Problems, want)
	}
	if strings.ContainsAny(err.Error(), "\r\n") {
		t.Errorf("error %q spans more than one line", err)
	}
}

func TestDecodeEventSubjectOptionalForHTTP(t *testing.T) {
	t.Parallel()
	for _, action := range []string{schema.ActionCreated, schema.ActionUpdated, schema.ActionDeleted} {
		b := producerBody().with("action", `"`+action+`"`).bytes()
		if _, err := schema.DecodeEvent("", b); err != nil {
			t.Errorf("DecodeEvent(\"\", %s) error = %v", action, err)
		}
		if _, err := schema.DecodeEvent("user.events."+action, b); err != nil {
			t.Errorf("DecodeEvent(user.events.%s) error = %v", action, err)
		}
	}
}

func TestActionFromSubject(t *testing.T) {
	t.Parallel()
	tests := []struct{ subject, want string }{
		{"user.events.created", "created"},
		{"user.events.deleted", "deleted"},
		{"created", "created"},
		{"user.events.", ""},
		{"", ""},
		{"a.b.c.updated", "updated"},
	}
	for _, tt := range tests {
		if got := schema.ActionFromSubject(tt.subject); got != tt.want {
			t.Errorf("ActionFromSubject(%q) = %q, want %q", tt.subject, got, tt.want)
		}
	}
}

func TestInvalidEventError(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  *schema.InvalidEventError
		want string
	}{
		{
			name: "field and body problems",
			err: &schema.InvalidEventError{Problems: []schema.Problem{
				{Field: "id", Message: `not a UUID: "abc"`},
				{Field: "email", Message: "missing"},
				{Message: "unexpected data after the JSON object at byte 9"},
			}},
			want: `invalid event: id: not a UUID: "abc"; email: missing; unexpected data after the JSON object at byte 9`,
		},
		{
			name: "odd field names are quoted",
			err:  &schema.InvalidEventError{Problems: []schema.Problem{{Field: "a: b\n", Message: "duplicate key"}}},
			want: `invalid event: "a: b\n": duplicate key`,
		},
		{name: "no problems", err: &schema.InvalidEventError{}, want: "invalid event"},
		{name: "nil", err: nil, want: "invalid event"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := tt.err.Error(); got != tt.want {
				t.Errorf("Error() = %s\nwant      %s", got, tt.want)
			}
			wrapped := fmt.Errorf("decode user.events.created: %w", tt.err)
			if !errors.Is(wrapped, schema.ErrInvalidEvent) {
				t.Error("wrapped error does not match ErrInvalidEvent")
			}
		})
	}
}

func TestInvalidEventErrorCapsLine(t *testing.T) {
	t.Parallel()
	b := producerBody()
	for i := range 25 {
		b = b.add(fmt.Sprintf("k%d", i), "1").add(fmt.Sprintf("k%d", i), "2")
	}
	_, err := schema.DecodeEvent("user.events.created", b.bytes())
	var invalid *schema.InvalidEventError
	if !errors.As(err, &invalid) {
		t.Fatalf("error = %v, want *InvalidEventError", err)
	}
	if len(invalid.Problems) != 25 {
		t.Errorf("len(Problems) = %d, want 25", len(invalid.Problems))
	}
	msg := err.Error()
	if !strings.HasSuffix(msg, "; k9: duplicate key; and 15 more") {
		t.Errorf("Error() = %s, want it cut after 10 problems", msg)
	}
}

func TestDecodeEventDuplicateKeyLongName(t *testing.T) {
	t.Parallel()
	key := strings.Repeat("k", 200)
	_, err := schema.DecodeEvent("user.events.created", producerBody().add(key, "1").add(key, "2").bytes())
	checkProblems(t, err, []schema.Problem{{Field: strings.Repeat("k", 64) + "…", Message: "duplicate key"}})
}
