package schema_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
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
			name:    "unknown field nested 1000 levels",
			subject: "user.events.created",
			body:    producerBody().with("extra", nested(1000)).String(),
			want:    alice,
		},
		{
			name:    "unknown field nested 20000 levels, beyond encoding/json's limit",
			subject: "user.events.created",
			body:    producerBody().with("extra", nested(20000)).String(),
			want:    alice,
		},
		{
			name:    "unknown objects and arrays nested 12000 levels",
			subject: "user.events.created",
			body:    producerBody().with("extra", strings.Repeat(`{"a":[`, 12000/2)+"null"+strings.Repeat("]}", 12000/2)).String(),
			want:    alice,
		},
		{
			name:    "unknown fields of every shape, repeated",
			subject: "user.events.created",
			body: producerBody().add("x", "1").add("x", `"two"`).add("x", `{"y":[true,false,null,-1.5e+3,"\u00fc\ud800"]}`).
				add("", `""`).add(`\u0000`, "[]").String(),
			want: alice,
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
	if !slices.Equal(a.Dropped, b.Dropped) {
		return false
	}
	a.Sequence, b.Sequence = nil, nil
	a.Timestamp, b.Timestamp = time.Time{}, time.Time{}
	a.Dropped, b.Dropped = nil, nil
	return reflect.DeepEqual(a, b)
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
	whole := func(s string) []schema.Problem { return []schema.Problem{{Message: s}} }
	one := func(field, msg string) []schema.Problem { return []schema.Problem{{Field: field, Message: msg}} }
	// at is the 1-based byte of the first occurrence of s in b.
	at := func(b body, s string) int { return strings.Index(b.String(), s) + 1 }

	tests := []struct {
		name    string
		subject string // "user.events.created" when empty
		body    string
		want    []schema.Problem
	}{
		// The body as a whole.
		{name: "empty", body: "", want: whole("body is empty")},
		{name: "white space only", body: " \r\n\t", want: whole("body is empty (white space only)")},
		{name: "byte-order mark", body: "\xEF\xBB\xBF" + producerPayload, want: whole("body starts with a UTF-8 byte-order mark")},
		{name: "invalid UTF-8", body: "{\"id\":\"\xff\"}", want: whole("body is not valid UTF-8 at byte 8")},
		{name: "invalid UTF-8 in an unknown field", body: p.with("x", "\"\xc3\x28\"").String(), want: whole(fmt.Sprintf("body is not valid UTF-8 at byte %d", at(p.with("x", "\"\xc3\x28\""), "\xc3")))},
		{name: "truncated", body: producerPayload[:40], want: whole("not valid JSON: unexpected end of JSON input")},
		{name: "open brace only", body: "{", want: whole("not valid JSON: unexpected end of JSON input")},
		{name: "missing colon", body: `{"id" 1}`, want: whole("not valid JSON: invalid character '1' after object key at byte 7")},
		{name: "trailing comma", body: `{"id":"x",}`, want: whole("not valid JSON: invalid character '}' looking for beginning of object key string at byte 11")},
		{name: "bad literal", body: `{"id":tru}`, want: whole("not valid JSON: invalid character '}' in literal true (expecting 'e') at byte 10")},
		{name: "raw newline in string", body: "{\"id\":\"a\nb\"}", want: whole(`not valid JSON: invalid character '\n' in string literal at byte 9`)},
		{name: "single quotes", body: `{'id':1}`, want: whole("not valid JSON: invalid character '\\'' looking for beginning of object key string at byte 2")},
		{name: "bad escape", body: `{"id":"\x41"}`, want: whole(`not valid JSON: invalid character 'x' in string escape code at byte 9`)},
		{name: "short unicode escape", body: `{"id":"\u12"}`, want: whole(`not valid JSON: invalid character '"' in \u hexadecimal character escape at byte 12`)},
		{name: "leading zero", body: `{"sequence":01}`, want: whole("not valid JSON: invalid character '1' after object key:value pair at byte 14")},
		{name: "bare minus", body: `{"sequence":-}`, want: whole("not valid JSON: invalid character '}' in numeric literal at byte 14")},
		{name: "fraction without digits", body: `{"sequence":1.}`, want: whole("not valid JSON: invalid character '}' after decimal point in numeric literal at byte 15")},
		{name: "exponent without digits", body: `{"sequence":1e}`, want: whole("not valid JSON: invalid character '}' in exponent of numeric literal at byte 15")},
		{name: "array", body: `[` + producerPayload + `]`, want: whole("body is a JSON array, not an object")},
		{name: "string", body: `"hello"`, want: whole("body is a JSON string, not an object")},
		{name: "number", body: `42`, want: whole("body is a JSON number, not an object")},
		{name: "boolean", body: `true`, want: whole("body is a JSON boolean, not an object")},
		{name: "null", body: `null`, want: whole("body is JSON null, not an object")},
		{name: "not JSON at all", body: `id=1&email=a`, want: whole("not valid JSON: invalid character 'i' looking for beginning of value at byte 1")},
		{
			name: "trailing object",
			body: producerPayload + ` {}`,
			want: whole(fmt.Sprintf("unexpected data after the JSON object at byte %d", len(producerPayload)+2)),
		},
		{
			name: "trailing garbage and a field problem",
			body: p.with("id", `"nope"`).String() + "x",
			want: []schema.Problem{
				{Message: fmt.Sprintf("unexpected data after the JSON object at byte %d", len(p.with("id", `"nope"`).String())+1)},
				{Field: "id", Message: `not a UUID: "nope"`},
			},
		},
		{
			name: "syntax error deep in an unknown field",
			body: p.with("extra", strings.Repeat("[", 20000)+"}").String(),
			want: whole(fmt.Sprintf("not valid JSON: invalid character '}' looking for beginning of value at byte %d", at(p.with("extra", strings.Repeat("[", 20000)+"}"), "[}")+1)),
		},
		{
			name: "unclosed deep unknown field",
			body: p.with("extra", strings.Repeat(`{"a":`, 5000)).String(),
			want: whole(fmt.Sprintf("not valid JSON: invalid character '}' looking for beginning of value at byte %d", at(p.with("extra", strings.Repeat(`{"a":`, 5000)), `:}`)+1)),
		},

		// A repeated key the router needs: which value was meant is unknowable.
		{name: "duplicate key", body: p.add("id", `"78af4bc4-afce-4676-b373-5b802a2dfd2e"`).String(), want: one("id", "duplicate key")},
		{name: "duplicate escaped key", body: p.add(`\u0069d`, `"x"`).String(), want: one("id", "duplicate key")},
		{name: "duplicate email", body: p.add("email", `""`).String(), want: one("email", "duplicate key")},
		{name: "duplicate username", body: p.add("username", `"alice01"`).String(), want: one("username", "duplicate key")},
		{name: "duplicate action", body: p.add("action", `"created"`).String(), want: one("action", "duplicate key")},
		{name: "duplicate timestamp", body: p.add("timestamp", `"2026-11-28T13:28:18Z"`).String(), want: one("timestamp", "duplicate key")},

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
		{name: "email null", body: p.with("email", "null").String(), want: one("email", "must be a string, got null")},
		{name: "email boolean", body: p.with("email", "false").String(), want: one("email", "must be a string, got boolean")},
		{name: "username object", body: p.with("username", `{"first":"alice"}`).String(), want: one("username", "must be a string, got object")},
		{name: "username number", body: p.with("username", `12`).String(), want: one("username", "must be a string, got number")},
		{name: "action array", body: p.with("action", `["created"]`).String(), want: one("action", "must be a string, got array")},
		{name: "timestamp number", body: p.with("timestamp", "1795872497").String(), want: one("timestamp", "must be a string, got number")},

		// id.
		{name: "id not a UUID", body: p.with("id", `"abc"`).String(), want: one("id", `not a UUID: "abc"`)},
		{name: "id empty", body: p.with("id", `""`).String(), want: one("id", `not a UUID: ""`)},
		{name: "id braces", body: p.with("id", `"{78af4bc4-afce-4676-b373-5b802a2dfd2e}"`).String(), want: one("id", `not a UUID in the 36-character hyphenated form: "{78af4bc4-afce-4676-b373-5b802a2dfd2e}"`)},
		{name: "id urn", body: p.with("id", `"urn:uuid:78af4bc4-afce-4676-b373-5b802a2dfd2e"`).String(), want: one("id", `not a UUID in the 36-character hyphenated form: "urn:uuid:78af4bc4-afce-4676-b373-5b802a2dfd2e"`)},
		{name: "id without hyphens", body: p.with("id", `"78af4bc4afce4676b3735b802a2dfd2e"`).String(), want: one("id", `not a UUID in the 36-character hyphenated form: "78af4bc4afce4676b3735b802a2dfd2e"`)},
		{name: "id bad hyphen", body: p.with("id", `"78af4bc4-afce-4676-b373_5b802a2dfd2e"`).String(), want: one("id", `not a UUID: "78af4bc4-afce-4676-b373_5b802a2dfd2e"`)},
		{name: "id nil UUID", body: p.with("id", `"00000000-0000-0000-0000-000000000000"`).String(), want: one("id", "is the nil UUID")},
		{name: "id long value truncated", body: p.with("id", `"`+long+`"`).String(), want: one("id", "not a UUID: "+longQuoted)},
		{name: "id NUL", body: p.with("id", `"78af4bc4-afce-4676-b373-5b802a2dfd2\u0000"`).String(), want: one("id", `not a UUID: "78af4bc4-afce-4676-b373-5b802a2dfd2\x00"`)},
		{name: "id ESC", body: p.with("id", `"\u001b[2J78af4bc4-afce-4676-b373-5b802a2dfd2e"`).String(), want: one("id", `not a UUID: "\x1b[2J78af4bc4-afce-4676-b373-5b802a2dfd2e"`)},
		{name: "id bidi override", body: p.with("id", `"\u202e78af4bc4-afce-4676-b373-5b802a2dfd2e"`).String(), want: one("id", `not a UUID: "\u202e78af4bc4-afce-4676-b373-5b802a2dfd2e"`)},

		// NUL in an identity field: no stored user can hold it.
		{name: "email NUL", body: p.with("email", `"alice\u0000@example.com"`).String(), want: one("email", "contains NUL (U+0000) at byte 6 of the value, which no stored user can hold")},
		{name: "email only NUL", body: p.with("email", `"\u0000"`).String(), want: one("email", "contains NUL (U+0000) at byte 1 of the value, which no stored user can hold")},
		{name: "username NUL", body: p.with("username", `"alice\u000001"`).String(), want: one("username", "contains NUL (U+0000) at byte 6 of the value, which no stored user can hold")},

		// Lone surrogate escapes: half a UTF-16 pair is no character.
		{name: "id lone high surrogate", body: p.with("id", `"\ud800"`).String(), want: one("id", fmt.Sprintf(`lone surrogate escape \ud800 at byte %d: half of a UTF-16 pair, not a character`, at(p.with("id", `"\ud800"`), `\ud800`)))},
		{name: "email lone high surrogate", body: p.with("email", `"a\uD83D@example.com"`).String(), want: one("email", fmt.Sprintf(`lone surrogate escape \uD83D at byte %d: half of a UTF-16 pair, not a character`, at(p.with("email", `"a\uD83D@example.com"`), `\uD83D`)))},
		{name: "username lone low surrogate", body: p.with("username", `"alice\udc00"`).String(), want: one("username", fmt.Sprintf(`lone surrogate escape \udc00 at byte %d: half of a UTF-16 pair, not a character`, at(p.with("username", `"alice\udc00"`), `\udc00`)))},
		{name: "username high surrogate before a non-surrogate", body: p.with("username", `"\ud83d\u0041"`).String(), want: one("username", fmt.Sprintf(`lone surrogate escape \ud83d at byte %d: half of a UTF-16 pair, not a character`, at(p.with("username", `"\ud83d\u0041"`), `\ud83d`)))},
		{name: "username two high surrogates", body: p.with("username", `"\ud83d\ud83d\ude00"`).String(), want: one("username", fmt.Sprintf(`lone surrogate escape \ud83d at byte %d: half of a UTF-16 pair, not a character`, at(p.with("username", `"\ud83d\ud83d\ude00"`), `\ud83d`)))},
		{name: "action lone surrogate", body: p.with("action", `"created\ud800"`).String(), want: one("action", fmt.Sprintf(`lone surrogate escape \ud800 at byte %d: half of a UTF-16 pair, not a character`, at(p.with("action", `"created\ud800"`), `\ud800`)))},
		{name: "timestamp lone surrogate", body: p.with("timestamp", `"\udfff2026-11-28T13:28:17Z"`).String(), want: one("timestamp", fmt.Sprintf(`lone surrogate escape \udfff at byte %d: half of a UTF-16 pair, not a character`, at(p.with("timestamp", `"\udfff2026-11-28T13:28:17Z"`), `\udfff`)))},

		// action and subject.
		{name: "action unknown", body: p.with("action", `"create"`).String(), want: one("action", `unknown action "create" (want created, updated or deleted)`)},
		{name: "action wrong case", body: p.with("action", `"Created"`).String(), want: one("action", `unknown action "Created" (want created, updated or deleted)`)},
		{name: "action empty", body: p.with("action", `""`).String(), want: one("action", `unknown action "" (want created, updated or deleted)`)},
		{name: "action NUL", body: p.with("action", `"created\u0000"`).String(), want: one("action", `unknown action "created\x00" (want created, updated or deleted)`)},
		{name: "action ESC", body: p.with("action", `"\u001b[31mcreated"`).String(), want: one("action", `unknown action "\x1b[31mcreated" (want created, updated or deleted)`)},
		{name: "action bidi override", body: p.with("action", `"\u202ecreated"`).String(), want: one("action", `unknown action "\u202ecreated" (want created, updated or deleted)`)},
		{name: "action subject mismatch", subject: "user.events.deleted", body: producerPayload, want: one("action", `action "created" does not match subject "user.events.deleted"`)},
		{name: "action unknown subject", subject: "user.events.*", body: producerPayload, want: one("action", `action "created" does not match subject "user.events.*"`)},

		// timestamp.
		{name: "timestamp words", body: p.with("timestamp", `"yesterday"`).String(), want: one("timestamp", `not an RFC 3339 timestamp: "yesterday"`)},
		{name: "timestamp space separator", body: p.with("timestamp", `"2026-11-28 13:28:17Z"`).String(), want: one("timestamp", `not an RFC 3339 timestamp: "2026-11-28 13:28:17Z"`)},
		{name: "timestamp without zone", body: p.with("timestamp", `"2026-11-28T13:28:17"`).String(), want: one("timestamp", `not an RFC 3339 timestamp: "2026-11-28T13:28:17"`)},
		{name: "timestamp lower-case z", body: p.with("timestamp", `"2026-11-28T13:28:17z"`).String(), want: one("timestamp", `not an RFC 3339 timestamp: "2026-11-28T13:28:17z"`)},
		{name: "timestamp comma fraction", body: p.with("timestamp", `"2026-11-28T13:28:17,5Z"`).String(), want: one("timestamp", `not an RFC 3339 timestamp: "2026-11-28T13:28:17,5Z"`)},
		{name: "timestamp empty fraction", body: p.with("timestamp", `"2026-11-28T13:28:17.Z"`).String(), want: one("timestamp", `not an RFC 3339 timestamp: "2026-11-28T13:28:17.Z"`)},
		{name: "timestamp offset without colon", body: p.with("timestamp", `"2026-11-28T13:28:17+0100"`).String(), want: one("timestamp", `not an RFC 3339 timestamp: "2026-11-28T13:28:17+0100"`)},
		{name: "timestamp offset +24:00", body: p.with("timestamp", `"2026-11-28T13:28:17+24:00"`).String(), want: one("timestamp", `not an RFC 3339 timestamp: "2026-11-28T13:28:17+24:00" (offset +24:00 is beyond ±23:59)`)},
		{name: "timestamp offset -24:00", body: p.with("timestamp", `"2026-11-28T13:28:17-24:00"`).String(), want: one("timestamp", `not an RFC 3339 timestamp: "2026-11-28T13:28:17-24:00" (offset -24:00 is beyond ±23:59)`)},
		{name: "timestamp offset minutes 60", body: p.with("timestamp", `"2026-11-28T13:28:17+01:60"`).String(), want: one("timestamp", `not an RFC 3339 timestamp: "2026-11-28T13:28:17+01:60" (offset +01:60 is beyond ±23:59)`)},
		{name: "timestamp hour 24", body: p.with("timestamp", `"2026-11-28T24:00:00Z"`).String(), want: one("timestamp", `not an RFC 3339 timestamp: "2026-11-28T24:00:00Z"`)},
		{name: "timestamp February 30", body: p.with("timestamp", `"2026-02-30T00:00:00Z"`).String(), want: one("timestamp", `not an RFC 3339 timestamp: "2026-02-30T00:00:00Z"`)},
		{name: "timestamp unix seconds string", body: p.with("timestamp", `"1795872497"`).String(), want: one("timestamp", `not an RFC 3339 timestamp: "1795872497"`)},
		{name: "timestamp NUL", body: p.with("timestamp", `"2026-11-28T13:28:17Z\u0000"`).String(), want: one("timestamp", `not an RFC 3339 timestamp: "2026-11-28T13:28:17Z\x00"`)},
		{name: "timestamp zero time", body: p.with("timestamp", `"0001-01-01T00:00:00Z"`).String(), want: one("timestamp", `is the zero time: "0001-01-01T00:00:00Z"`)},
		{name: "timestamp year 0", body: p.with("timestamp", `"0000-06-01T00:00:00Z"`).String(), want: one("timestamp", `out of range (years 0001 to 9999 in UTC): "0000-06-01T00:00:00Z"`)},
		{name: "timestamp past 9999 in UTC", body: p.with("timestamp", `"9999-12-31T23:59:59-01:00"`).String(), want: one("timestamp", `out of range (years 0001 to 9999 in UTC): "9999-12-31T23:59:59-01:00"`)},

		// Several problems at once; the unusable optional fields cost nothing.
		{
			name:    "every problem reported",
			subject: "user.events.updated",
			body:    `{"id":"abc","email":"a\u0000","username":7,"action":"created","request_id":5,"timestamp":"now","sequence":-3,"displayName":[],"timestamp":"x"}`,
			want: []schema.Problem{
				{Field: "id", Message: `not a UUID: "abc"`},
				{Field: "email", Message: "contains NUL (U+0000) at byte 2 of the value, which no stored user can hold"},
				{Field: "username", Message: "must be a string, got number"},
				{Field: "action", Message: `action "created" does not match subject "user.events.updated"`},
				{Field: "timestamp", Message: "duplicate key"},
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
			if !reflect.DeepEqual(ev, schema.UserEvent{}) {
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
	var problems []schema.Problem
	for i := range 25 {
		problems = append(problems, schema.Problem{Field: fmt.Sprintf("k%d", i), Message: "duplicate key"})
	}
	msg := (&schema.InvalidEventError{Problems: problems}).Error()
	if !strings.HasSuffix(msg, "; k9: duplicate key; and 15 more") {
		t.Errorf("Error() = %s, want it cut after 10 problems", msg)
	}
}
