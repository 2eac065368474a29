package store_test

import (
	"testing"
	"unicode/utf8"

	"github.com/social/user-events-router/store"
)

func TestReasonKind(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ reason, want string }{
		{`decode user.events.created: invalid event: email: not an email address: "x" (domain has no dot)`,
			`email: not an email address: … (domain has no dot)`},
		{`decode user.events.updated: invalid event: email: not an email address: "y\"z" (domain has no dot)`,
			`email: not an email address: … (domain has no dot)`},
		{`decode event: invalid event: id: not a UUID: "abc"; email: missing`, `id: not a UUID: …; email: missing`},
		{`decode user.events.created: invalid event: body is 4097 bytes, limit is 4096`, `body is N bytes, limit is N`},
		{`decode event: invalid event: not valid JSON: invalid character '\x00' looking for beginning of value at byte 1`,
			`not valid JSON: invalid character … looking for beginning of value at byte N`},
		{`decode user.events.created: invalid event: timestamp: not an RFC 3339 timestamp: "yesterday"`,
			`timestamp: not an RFC 3339 timestamp: …`},
		{`decode user.events.created: invalid event: sequence: must not be negative, got -5`, `sequence: must not be negative, got N`},
		{`commit command 5b2c3d4e-0000-4000-8000-000000000001: database is locked (SQLITE_BUSY)`, `commit command …: database is locked (SQLITE_BUSY)`},
		{`commit: ERROR: could not serialize access (SQLSTATE 40001)`, `commit: ERROR: could not serialize access (SQLSTATE 40001)`},
		{`panic: runtime error: index out of range [3] with length 3`, `panic: runtime error: index out of range [N] with length N`},
		{`no handler for action "suspended"`, `no handler for action …`},
		{`invalid event: "unterminated`, `…`},
		{`it's a reason with an apostrophe and a "quote"`, `it's a reason with an apostrophe and a …`},
		{"spaced   \t out\nreason", "spaced out reason"},
		{"", ""},
	} {
		got := store.ReasonKind(tt.reason)
		if got != tt.want {
			t.Errorf("ReasonKind(%q)\n = %q\nwant %q", tt.reason, got, tt.want)
		}
		if again := store.ReasonKind(got); again != got {
			t.Errorf("ReasonKind is not idempotent: %q → %q", got, again)
		}
	}
}

func FuzzReasonKind(f *testing.F) {
	f.Add(`decode user.events.created: invalid event: email: not an email address: "x" (domain has no dot)`)
	f.Add(`panic: boom 0x1f [7]`)
	f.Add(`"\"'` + "\xff")
	f.Fuzz(func(t *testing.T, reason string) {
		kind := store.ReasonKind(reason)
		if n := utf8.RuneCountInString(kind); n > 200 {
			t.Errorf("kind of %d characters", n)
		}
		if utf8.ValidString(reason) && !utf8.ValidString(kind) {
			t.Errorf("kind %q of a valid reason is not valid UTF-8", kind)
		}
		if again := store.ReasonKind(kind); again != kind {
			t.Errorf("not idempotent: %q → %q → %q", reason, kind, again)
		}
	})
}
