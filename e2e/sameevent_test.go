package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/social/user-events-router/router/routertest"
	"github.com/social/user-events-router/schema"
	"github.com/social/user-events-router/store"
	"github.com/social/user-events-router/store/storetest"
)

// event is the body the Auth Service sends, byte for byte.
func event(action, id, email, username string, at time.Time) []byte {
	b, _ := json.Marshal(schema.ProducerEvent{ID: id, Email: email, Username: username, Action: action,
		Timestamp: at.UTC().Format(time.RFC3339), ServiceName: schema.ProducerServiceName})
	return b
}

// postOnce is one try of the Auth Service's HTTP fallback; it returns the
// status.
func postOnce(t *testing.T, url string, body []byte) int {
	t.Helper()
	resp, err := http.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// world is a router on a real NATS server and database, reached both ways.
type world struct {
	db         *store.DB
	js         jetstream.JetStream
	ingressURL string
	lastSeq    uint64
	proc       *routerProc
}

func newWorld(t *testing.T, backend store.Dialect, extraEnv ...string) *world {
	t.Helper()
	srv := routertest.StartServer(t)
	dbURL := storetest.URL(t, backend)
	env, ingressURL := ingressEnv(t, srv.URL, dbURL)
	// A short ack wait, as in the fault suite: a registration the ledger
	// holds back (handlers.VerdictHold) comes back after it.
	env["HANDLER_TIMEOUT"], env["RETRY_MAX"], env["NATS_ACK_WAIT"] = "1s", "1", "3s"
	for i := 0; i+1 < len(extraEnv); i += 2 {
		env[extraEnv[i]] = extraEnv[i+1]
	}
	w := &world{db: openDB(t, dbURL), js: routertest.JetStream(t, srv.URL), ingressURL: ingressURL}
	w.proc = startRouter(t, env)
	waitForIngress(t, ingressURL)
	waitForConsumer(t, w.js)
	return w
}

// nats publishes body on its action's subject, as the Auth Service (or its
// client's reconnect buffer, later) does.
func (w *world) nats(t *testing.T, body []byte) {
	t.Helper()
	var ev struct{ Action string }
	_ = json.Unmarshal(body, &ev)
	w.lastSeq = routertest.Publish(t, w.js, "user.events."+ev.Action, body)
}

// http posts body once and wants 200.
func (w *world) http(t *testing.T, body []byte) {
	t.Helper()
	if code := postOnce(t, w.ingressURL, body); code != http.StatusOK {
		t.Fatalf("POST %s: status %d, want 200", body, code)
	}
}

// drained waits until every published event is acked: committed, or found
// carried already.
func (w *world) drained(t *testing.T) {
	t.Helper()
	routertest.Eventually(t, 30*time.Second, "the stream to drain", func() bool {
		ci := routertest.ConsumerInfo(t, w.js, "USER_EVENTS", "social-backend-consumer")
		return ci.AckFloor.Stream >= w.lastSeq && ci.NumPending == 0 && ci.NumAckPending == 0
	})
}

// commandsInCommitOrder reads the commands table in insertion order.
func commandsInCommitOrder(t *testing.T, db *store.DB) []schema.Command {
	t.Helper()
	offset := `"offset"`
	if db.Dialect == store.MySQL {
		offset = "`offset`"
	}
	rows, err := db.SQL.Query(`SELECT payload FROM watermill_profile_sync_commands ORDER BY ` + offset)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []schema.Command
	for rows.Next() {
		var payload []byte
		if err := rows.Scan(&payload); err != nil {
			t.Fatal(err)
		}
		var c schema.Command
		if err := json.Unmarshal(payload, &c); err != nil {
			t.Fatalf("command is not JSON: %v: %s", err, payload)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// monolithUser is what a consumer following the README's rules holds of
// one user.
type monolithUser struct {
	Generation      int
	At              time.Time
	Seq             uint64
	Email, Username string
	Deleted         bool
	Profile         bool
}

// newer reports whether c orders after what u holds: by (generation,
// occurred_at, user_sequence).
func (u monolithUser) newer(c schema.Command) bool {
	if c.Generation != u.Generation {
		return c.Generation > u.Generation
	}
	if !c.OccurredAt.Equal(u.At) {
		return c.OccurredAt.After(u.At)
	}
	return c.UserSequence > u.Seq
}

// applyCommands is the consumer side in a few lines: a stale command never
// rolls a user back, nothing resurrects a deleted registration, and a newer
// generation starts afresh. Applied in any order, the commands of one
// history must give the same users.
func applyCommands(cmds []schema.Command) map[string]monolithUser {
	users := map[string]monolithUser{}
	for _, c := range cmds {
		u, seen := users[c.UserID]
		if seen && c.Generation < u.Generation {
			continue
		}
		if !seen || c.Generation > u.Generation {
			u = monolithUser{Generation: c.Generation}
		}
		switch c.Type {
		case schema.CommandDeleteProfile:
			// A tombstone, as apply keeps it: the identity erased.
			u.Deleted, u.Email, u.Username = true, "", ""
		case schema.CommandCreateProfile, schema.CommandSyncIdentity:
			if c.Type == schema.CommandCreateProfile {
				u.Profile = true
			}
			if !u.Deleted && (u.Seq == 0 || u.newer(c)) {
				u.At, u.Seq, u.Email, u.Username = c.OccurredAt, c.UserSequence, c.Email, c.Username
			}
		}
		users[c.UserID] = u
	}
	return users
}

// TestProducerRetriesAndCopies runs the Auth Service's real delivery
// patterns (DESIGN §2, "Retries are new events") through a real NATS server
// and the HTTP ingress, and checks what a consumer ends up with.
func TestProducerRetriesAndCopies(t *testing.T) {
	t.Parallel()
	storetest.EachBackend(t, func(t *testing.T, backend store.Dialect) {
		w := newWorld(t, backend)
		t0 := time.Now().UTC().Truncate(time.Second).Add(-time.Hour)
		at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
		const (
			reg    = "4c0d9a51-1111-4e6a-9b7c-000000000001" // registration retried
			del    = "4c0d9a51-1111-4e6a-9b7c-000000000002" // deletion retried
			aba    = "4c0d9a51-1111-4e6a-9b7c-000000000003" // A → B → A in one second
			late   = "4c0d9a51-1111-4e6a-9b7c-000000000004" // buffered copy arrives after a newer event
			rereg  = "4c0d9a51-1111-4e6a-9b7c-000000000005" // created → deleted → created in one second
			noMail = "4c0d9a51-1111-4e6a-9b7c-000000000006" // a Facebook sign-up: no e-mail
		)

		// A registration: try 1's NATS publish times out (held in the
		// client's buffer) and its HTTP POST answers 200 after a commit the
		// Auth Service did not see (a dropped connection): it tries again, 6 s
		// later, with a fresh timestamp, by NATS (timing out) and HTTP. The
		// buffered copies arrive last.
		// Registrations the later events build on, handled first: the
		// Auth Service deletes or renames a user long after it registered.
		for _, u := range []struct{ id, email, name string }{
			{del, "dave@example.com", "dave01"}, {aba, "erin@example.com", "erin01"}, {late, "fay@example.com", "fay01"},
			{noMail, "", "somchai_jaidee_1a2b3c4d"},
		} {
			w.nats(t, event("created", u.id, u.email, u.name, at(0)))
		}
		w.drained(t)

		try1 := event("created", reg, "carol@example.com", "carol01", at(0))
		try2 := event("created", reg, "carol@example.com", "carol01", at(6))
		w.http(t, try1)
		w.http(t, try2)
		w.nats(t, try1)
		w.nats(t, try2)

		// A deletion, retried the same way.
		d1, d2 := event("deleted", del, "dave@example.com", "dave01", at(10)), event("deleted", del, "dave@example.com", "dave01", at(16))
		w.http(t, d1)
		w.http(t, d2)
		w.nats(t, d1)
		w.nats(t, d2)

		// A → B → A within one second, by NATS: three real changes.
		a, b := event("updated", aba, "a@example.com", "erin01", at(20)), event("updated", aba, "b@example.com", "erin01", at(20))
		w.nats(t, a)
		w.nats(t, b)
		w.nats(t, a)

		// A late copy: update A by HTTP (its NATS publish timed out), then
		// update B, then A's buffered NATS copy.
		lateA := event("updated", late, "old@example.com", "fay01", at(30))
		w.http(t, lateA)
		w.nats(t, event("updated", late, "new@example.com", "fay01", at(31)))
		w.nats(t, lateA)

		// created → deleted → created within one second.
		w.nats(t, event("created", rereg, "gus@example.com", "gus01", at(40)))
		w.nats(t, event("deleted", rereg, "gus@example.com", "gus01", at(40)))
		w.nats(t, event("created", rereg, "gus@example.com", "gus01", at(40)))

		// A Facebook sign-up without e-mail (registered above), and its update.
		w.http(t, event("updated", noMail, "", "สมชาย_ใจดี_1a2b3c4d", at(50)))

		w.drained(t)
		cmds := commandsInCommitOrder(t, w.db)
		count := map[string]map[schema.CommandType]int{}
		for _, c := range cmds {
			if count[c.UserID] == nil {
				count[c.UserID] = map[schema.CommandType]int{}
			}
			count[c.UserID][c.Type]++
		}
		want := map[string]map[schema.CommandType]int{
			reg:    {schema.CommandCreateProfile: 1},
			del:    {schema.CommandCreateProfile: 1, schema.CommandDeleteProfile: 1},
			aba:    {schema.CommandCreateProfile: 1, schema.CommandSyncIdentity: 3},
			late:   {schema.CommandCreateProfile: 1, schema.CommandSyncIdentity: 2},
			rereg:  {schema.CommandCreateProfile: 2, schema.CommandDeleteProfile: 1},
			noMail: {schema.CommandCreateProfile: 1, schema.CommandSyncIdentity: 1},
		}
		for user, types := range want {
			for typ, n := range types {
				if count[user][typ] != n {
					t.Errorf("user %s: %d %s, want %d (all: %v)", user[len(user)-1:], count[user][typ], typ, n, count[user])
				}
			}
		}
		if len(cmds) != 15 {
			t.Errorf("%d commands in all, want 15", len(cmds))
		}
		if n := routertest.StreamMsgs(t, w.js, "USER_EVENTS"); n != 0 {
			t.Errorf("%d events left in the stream", n)
		}
		if n, _ := w.db.CountPoison(t.Context()); n != 0 {
			t.Errorf("%d poison entries, want 0", n)
		}

		wantUsers := map[string]monolithUser{
			reg:    {Email: "carol@example.com", Username: "carol01", Profile: true},
			del:    {Deleted: true, Profile: true},
			aba:    {Email: "a@example.com", Username: "erin01", Profile: true},
			late:   {Email: "new@example.com", Username: "fay01", Profile: true},
			rereg:  {Email: "gus@example.com", Username: "gus01", Profile: true, Generation: 2},
			noMail: {Email: "", Username: "สมชาย_ใจดี_1a2b3c4d", Profile: true},
		}
		// In commit order, and in any other: the commands carry their order.
		rng := rand.New(rand.NewPCG(1, 2))
		for round := range 20 {
			order := cmds
			if round > 0 {
				order = append([]schema.Command(nil), cmds...)
				rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
			}
			got := applyCommands(order)
			for user, wu := range wantUsers {
				gu := got[user]
				if wu.Generation == 0 {
					wu.Generation = 1
				}
				if gu.Email != wu.Email || gu.Username != wu.Username || gu.Deleted != wu.Deleted || gu.Profile != wu.Profile || gu.Generation != wu.Generation {
					t.Errorf("round %d: user %s ends as %+v, want %+v", round, user[len(user)-1:], gu, wu)
				}
			}
		}
	})
}

// TestEveryProducerUserIsCarried sends one registration of every kind of
// user DESIGN §2 says the Auth Service creates — by password (validated) and
// through Google, Facebook and LINE (not validated) — and a V1 event: each
// yields exactly one command and nothing is poisoned.
func TestEveryProducerUserIsCarried(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 28, 13, 28, 17, 0, time.UTC)
	users := []struct{ name, email, username string }{
		{"password, shortest", "al@example.com", "al1"},
		{"password, longest", strings.Repeat("a", 64) + "@" + strings.Repeat("b", 180) + ".example", strings.Repeat("Z9", 10)},
		{"password, plus and subdomain", "jane.doe+news@mail.example.co.uk", "JaneDoe2026"},
		{"google", "jane.doe+tag@gmail.com", "jane.doe+tag_1a2b3c4d"},
		{"google, unicode local part", "юзер@пример.рф", "юзер_0f9e8d7c"},
		{"facebook without e-mail", "", "somchai_jaidee_1a2b3c4d"},
		{"facebook, Thai display name", "", "สมชาย_ใจดี_1a2b3c4d"},
		{"facebook, emoji and punctuation", "", "🎉_party!!_(ok)_9f8e7d6c"},
		{"facebook, very long display name", "", strings.Repeat("long_name_", 40) + "_1a2b3c4d"},
		{"line", "line_U1234567890abcdef@oauth.local", "line_u1234567890abcdef_1a2b3c4d"},
		{"no name at all", "", "user_0123456789ab"},
		{"quotes and markup", `"o'brien"@example.com`, `<b>o'brien</b>_1a2b3c4d`},
	}
	storetest.EachBackend(t, func(t *testing.T, backend store.Dialect) {
		w := newWorld(t, backend)
		for i, u := range users {
			id := fmt.Sprintf("5d1e8b62-2222-4f7a-8c9d-%012d", i+1)
			body := event("created", id, u.email, u.username, at)
			if i%2 == 0 {
				w.nats(t, body)
			} else {
				w.http(t, body)
			}
		}
		v1 := `{"id":"5d1e8b62-2222-4f7a-8c9d-999999999999","email":"old@example.com","username":"oldtimer","action":"created","request_id":"","timestamp":"2026-11-28T13:28:17Z","service_name":"gofiber-auth","displayName":"Old Timer","avatar":"https://cdn.example.com/o.png","role":"admin","isActive":true}`
		w.nats(t, []byte(v1))
		w.drained(t)
		cmds := commandsInCommitOrder(t, w.db)
		got := map[string]schema.Command{}
		for _, c := range cmds {
			got[c.UserID] = c
		}
		for i, u := range users {
			c, ok := got[fmt.Sprintf("5d1e8b62-2222-4f7a-8c9d-%012d", i+1)]
			if !ok || c.Type != schema.CommandCreateProfile || c.Email != u.email || c.Username != u.username {
				t.Errorf("%s: command %+v (found: %v), want create_profile carrying %q / %q", u.name, c, ok, u.email, u.username)
			}
		}
		if c := got["5d1e8b62-2222-4f7a-8c9d-999999999999"]; c.ProfileDefaults == nil || c.DisplayName != "Old Timer" {
			t.Errorf("V1 event: %+v, want its display name as the profile default", c)
		}
		if len(cmds) != len(users)+1 {
			t.Errorf("%d commands, want %d", len(cmds), len(users)+1)
		}
		if n, _ := w.db.CountPoison(t.Context()); n != 0 {
			t.Errorf("%d poison entries, want 0", n)
		}
	})
}

// TestHostileTextIsCarriedSafely sends events whose copied fields hold NUL,
// terminal escapes and bidi overrides: each still yields its command, the
// commands table stays castable to PostgreSQL jsonb, and every X-Request-ID
// the ingress answers with parses with Go's HTTP client (http.Post fails on
// one it cannot parse, and the Auth Service would count the event failed).
func TestHostileTextIsCarriedSafely(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 28, 13, 28, 17, 0, time.UTC).Format(time.RFC3339)
	bodies := []string{
		`{"id":"6e2f9c73-3333-4a8b-9d0e-000000000001","email":"a@example.com","username":"nul_in_display","action":"created","request_id":"","timestamp":"` + at + `","service_name":"gofiber-auth","displayName":"x\u0000y","avatar":"javascript:alert(1)"}`,
		`{"id":"6e2f9c73-3333-4a8b-9d0e-000000000002","email":"b@example.com","username":"nul_in_service","action":"created","request_id":"r\u0000id","timestamp":"` + at + `","service_name":"gofiber\u0000auth"}`,
		`{"id":"6e2f9c73-3333-4a8b-9d0e-000000000003","email":"c@example.com","username":"esc\u001b[31m_red","action":"created","request_id":"\u001b]0;owned\u0007","timestamp":"` + at + `","service_name":"gofiber-auth"}`,
		`{"id":"6e2f9c73-3333-4a8b-9d0e-000000000004","email":"d@example.com","username":"bidi_\u202egnp.exe","action":"created","request_id":"line\r\nX-Evil: 1","timestamp":"` + at + `","service_name":"gofiber-auth","displayName":"` + strings.Repeat(`\u001b[2J`, 6000) + `"}`,
	}
	storetest.EachBackend(t, func(t *testing.T, backend store.Dialect) {
		w := newWorld(t, backend)
		for i, b := range bodies {
			if i%2 == 0 {
				w.http(t, []byte(b))
			} else {
				w.nats(t, []byte(b))
			}
			w.http(t, []byte(strings.Replace(b, `"created"`, `"updated"`, 1)))
		}
		w.drained(t)
		cmds := commandsInCommitOrder(t, w.db)
		if len(cmds) != 2*len(bodies) {
			t.Errorf("%d commands, want %d", len(cmds), 2*len(bodies))
		}
		for _, c := range cmds {
			// A V1 display name or avatar that is unusable falls back to
			// the default: the username, carried as sent (JSON-escaped).
			if c.Type == schema.CommandCreateProfile && (c.DisplayName != c.Username || c.Avatar != "") {
				t.Errorf("unusable profile default carried: %q / %q (username %q)", c.DisplayName, c.Avatar, c.Username)
			}
		}
		if n, _ := w.db.CountPoison(t.Context()); n != 0 {
			t.Errorf("%d poison entries, want 0", n)
		}
		// What was dropped is said in the log, escaped like everything else.
		logs := w.proc.logs.String()
		if !strings.Contains(logs, `"msg":"event handled; unusable optional fields dropped"`) || !strings.Contains(logs, `"dropped":"displayName: `) {
			t.Error("no log line says which optional fields were dropped")
		}
		if strings.ContainsAny(logs, "\x00\x1b\u202e") {
			t.Error("a log line holds a raw NUL, ESC or bidi override")
		}
		if backend == store.Postgres {
			var n int
			err := w.db.SQL.QueryRow(`SELECT count(*) FROM watermill_profile_sync_commands WHERE (payload::jsonb)->>'type' = 'create_profile'`).Scan(&n)
			if err != nil || n != len(bodies) {
				t.Errorf("payload::jsonb over the commands: %d rows, %v; want %d", n, err, len(bodies))
			}
		}
	})
}
