package schema_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/social/user-events-router/schema"
)

// Who the users are (DESIGN §2): every e-mail and username form the Auth
// Service emits decodes, as sent, with nothing dropped.
func TestDecodeEventProducerShapes(t *testing.T) {
	t.Parallel()
	longName := strings.Repeat("ผู้ใช้_", 80) + "1a2b3c4d" // a long display name made a username
	tests := []struct {
		name, email, username string
	}{
		// Password sign-ups: validator email,max=255 and alphanum 3–20.
		{"password, shortest username", "bob@example.com", "bob"},
		{"password, longest username", "carol.longname@example.co.uk", "Carol1234567890abcde"},
		{"password, digits only", "1234@example.com", "123"},
		{"password, address of 255 bytes", strings.Repeat("l", 64) + "@" + strings.Repeat("d", 63) + "." + strings.Repeat("e", 63) + "." + strings.Repeat("f", 59) + ".io", "longmail"},
		{"password, plus tag and subdomain", "dave+news@mail.example.org", "dave42"},
		{"password, IP literal domain", "erin@[192.0.2.1]", "erin"},
		{"password, quoted local part", `"john doe"@example.com`, "johndoe"},
		{"password, unicode address", "用户@例子.广告", "yonghu"},
		// Google: the address's local part, then _ and 8 hex digits.
		{"google", "jane.doe+tag@gmail.com", "jane.doe+tag_1a2b3c4d"},
		{"google workspace", "J.Doe@Company.example", "J.Doe_0f0f0f0f"},
		// Facebook: maybe no e-mail; the display name lowercased, spaces as _.
		{"facebook without e-mail, Thai", "", "สมชาย_ใจดี_1a2b3c4d"},
		{"facebook without e-mail, emoji", "", "🦄_unicorn_👨‍👩‍👧_1a2b3c4d"},
		{"facebook without e-mail, punctuation", "", "o'brien-smith_(jr.)_«quoted»_\"x\"_\\_1a2b3c4d"},
		{"facebook without e-mail, Arabic", "", "محمد_علي_1a2b3c4d"},
		{"facebook without e-mail, very long", "", longName},
		{"facebook with e-mail", "somchai@facebook.example", "somchai_1a2b3c4d"},
		// LINE: a made-up address without a real domain.
		{"line", "line_U1234abcd@oauth.local", "line_u1234abcd_1a2b3c4d"},
		{"line, long provider id", "line_U4af4980629c8d7a6e57e8c1b3a0e4d7f@oauth.local", "line_u4af4980629c8d7a6e57e8c1b3a0e4d7f_1a2b3c4d"},
		// No usable name at all.
		{"fallback username", "", "user_0123456789ab"},
		// Not what the producer makes, but nothing the router cannot carry.
		{"address without a dot in the domain", "root@localhost", "root_1a2b3c4d"},
		{"address without @", "not-an-address", "user_0123456789ab"},
		{"control characters are carried", "a\x1bb@example.com", "x\x1b[31my\u202e\x7f"},
		{"empty username", "e@example.com", ""},
		{"blank username", "e@example.com", " \t "},
	}
	for _, tt := range tests {
		for _, action := range []string{schema.ActionCreated, schema.ActionUpdated, schema.ActionDeleted} {
			t.Run(tt.name+"/"+action, func(t *testing.T) {
				t.Parallel()
				email, _ := json.Marshal(tt.email)
				username, _ := json.Marshal(tt.username)
				b := producerBody().with("email", string(email)).with("username", string(username)).with("action", `"`+action+`"`)
				ev, err := schema.DecodeEvent("user.events."+action, b.bytes())
				if err != nil {
					t.Fatalf("DecodeEvent(%s) = %v", b, err)
				}
				if ev.Email != tt.email || ev.Username != tt.username || ev.Action != action || len(ev.Dropped) != 0 {
					t.Errorf("DecodeEvent() = email %q, username %q, action %q, dropped %v; want %q, %q, %q, none",
						ev.Email, ev.Username, ev.Action, ev.Dropped, tt.email, tt.username, action)
				}
			})
		}
	}
}

// V1 events (DESIGN §2) carry displayName, avatar, role, isActive and
// permissions: all accepted, the profile fields kept when usable.
func TestDecodeEventV1(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name                string
		displayName, avatar string
	}{
		{"plain", "Alice A.", "https://cdn.example.com/a.png"},
		{"google photo", "Jane Doe", "https://lh3.googleusercontent.com/a/ACg8ocJ2x=s96-c"},
		{"facebook photo", "สมชาย ใจดี", "https://platform-lookaside.fbsbx.com/platform/profilepic/?asid=1&height=50&width=50&ext=1&hash=AbC"},
		{"line photo over http", "🦄 Unicorn", "http://profile.line-scdn.net/0h1a2b3c4d"},
		{"mixed-case scheme", "O'Brien", "HTTPS://cdn.example.com/a.png"},
		{"emoji with joiners and right-to-left marks", "👨‍👩‍👧 \u200fمحمد\u200f", ""},
		{"at the producer's limits", strings.Repeat("ä", 100), "https://cdn.example.com/" + strings.Repeat("a", 500-len("https://cdn.example.com/"))},
		{"neither", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dn, _ := json.Marshal(tt.displayName)
			av, _ := json.Marshal(tt.avatar)
			b := producerBody().without("service_name").without("request_id").with("displayName", string(dn)).with("avatar", string(av)).
				with("role", `"admin"`).with("isActive", "true").with("permissions", `["users:write",{"scope":["*"]}]`)
			ev, err := schema.DecodeEvent("user.events.created", b.bytes())
			if err != nil {
				t.Fatal(err)
			}
			if ev.DisplayName != tt.displayName || ev.Avatar != tt.avatar || len(ev.Dropped) != 0 {
				t.Errorf("displayName %q, avatar %q, dropped %v; want %q, %q kept", ev.DisplayName, ev.Avatar, ev.Dropped, tt.displayName, tt.avatar)
			}
		})
	}
}

// An unusable cosmetic or delivery field never costs the user: the event
// is accepted, the value dropped (or made printable), and Dropped says why.
func TestDecodeEventOptionalFields(t *testing.T) {
	t.Parallel()
	const escapes = `\u001b[2J\u001b]0;pwned\u0007`
	terminal := strings.Repeat(escapes, 60<<10/len(escapes))
	drop := func(field, msg string) []schema.Problem { return []schema.Problem{{Field: field, Message: msg}} }
	tests := []struct {
		name, key, raw string
		// want is what the field ends up as: DisplayName, Avatar,
		// RequestID, ServiceName or the sequence's digits.
		want    string
		dropped []schema.Problem
	}{
		{"displayName number", "displayName", "1", "", drop("displayName", "must be a string, got number")},
		{"displayName object", "displayName", `{"first":"Alice"}`, "", drop("displayName", "must be a string, got object")},
		{"displayName repeated", "displayName", `"A","displayName":"B"`, "", drop("displayName", "duplicate key")},
		{"displayName NUL", "displayName", `"Al\u0000ice"`, "", drop("displayName", "control character U+0000 at character 3")},
		{"displayName ESC", "displayName", `"\u001b[31mAlice"`, "", drop("displayName", "control character U+001B at character 1")},
		{"displayName newline", "displayName", `"Alice\nBob"`, "", drop("displayName", "control character U+000A at character 6")},
		{"displayName C1 control", "displayName", `"Alice\u0085"`, "", drop("displayName", "control character U+0085 at character 6")},
		{"displayName bidi override", "displayName", `"Alice\u202egnp.exe"`, "", drop("displayName", "bidi formatting character U+202E at character 6")},
		{"displayName bidi isolate", "displayName", `"\u2067Alice"`, "", drop("displayName", "bidi formatting character U+2067 at character 1")},
		{"displayName lone surrogate", "displayName", `"Alice\ud83d"`, "", drop("displayName", "lone surrogate escape at character 6")},
		{"displayName 101 characters", "displayName", `"` + strings.Repeat("ä", 101) + `"`, "", drop("displayName", "is 101 characters, the producer's limit is 100")},
		{"displayName 60 KB of terminal escapes", "displayName", `"` + terminal + `"`, "", drop("displayName", "control character U+001B at character 1")},
		{"displayName 60 KB of letters", "displayName", `"` + strings.Repeat("a", 60<<10) + `"`, "", drop("displayName", fmt.Sprintf("is %d characters, the producer's limit is 100", 60<<10))},
		{"displayName blank", "displayName", `"  \u3000 "`, "", drop("displayName", "blank")},
		{"displayName empty", "displayName", `""`, "", nil},
		{"displayName null", "displayName", `null`, "", nil},

		{"avatar javascript", "avatar", `"javascript:alert(1)"`, "", drop("avatar", "not an http or https URL")},
		{"avatar data URL", "avatar", `"data:image/png;base64,iVBORw0KGgo="`, "", drop("avatar", "not an http or https URL")},
		{"avatar relative", "avatar", `"/img/a.png"`, "", drop("avatar", "not an http or https URL")},
		{"avatar scheme-relative", "avatar", `"//cdn.example.com/a.png"`, "", drop("avatar", "not an http or https URL")},
		{"avatar without host", "avatar", `"https:///a.png"`, "", drop("avatar", "not an absolute URL with a host")},
		{"avatar opaque", "avatar", `"https:cdn.example.com"`, "", drop("avatar", "not an absolute URL with a host")},
		{"avatar with space", "avatar", `"https://cdn.example.com/a b.png"`, "", drop("avatar", "contains white space: not a URL")},
		{"avatar bad escape", "avatar", `"https://cdn.example.com/%zz"`, "", drop("avatar", "not a URL")},
		{"avatar NUL", "avatar", `"https://cdn.example.com/\u0000.png"`, "", drop("avatar", "control character U+0000 at character 25")},
		{"avatar CR LF", "avatar", `"https://cdn.example.com/\r\nSet-Cookie:x"`, "", drop("avatar", "control character U+000D at character 25")},
		{"avatar bidi override", "avatar", `"https://cdn.example.com/\u202egnp.exe"`, "", drop("avatar", "bidi formatting character U+202E at character 25")},
		{"avatar lone surrogate", "avatar", `"https://cdn.example.com/\udc00"`, "", drop("avatar", "lone surrogate escape at character 25")},
		{"avatar 501 characters", "avatar", `"https://cdn.example.com/` + strings.Repeat("a", 501-24) + `"`, "", drop("avatar", "is 501 characters, the producer's limit is 500")},
		{"avatar boolean", "avatar", `false`, "", drop("avatar", "must be a string, got boolean")},

		{"request_id number", "request_id", `12`, "", drop("request_id", "must be a string, got number")},
		{"request_id object", "request_id", `{"id":"r"}`, "", drop("request_id", "must be a string, got object")},
		{"request_id repeated", "request_id", `"a","request_id":"b"`, "", drop("request_id", "duplicate key")},
		{"request_id NUL", "request_id", `"req\u00001"`, `req\x001`, nil},
		{"request_id ESC", "request_id", `"\u001b[31mreq"`, `\x1b[31mreq`, nil},
		{"request_id CR LF", "request_id", `"r\r\nX-Evil: 1"`, `r\r\nX-Evil: 1`, nil},
		{"request_id bidi override", "request_id", `"r\u202e1"`, `r\u202e1`, nil},
		{"request_id lone surrogate", "request_id", `"r\ud800"`, `r\ud800`, nil},
		{"request_id unicode kept", "request_id", `"réq-ü"`, `réq-ü`, nil},
		{"request_id 1 KB cut", "request_id", `"` + strings.Repeat("r", 1<<10) + `"`, strings.Repeat("r", schema.MaxRequestIDBytes), nil},
		{"request_id escapes not cut in half", "request_id", `"` + strings.Repeat("r", 126) + `\u0000"`, strings.Repeat("r", 126), nil},
		{"service_name boolean", "service_name", `true`, "", drop("service_name", "must be a string, got boolean")},
		{"service_name NUL", "service_name", `"gofiber\u0000auth"`, `gofiber\x00auth`, nil},
		{"service_name cut at 64 bytes", "service_name", `"` + strings.Repeat("ß", 40) + `"`, strings.Repeat("ß", 32), nil},

		{"sequence string", "sequence", `"1"`, "", drop("sequence", "must be a non-negative integer, got string")},
		{"sequence negative", "sequence", `-1`, "", drop("sequence", "must not be negative, got -1")},
		{"sequence fraction", "sequence", `1.5`, "", drop("sequence", "must be a whole number without fraction or exponent, got 1.5")},
		{"sequence exponent", "sequence", `1e3`, "", drop("sequence", "must be a whole number without fraction or exponent, got 1e3")},
		{"sequence too large", "sequence", `18446744073709551616`, "", drop("sequence", "must be at most 18446744073709551615, got 18446744073709551616")},
		{"sequence repeated", "sequence", `1,"sequence":2`, "", drop("sequence", "duplicate key")},
		{"sequence largest", "sequence", `18446744073709551615`, "18446744073709551615", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := producerBody().with(tt.key, tt.raw)
			ev, err := schema.DecodeEvent("user.events.created", b.bytes())
			if err != nil {
				t.Fatalf("DecodeEvent() error = %v", err)
			}
			got := map[string]string{"displayName": ev.DisplayName, "avatar": ev.Avatar, "request_id": ev.RequestID, "service_name": ev.ServiceName}[tt.key]
			if tt.key == "sequence" && ev.Sequence != nil {
				got = fmt.Sprint(*ev.Sequence)
			}
			if got != tt.want || !slices.Equal(ev.Dropped, tt.dropped) {
				t.Errorf("%s = %q, dropped %q; want %q, dropped %q", tt.key, got, ev.Dropped, tt.want, tt.dropped)
			}
			if ev.Email != "alice@example.com" || ev.Username != "alice01" {
				t.Errorf("identity changed: %q, %q", ev.Email, ev.Username)
			}
		})
	}
}

// Every field, one hostile character at a time: each either refuses the
// event with a reason naming the field, or is carried in a form that
// holds no NUL and, where the router shows it, no raw control character.
func TestDecodeEventHostileCharactersInEveryField(t *testing.T) {
	t.Parallel()
	type outcome int
	const (
		refused outcome = iota // the event is invalid, the problem names the field
		carried                // kept as sent (identity: escaped where shown)
		escaped                // kept as PrintableText
		dropped                // dropped, the default applies
	)
	fields := []struct {
		key, value string // value: the field's good value, as JSON text
		// outcome for NUL, ESC, U+202E and a lone surrogate.
		nul, esc, bidi, lone outcome
	}{
		{"id", "78af4bc4-afce-4676-b373-5b802a2dfd2e", refused, refused, refused, refused},
		{"email", "alice@example.com", refused, carried, carried, refused},
		{"username", "alice01", refused, carried, carried, refused},
		{"action", "created", refused, refused, refused, refused},
		{"timestamp", "2026-11-28T13:28:17Z", refused, refused, refused, refused},
		{"request_id", "req-1", escaped, escaped, escaped, escaped},
		{"service_name", "gofiber-auth", escaped, escaped, escaped, escaped},
		{"displayName", "Alice", dropped, dropped, dropped, dropped},
		{"avatar", "https://cdn.example.com/a.png", dropped, dropped, dropped, dropped},
		{"unknown", "x", carried, carried, carried, carried}, // ignored: nothing of it is carried
	}
	for _, f := range fields {
		for _, c := range []struct {
			name, esc, decoded, shown string
			want                      outcome
		}{
			{"NUL", `\u0000`, "\x00", `\x00`, f.nul},
			{"ESC", `\u001b`, "\x1b", `\x1b`, f.esc},
			{"U+202E", `\u202e`, "\u202e", `\u202e`, f.bidi},
			{"lone surrogate", `\ud800`, "", `\ud800`, f.lone},
		} {
			t.Run(f.key+"/"+c.name, func(t *testing.T) {
				t.Parallel()
				b := producerBody().with(f.key, `"`+f.value+c.esc+`"`)
				ev, err := schema.DecodeEvent("user.events.created", b.bytes())
				if c.want == refused {
					if err == nil || !strings.Contains(err.Error(), f.key+": ") {
						t.Fatalf("error %v, want a problem of %s", err, f.key)
					}
					return
				}
				if err != nil {
					t.Fatalf("error %v, want the event accepted", err)
				}
				got := map[string]string{
					"email": ev.Email, "username": ev.Username, "request_id": ev.RequestID,
					"service_name": ev.ServiceName, "displayName": ev.DisplayName, "avatar": ev.Avatar,
				}[f.key]
				var want string
				switch c.want {
				case carried:
					want = f.value + c.decoded
					if f.key == "unknown" {
						want = ""
					}
				case escaped:
					want = f.value + c.shown
				case dropped:
					want = ""
					if len(ev.Dropped) != 1 || ev.Dropped[0].Field != f.key {
						t.Errorf("dropped %v, want %s", ev.Dropped, f.key)
					}
				}
				if got != want {
					t.Errorf("%s = %q, want %q", f.key, got, want)
				}
			})
		}
	}
}

func TestDecodeEventTimestampOffsets(t *testing.T) {
	t.Parallel()
	for ts, ok := range map[string]bool{
		"2026-11-28T13:28:17Z":           true,
		"2026-11-28T13:28:17+00:00":      true,
		"2026-11-28T13:28:17-00:00":      true,
		"2026-11-28T13:28:17+23:59":      true,
		"2026-11-28T13:28:17-23:59":      true,
		"2026-11-28T13:28:17.5+05:30":    true,
		"2026-11-28T13:28:17.123456789Z": true,
		"2026-11-28T13:28:17+24:00":      false,
		"2026-11-28T13:28:17-24:00":      false,
		"2026-11-28T13:28:17+23:60":      false,
		"2026-11-28T13:28:17+99:00":      false,
		"2026-11-28T13:28:17+1:00":       false,
		"2026-11-28T13:28:17+01:00:00":   false,
	} {
		_, err := schema.DecodeEvent("", producerBody().with("timestamp", `"`+ts+`"`).bytes())
		if (err == nil) != ok {
			t.Errorf("timestamp %s: error %v, want accepted %v", ts, err, ok)
		}
	}
}
