package e2e

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/social/user-events-router/cli"
	"github.com/social/user-events-router/middleware"
	"github.com/social/user-events-router/router"
	"github.com/social/user-events-router/router/admin"
	"github.com/social/user-events-router/store"
	"github.com/social/user-events-router/store/storetest"
)

// poisonBundle is a database with one poison entry of each kind the CLI
// must handle, and the environment that points the CLI at it.
type poisonBundle struct {
	db  *store.DB
	env map[string]string
	now time.Time
	// garbage is not JSON at all (and not UTF-8).
	garbage store.PoisonEntry
	// invalid is JSON but fails validation again on replay.
	invalid store.PoisonEntry
	// valid is the producer's event, poisoned by a database outage; its
	// replay succeeds.
	valid store.PoisonEntry
	// panicked is a valid event whose handler once panicked.
	panicked store.PoisonEntry
}

func setupPoison(t *testing.T, d store.Dialect) *poisonBundle {
	t.Helper()
	url := storetest.URL(t, d)
	b := &poisonBundle{
		db: openDB(t, url),
		env: map[string]string{
			"DATABASE_URL":           url,
			"DATA_DIR":               t.TempDir(),
			"LOG_LEVEL":              "warn",
			"RETRY_INITIAL_INTERVAL": "10ms",
		},
		now: time.Now().UTC().Truncate(time.Second),
	}
	put := func(subject, payload, class, reason, stack string, ago time.Duration) store.PoisonEntry {
		t.Helper()
		e := store.PoisonEntry{
			ID:            middleware.PoisonID(subject, []byte(payload)),
			Payload:       []byte(payload),
			Reason:        reason,
			Class:         class,
			Subject:       subject,
			Handler:       "user_created",
			Ingress:       "nats",
			CorrelationID: "corr-" + class,
			Stream:        "USER_EVENTS",
			StreamSeq:     42,
			DeliveryCount: 3,
			FirstFailure:  b.now.Add(-ago),
			LastFailure:   b.now.Add(-ago),
			Stack:         stack,
		}
		if err := b.db.PutPoison(t.Context(), e); err != nil {
			t.Fatal(err)
		}
		got, err := b.db.GetPoison(t.Context(), e.ID)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	b.garbage = put("user.events.created", "{\"id\": \x00\xff not json at all",
		middleware.ClassPermanent, "decode user.events.created: invalid event: body is not JSON: invalid character '\\x00' looking for beginning of value", "", 3*time.Hour)
	b.invalid = put("user.events.deleted", eventFor("deleted", "abc"),
		middleware.ClassPermanent, `decode user.events.deleted: invalid event: id: not a UUID: "abc"`, "", time.Hour)
	b.valid = put("user.events.created", producerPayload,
		middleware.ClassTransientExhausted, "commit command: database is locked", "", 10*time.Minute)
	b.panicked = put("user.events.updated", eventFor("updated", "11111111-1111-4111-8111-111111111111"),
		middleware.ClassPanic, "panic: boom", "goroutine 7 [running]:\nhandlers.buildUpdated()", 5*time.Minute)
	return b
}

// poison runs `poison args…` as main does and returns its output and exit status.
func (b *poisonBundle) poison(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := cli.Run(t.Context(), append([]string{"poison"}, args...), func(k string) string { return b.env[k] }, &out, &errOut)
	code = cli.ExitCode(err, &errOut)
	return out.String(), errOut.String(), code
}

func (b *poisonBundle) mustPoison(t *testing.T, args ...string) string {
	t.Helper()
	stdout, stderr, code := b.poison(t, args...)
	if code != 0 {
		t.Fatalf("poison %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, stdout, stderr)
	}
	return stdout
}

func (b *poisonBundle) listJSON(t *testing.T, args ...string) admin.PoisonPageJSON {
	t.Helper()
	out := b.mustPoison(t, append([]string{"list", "--json"}, args...)...)
	var page admin.PoisonPageJSON
	if err := json.Unmarshal([]byte(out), &page); err != nil {
		t.Fatalf("list --json is not a JSON page of entries: %v\n%s", err, out)
	}
	return page
}

func idsOf(entries []admin.PoisonSummaryJSON) []string {
	ids := make([]string, len(entries))
	for i, e := range entries {
		ids[i] = e.ID
	}
	return ids
}

// putMany stores n entries like e (ids, payloads and times apart), as
// one multi-row insert.
func (b *poisonBundle) putMany(t *testing.T, n int, e store.PoisonEntry) {
	t.Helper()
	pub, err := b.db.Publisher(watermill.NopLogger{})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	var msgs []*message.Message
	for i := range n {
		c := e
		c.Payload = fmt.Appendf(nil, `{"n":%d}`, i)
		c.ID = middleware.PoisonID(c.Subject, c.Payload)
		c.LastFailure = e.LastFailure.Add(time.Duration(i) * time.Millisecond)
		msgs = append(msgs, c.Message())
	}
	for chunk := range slices.Chunk(msgs, 500) {
		if err := pub.Publish(store.PoisonTopic, chunk...); err != nil {
			t.Fatal(err)
		}
	}
}

func TestPoisonList(t *testing.T) {
	t.Parallel()
	storetest.EachBackend(t, func(t *testing.T, backend store.Dialect) {
		b := setupPoison(t, backend)

		out := b.mustPoison(t, "list")
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 6 {
			t.Fatalf("want a header, 4 rows and a count; got:\n%s", out)
		}
		if got := strings.Fields(lines[0]); !slices.Equal(got, []string{"ID", "CLASS", "INGRESS", "SUBJECT", "FAILURES", "LAST", "FAILURE", "REASON"}) {
			t.Errorf("header = %q", lines[0])
		}
		if lines[5] != "4 entries" {
			t.Errorf("last line = %q, want %q", lines[5], "4 entries")
		}
		// Newest first; the short id, class, ingress, subject, count and time in columns.
		for i, e := range []store.PoisonEntry{b.panicked, b.valid, b.invalid, b.garbage} {
			f := strings.Fields(lines[i+1])
			want := []string{e.ID[:8], e.Class, "nats", e.Subject, "1", e.LastFailure.UTC().Format(time.RFC3339)}
			if !slices.Equal(f[:6], want) {
				t.Errorf("row %d = %q, want it to start with %q", i+1, lines[i+1], want)
			}
		}
		// A long reason is cut at a word boundary.
		row := lines[4]
		shown := strings.TrimSuffix(row[strings.Index(row, "decode"):], "…")
		if !strings.HasSuffix(row, "…") || !strings.HasPrefix(b.garbage.Reason, shown) || len(shown) > 60 || b.garbage.Reason[len(shown)] != ' ' {
			t.Errorf("the long reason is not cut at a word boundary within 60 characters: %q (of %q)", row, b.garbage.Reason)
		}

		userID := "11111111-1111-4111-8111-111111111111" // in the panicked event's payload
		for _, tt := range []struct {
			args []string
			want []store.PoisonEntry
		}{
			{nil, []store.PoisonEntry{b.panicked, b.valid, b.invalid, b.garbage}},
			{[]string{"--order", "oldest"}, []store.PoisonEntry{b.garbage, b.invalid, b.valid, b.panicked}},
			{[]string{"--class", "permanent"}, []store.PoisonEntry{b.invalid, b.garbage}},
			{[]string{"--class=transient_exhausted"}, []store.PoisonEntry{b.valid}},
			{[]string{"--reason", "NOT A UUID"}, []store.PoisonEntry{b.invalid}},
			{[]string{"--reason-kind", "id: not a UUID: …"}, []store.PoisonEntry{b.invalid}},
			{[]string{"--subject", "user.events.created"}, []store.PoisonEntry{b.valid, b.garbage}},
			{[]string{"--ingress", "nats", "--since", "1d"}, []store.PoisonEntry{b.panicked, b.valid, b.invalid, b.garbage}},
			{[]string{"--ingress", "http"}, nil},
			{[]string{"--correlation-id", "corr-panic"}, []store.PoisonEntry{b.panicked}},
			{[]string{"--user-id", strings.ToUpper(userID)}, []store.PoisonEntry{b.panicked}},
			{[]string{"--since", "2h"}, []store.PoisonEntry{b.panicked, b.valid, b.invalid}},
			{[]string{"--since", b.now.Add(-30 * time.Minute).Format(time.RFC3339)}, []store.PoisonEntry{b.panicked, b.valid}},
			{[]string{"--until", b.now.Add(-2 * time.Hour).Format(time.RFC3339)}, []store.PoisonEntry{b.garbage}},
			{[]string{"--since", "2h", "--until", "30m"}, []store.PoisonEntry{b.invalid}},
			{[]string{"--limit", "2"}, []store.PoisonEntry{b.panicked, b.valid}},
			{[]string{"--class", "panic", "--subject", "user.events.created"}, nil},
		} {
			var want []string
			for _, e := range tt.want {
				want = append(want, e.ID)
			}
			if got := idsOf(b.listJSON(t, tt.args...).Entries); !slices.Equal(got, want) {
				t.Errorf("list %q = %v, want %v", tt.args, got, want)
			}
		}
		if out := b.mustPoison(t, "list", "--class", "panic", "--subject", "user.events.created"); out != "0 entries\n" {
			t.Errorf("empty list = %q", out)
		}
		if page := b.listJSON(t, "--class", "panic", "--subject", "user.events.created"); page.Entries == nil || len(page.Entries) != 0 || page.Total != 0 || page.NextCursor != nil {
			t.Errorf("empty list --json = %+v, want no entries (an empty array) and no next page", page)
		}

		// --limit gives the newest N and says that there are more, and how
		// to get them.
		out = b.mustPoison(t, "list", "--limit", "3")
		last := lastLine(out)
		cursor, ok := strings.CutPrefix(last, "3 of 4 entries, newest first; next page: --cursor ")
		if !ok || cursor == "" {
			t.Fatalf("list --limit 3 ends with %q, want it to say there is more and give the cursor", last)
		}
		out = b.mustPoison(t, "list", "--limit", "3", "--cursor", cursor)
		if !strings.Contains(out, b.garbage.ID[:8]) || lastLine(out) != "1 of 4 entries, newest first; the last page" {
			t.Errorf("second page:\n%s", out)
		}
	})
}

// TestPoisonListEscapes: whatever a subject, reason or id holds, list,
// show, stats and delete print it escaped (bidi overrides included), never
// raw to the terminal.
func TestPoisonListEscapes(t *testing.T) {
	t.Parallel()
	b := setupPoison(t, store.SQLite)
	const rlo, esc = "\u202e", "\x1b"
	hostile := store.PoisonEntry{
		ID: middleware.PoisonID("user.events.created"+rlo+"detaerc", []byte(`{"username":"`+rlo+`evil"}`)), Payload: []byte(`{"username":"` + rlo + `evil"}`),
		Reason: "decode user.events.created" + rlo + ": invalid event: username: " + esc + "[31mred" + "\u2066", Class: "permanent",
		Subject: "user.events.created" + rlo + "detaerc", Ingress: "nats", CorrelationID: "c" + esc + "]0;title\a",
		Stack: "goroutine 1\n\t" + rlo + "frame", FirstFailure: b.now, LastFailure: b.now,
	}
	if err := b.db.PutPoison(t.Context(), hostile); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"list"}, {"list", "--reason", "red"}, {"show", hostile.ID}, {"stats"}, {"replay", "--dry-run", hostile.ID}, {"delete", "--yes", hostile.ID},
	} {
		out, stderr, _ := b.poison(t, args...)
		if strings.ContainsAny(out+stderr, rlo+esc+"\a\u2066") {
			t.Errorf("poison %s prints raw control or bidi characters:\n%q", strings.Join(args, " "), out+stderr)
		}
		if !strings.Contains(out, `\u202e`) {
			t.Errorf("poison %s does not show the escaped override:\n%s", strings.Join(args, " "), out)
		}
	}
}

func TestPoisonListJSON(t *testing.T) {
	t.Parallel()
	b := setupPoison(t, store.SQLite)
	page := b.listJSON(t)
	byID := map[string]admin.PoisonSummaryJSON{}
	for _, e := range page.Entries {
		byID[e.ID] = e
	}
	if page.Total != 4 || page.Limit != 50 || page.Order != store.NewestFirst || page.NextCursor != nil {
		t.Errorf("page = total %d, limit %d, order %s, next %v", page.Total, page.Limit, page.Order, page.NextCursor)
	}
	want := admin.PoisonSummaryJSON{
		ID: b.valid.ID, Class: "transient_exhausted", Reason: b.valid.Reason, ReasonKind: b.valid.Reason, Subject: "user.events.created",
		EventSubject: "user.events.created", Handler: "user_created", Ingress: "nats", CorrelationID: "corr-transient_exhausted",
		UserID: "78af4bc4-afce-4676-b373-5b802a2dfd2e", Action: "created", Stream: "USER_EVENTS",
		StreamSeq: 42, DeliveryCount: 3, FirstFailure: b.valid.FirstFailure, LastFailure: b.valid.LastFailure, Failures: 1,
	}
	if v := byID[b.valid.ID]; v != want {
		t.Errorf("entry = %+v\nwant    %+v", v, want)
	}

	// The field names are a contract: scripts read them. A list holds no
	// payloads (the queue may be large, payloads up to 1 MiB).
	var generic map[string]any
	if err := json.Unmarshal([]byte(b.mustPoison(t, "list", "--json", "--class", "transient_exhausted")), &generic); err != nil {
		t.Fatal(err)
	}
	if got := slices.Sorted(maps.Keys(generic)); !slices.Equal(got, []string{"entries", "limit", "next_cursor", "order", "total"}) {
		t.Errorf("page fields = %v", got)
	}
	entry := generic["entries"].([]any)[0].(map[string]any)
	wantKeys := []string{"action", "class", "correlation_id", "delivery_count", "event_subject", "failures", "first_failure_at", "handler", "id", "ingress",
		"last_failure_at", "last_replay_at", "reason", "reason_kind", "replays", "stream", "stream_seq", "subject", "user_id"}
	if got := slices.Sorted(maps.Keys(entry)); !slices.Equal(got, wantKeys) {
		t.Errorf("JSON fields = %v\nwant          %v", got, wantKeys)
	}

	// show --json has the payload, exactly.
	var g admin.PoisonJSON
	if err := json.Unmarshal([]byte(b.mustPoison(t, "show", "--json", b.garbage.ID)), &g); err != nil {
		t.Fatal(err)
	}
	raw, err := base64.StdEncoding.DecodeString(g.PayloadBase64)
	if g.Payload != nil || err != nil || !bytes.Equal(raw, b.garbage.Payload) {
		t.Errorf("non-UTF-8 payload: payload %v, payload_base64 %q (%v); want null and the exact bytes", g.Payload, g.PayloadBase64, err)
	}
	var p admin.PoisonJSON
	if err := json.Unmarshal([]byte(b.mustPoison(t, "show", "--json", b.panicked.ID)), &p); err != nil || p.Stack != b.panicked.Stack {
		t.Errorf("stack = %q (%v), want %q", p.Stack, err, b.panicked.Stack)
	}
}

func TestPoisonShow(t *testing.T) {
	t.Parallel()
	b := setupPoison(t, store.SQLite)

	out := b.mustPoison(t, "show", b.valid.ID[:8])
	for _, want := range []string{
		"id:               " + b.valid.ID + "\n",
		"class:            transient_exhausted\n",
		"reason:           commit command: database is locked\n",
		"subject:          user.events.created\n",
		"stream_seq:       42\n",
		"delivery_count:   3\n",
		"last_failure_at:  " + b.valid.LastFailure.Format(time.RFC3339) + "\n",
		"failures:         1\n",
		"payload (194 bytes, JSON):\n{\n  \"id\": \"78af4bc4-afce-4676-b373-5b802a2dfd2e\",\n  \"email\": \"alice@example.com\",\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("show output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "stack:") {
		t.Errorf("show prints a stack for an entry without one:\n%s", out)
	}

	out = b.mustPoison(t, "show", "--json", b.garbage.ID)
	var j admin.PoisonJSON
	if err := json.Unmarshal([]byte(out), &j); err != nil || j.ID != b.garbage.ID {
		t.Errorf("show --json: %v, id %q:\n%s", err, j.ID, out)
	}

	out = b.mustPoison(t, "show", b.garbage.ID, "--json=false")
	if want := "payload (25 bytes, not JSON):\n\"{\\\"id\\\": \\x00\\xff not json at all\"\n\n" + hex.Dump(b.garbage.Payload); !strings.Contains(out, want) {
		t.Errorf("garbage payload not shown as a quoted string and hex dump; want\n%s\nin\n%s", want, out)
	}
	if !strings.Contains(out, `reason:           decode user.events.created: invalid event: body is not JSON: invalid character '\x00'`) {
		t.Errorf("reason not shown in full:\n%s", out)
	}

	out = b.mustPoison(t, "show", b.panicked.ID)
	if !strings.Contains(out, "\nstack:\n"+b.panicked.Stack+"\n") {
		t.Errorf("panic stack missing:\n%s", out)
	}
	if !strings.Contains(out, "user_id:          11111111-1111-4111-8111-111111111111\n") || !strings.Contains(out, "replays:          0\n") {
		t.Errorf("show lacks the user id or the replay count:\n%s", out)
	}

	// An HTTP entry: the subject it would have had, and that it had none.
	httpEntry := store.PoisonEntry{ID: middleware.PoisonID("", []byte(eventFor("deleted", "abc"))), Payload: []byte(eventFor("deleted", "abc")),
		Reason: "decode event: invalid event: id: not a UUID: \"abc\"", Class: "permanent", Ingress: "http", FirstFailure: b.now, LastFailure: b.now}
	if err := b.db.PutPoison(t.Context(), httpEntry); err != nil {
		t.Fatal(err)
	}
	out = b.mustPoison(t, "show", httpEntry.ID)
	if !strings.Contains(out, "subject:          user.events.deleted  (no NATS subject: it came in by http)\n") {
		t.Errorf("HTTP entry's subject:\n%s", out)
	}
	if !strings.Contains(out, "\naction:           deleted\n") {
		t.Errorf("show lacks the entry's action:\n%s", out)
	}
	out = b.mustPoison(t, "list", "--ingress", "http")
	if f := strings.Fields(strings.Split(out, "\n")[1]); len(f) < 4 || f[2] != "http" || f[3] != "user.events.deleted" {
		t.Errorf("list shows an HTTP entry as %q", f)
	}
}

func TestPoisonStats(t *testing.T) {
	t.Parallel()
	b := setupPoison(t, store.SQLite)
	for _, v := range []string{"x", "y", "z"} {
		payload := eventFor("created", "22222222-2222-4222-8222-22222222222"+string(rune('0'+len(v))))
		payload = strings.Replace(payload, "alice@example.com", v, 1)
		e := store.PoisonEntry{ID: middleware.PoisonID("user.events.created", []byte(payload)), Payload: []byte(payload), Class: "permanent",
			Reason:  `decode user.events.created: invalid event: email: not an email address: "` + v + `" (domain has no dot)`,
			Subject: "user.events.created", Ingress: "nats", FirstFailure: b.now, LastFailure: b.now}
		if err := b.db.PutPoison(t.Context(), e); err != nil {
			t.Fatal(err)
		}
	}
	out := b.mustPoison(t, "stats")
	for _, want := range []string{
		"7 entries\n",
		"oldest: " + b.garbage.ID + "  last failed " + b.garbage.LastFailure.UTC().Format(time.RFC3339),
		"\nENTRIES  CLASS\n      5  permanent\n      1  panic\n      1  transient_exhausted\n",
		// One row for the rule, whatever the addresses were.
		"      3  email: not an email address: … (domain has no dot)\n",
		"      1  id: not a UUID: …\n",
		"\nENTRIES  SUBJECT\n      5  user.events.created\n",
		"\nENTRIES  INGRESS\n      7  nats\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("stats lacks %q:\n%s", want, out)
		}
	}
	var s admin.PoisonStatsJSON
	if err := json.Unmarshal([]byte(b.mustPoison(t, "stats", "--json", "--class", "permanent", "--since", "1d")), &s); err != nil {
		t.Fatal(err)
	}
	if s.Total != 5 || len(s.ByReason.Groups) != 3 || s.ByReason.Groups[0] != (admin.PoisonCountJSON{Key: "email: not an email address: … (domain has no dot)", Count: 3}) {
		t.Errorf("stats --json --class permanent = %+v", s)
	}
	if out, _, code := b.poison(t, "stats", "--class", "panic", "--ingress", "http"); code != 0 || out != "0 entries\n" {
		t.Errorf("stats of nothing: exit %d, %q", code, out)
	}
}

func TestPoisonReplay(t *testing.T) {
	t.Parallel()
	storetest.EachBackend(t, func(t *testing.T, backend store.Dialect) {
		b := setupPoison(t, backend)

		// A dry run writes nothing, whatever the outcome.
		out, stderr, code := b.poison(t, "replay", "--dry-run", b.valid.ID, b.invalid.ID[:8])
		if code != 1 || !strings.Contains(out, b.valid.ID+"  would_commit  create_profile ") ||
			!strings.Contains(out, b.invalid.ID+"  would_fail") || !strings.Contains(out, "dry run, nothing written: 2 entries: 1 would commit, 1 would fail") ||
			!strings.Contains(stderr, "1 would fail again") {
			t.Errorf("replay --dry-run: exit %d\n%s%s", code, out, stderr)
		}
		if n := countCommands(t, b.db); n != 0 {
			t.Errorf("dry run wrote %d commands", n)
		}
		if got := idsOf(b.listJSON(t).Entries); len(got) != 4 {
			t.Errorf("dry run changed the queue: %v", got)
		}
		if e, _ := b.db.GetPoison(t.Context(), b.invalid.ID); e.Failures != 1 {
			t.Errorf("dry run counted a failure: %d", e.Failures)
		}

		// The valid entry replays into exactly one command and leaves.
		out = b.mustPoison(t, "replay", b.valid.ID)
		if !strings.Contains(out, b.valid.ID+"  committed  create_profile ") || !strings.Contains(out, "1 entry: 1 committed") {
			t.Errorf("replay:\n%s", out)
		}
		rows := commandRows(t, b.db)
		if len(rows) != 1 {
			t.Fatalf("%d commands after replay, want 1", len(rows))
		}
		if src, _ := rows[0].Payload["source"].(map[string]any); rows[0].Payload["type"] != "create_profile" || src["ingress"] != "replay" ||
			rows[0].Payload["correlation_id"] != "corr-transient_exhausted" || !strings.Contains(out, rows[0].UUID) {
			t.Errorf("command = %v (replay said %q)", rows[0].Payload, out)
		}
		if _, err := b.db.GetPoison(t.Context(), b.valid.ID); !errors.Is(err, store.ErrPoisonNotFound) {
			t.Errorf("entry still there after replay: %v", err)
		}

		// Again: the entry is gone, and no second command appears.
		out, stderr, code = b.poison(t, "replay", b.valid.ID)
		if code != 1 || !strings.Contains(out, "not_found") || !strings.Contains(stderr, "1 not found") {
			t.Errorf("second replay: exit %d\n%s%s", code, out, stderr)
		}
		if n := countCommands(t, b.db); n != 1 {
			t.Errorf("%d commands after a second replay, want 1", n)
		}

		// A still-bad entry stays, with the new reason and one more failure.
		out, stderr, code = b.poison(t, "replay", b.invalid.ID)
		if code != 1 || !strings.Contains(out, "still_failing") || !strings.Contains(stderr, "1 still failing (kept in the queue with the new reason)") {
			t.Errorf("replay of a bad entry: exit %d\n%s%s", code, out, stderr)
		}
		e, err := b.db.GetPoison(t.Context(), b.invalid.ID)
		if err != nil || e.Failures != 2 || !strings.Contains(e.Reason, "abc") || e.Class != middleware.ClassPermanent {
			t.Errorf("bad entry after replay: %+v, %v; want it kept, failures 2", e, err)
		}
		if e.Ingress != "nats" || e.StreamSeq != 42 || e.DeliveryCount != 3 || e.Replays != 1 || e.LastReplayAt.IsZero() {
			t.Errorf("after a failed replay the entry says ingress %q, stream_seq %d, delivery_count %d, replays %d; want where it came from kept and the replay counted",
				e.Ingress, e.StreamSeq, e.DeliveryCount, e.Replays)
		}

		// --all with a filter, as JSON.
		out = b.mustPoison(t, "replay", "--all", "--class", "panic", "--json")
		var results []router.ReplayResult
		if err := json.Unmarshal([]byte(out), &results); err != nil || len(results) != 1 ||
			results[0].ID != b.panicked.ID || results[0].Result != router.ReplayCommitted || results[0].CommandType != "sync_identity" {
			t.Errorf("replay --all --class panic --json: %v\n%s", err, out)
		}
		if n := countCommands(t, b.db); n != 2 {
			t.Errorf("%d commands, want 2", n)
		}
		if out := b.mustPoison(t, "replay", "--all", "--class", "panic"); out != "0 entries\n" {
			t.Errorf("replay of an empty selection = %q", out)
		}
	})
}

// TestPoisonBulk: --all works through many entries in batches and reports
// counts, not a line per entry.
func TestPoisonBulk(t *testing.T) {
	t.Parallel()
	b := setupPoison(t, store.SQLite)
	b.putMany(t, 300, store.PoisonEntry{Class: "permanent", Reason: "decode user.events.created: invalid event: id: missing",
		Subject: "user.events.created", Ingress: "nats", StreamSeq: 9, FirstFailure: b.now.Add(-time.Minute), LastFailure: b.now.Add(-time.Minute)})

	out, stderr, code := b.poison(t, "replay", "--all", "--reason-kind", "id: missing")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 1 || len(lines) != 12 || lines[10] != "… and 290 more not replayed (poison list shows them)" ||
		lines[11] != "300 entries: 300 still failing" || !strings.Contains(stderr, "300 still failing") {
		t.Errorf("replay --all of 300 failing entries: exit %d, %d lines\n%s%s", code, len(lines), out, stderr)
	}
	e, err := b.db.GetPoison(t.Context(), middleware.PoisonID("user.events.created", []byte(`{"n":7}`)))
	if err != nil || e.Replays != 1 || e.Ingress != "nats" || e.StreamSeq != 9 || e.Failures != 2 {
		t.Errorf("an entry after replay --all: %+v, %v", e, err)
	}

	b.putMany(t, 2500, store.PoisonEntry{Class: "panic", Reason: "panic: boom", Subject: "user.events.updated", Ingress: "nats",
		FirstFailure: b.now, LastFailure: b.now})
	if out := b.mustPoison(t, "delete", "--all", "--yes", "--class", "panic"); out != "deleted 2501 entries\n" {
		t.Errorf("delete --all --class panic:\n%s", out)
	}
	if n, _ := b.db.CountPoison(t.Context()); n != 303 {
		t.Errorf("%d entries left, want 303", n)
	}
	if out := b.mustPoison(t, "delete", "--all", "--yes"); out != "deleted 303 entries\n" {
		t.Errorf("delete --all:\n%s", out)
	}
}

// TestPoisonReadersChangeNothing: list, show and stats create and alter no
// table; on a database the router has not prepared they say so.
func TestPoisonReadersChangeNothing(t *testing.T) {
	t.Parallel()
	storetest.EachBackend(t, func(t *testing.T, backend store.Dialect) {
		url := storetest.URL(t, backend)
		db := openDBWithoutTables(t, url)
		env := map[string]string{"DATABASE_URL": url, "DATA_DIR": t.TempDir(), "LOG_LEVEL": "warn"}
		for _, args := range [][]string{{"list"}, {"stats"}, {"show", "6b727153"}} {
			var out, errOut bytes.Buffer
			err := cli.Run(t.Context(), append([]string{"poison"}, args...), func(k string) string { return env[k] }, &out, &errOut)
			if code := cli.ExitCode(err, &errOut); code != 1 || !strings.Contains(errOut.String(), "start the router (serve) once") {
				t.Errorf("poison %s on an empty database: exit %d, %q", args[0], code, errOut.String())
			}
		}
		var tables int
		if err := db.SQL.QueryRowContext(t.Context(), tableCountQuery(backend)).Scan(&tables); err != nil || tables != 0 {
			t.Errorf("%d tables after list, stats and show (%v), want none", tables, err)
		}
	})
	// The default SQLite file is not created either.
	dir := t.TempDir()
	var errOut bytes.Buffer
	err := cli.Run(t.Context(), []string{"poison", "list"}, func(k string) string { return map[string]string{"DATA_DIR": dir}[k] }, io.Discard, &errOut)
	if code := cli.ExitCode(err, &errOut); code != 1 || !strings.Contains(errOut.String(), "does not exist; the router creates it when it starts") {
		t.Errorf("poison list without a database: exit %d, %q", code, errOut.String())
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("poison list created %v", entries)
	}
}

func openDBWithoutTables(t *testing.T, url string) *store.DB {
	t.Helper()
	db, err := store.Open(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func tableCountQuery(d store.Dialect) string {
	switch d {
	case store.Postgres:
		return `SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema()`
	case store.MySQL:
		return `SELECT count(*) FROM information_schema.tables WHERE table_schema = DATABASE()`
	}
	return `SELECT count(*) FROM sqlite_schema WHERE type = 'table'`
}

func TestPoisonReplayRetryLater(t *testing.T) {
	t.Parallel()
	b := setupPoison(t, store.SQLite)
	// Every commit of a command fails as if the database were down.
	if _, err := b.db.SQL.Exec(`CREATE TRIGGER outage BEFORE INSERT ON watermill_profile_sync_commands
		BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END`); err != nil {
		t.Fatal(err)
	}
	out, stderr, code := b.poison(t, "replay", b.valid.ID)
	if code != 1 || !strings.Contains(out, b.valid.ID+"  retry_later  ") || !strings.Contains(out, "disk I/O error") ||
		!strings.Contains(stderr, "1 to retry later (the entry is unchanged)") {
		t.Errorf("replay during an outage: exit %d\n%s%s", code, out, stderr)
	}
	if e, err := b.db.GetPoison(t.Context(), b.valid.ID); err != nil || e.Failures != 1 || e.Reason != b.valid.Reason {
		t.Errorf("entry after a transient failure: %+v, %v; want it unchanged", e, err)
	}

	if _, err := b.db.SQL.Exec(`DROP TRIGGER outage`); err != nil {
		t.Fatal(err)
	}
	b.mustPoison(t, "replay", b.valid.ID)
	if n := countCommands(t, b.db); n != 1 {
		t.Errorf("%d commands after the outage, want 1", n)
	}
}

func TestPoisonDelete(t *testing.T) {
	t.Parallel()
	b := setupPoison(t, store.SQLite)

	_, stderr, code := b.poison(t, "delete", b.garbage.ID)
	if code != 2 || !strings.Contains(stderr, "add --yes") {
		t.Errorf("delete without --yes: exit %d, %q", code, stderr)
	}
	if _, err := b.db.GetPoison(t.Context(), b.garbage.ID); err != nil {
		t.Errorf("delete without --yes deleted: %v", err)
	}

	out := b.mustPoison(t, "delete", b.garbage.ID[:8], "--yes")
	if !strings.Contains(out, "deleted "+b.garbage.ID+"  permanent  user.events.created  decode") || !strings.HasSuffix(out, "deleted 1 entry\n") {
		t.Errorf("delete:\n%s", out)
	}
	if _, err := b.db.GetPoison(t.Context(), b.garbage.ID); !errors.Is(err, store.ErrPoisonNotFound) {
		t.Errorf("entry still there: %v", err)
	}

	out, stderr, code = b.poison(t, "delete", "--yes", b.garbage.ID, b.valid.ID)
	if code != 1 || !strings.Contains(out, "not deleted "+b.garbage.ID) || !strings.Contains(out, "deleted 1 entry") || !strings.Contains(stderr, "1 of 2 not deleted") {
		t.Errorf("delete of a missing and a present entry: exit %d\n%s%s", code, out, stderr)
	}

	b.mustPoison(t, "delete", "--all", "--yes", "--since", "2h")
	if got := idsOf(b.listJSON(t).Entries); len(got) != 0 {
		t.Errorf("after delete --all: %v", got)
	}
}

func TestPoisonCommandLine(t *testing.T) {
	t.Parallel()
	b := setupPoison(t, store.SQLite)
	for _, tt := range []struct {
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{args: nil, code: 2, stderr: "missing command"},
		{args: []string{"frob"}, code: 2, stderr: `unknown command "frob"`},
		{args: []string{"help"}, code: 0, stdout: "replay  ID... | --all"},
		{args: []string{"list", "-h"}, code: 0, stdout: "-since WHEN"},
		{args: []string{"show", "--help"}, code: 0, stdout: "usage: user-events-router poison show ID"},
		{args: []string{"stats", "-h"}, code: 0, stdout: "Counts the entries by class"},
		{args: []string{"replay", "-h"}, code: 0, stdout: "-dry-run"},
		{args: []string{"delete", "-h"}, code: 0, stdout: "-yes"},
		{args: []string{"list", "extra"}, code: 2, stderr: `unexpected argument "extra"`},
		{args: []string{"list", "--bogus"}, code: 2, stderr: "flag provided but not defined: -bogus"},
		{args: []string{"list", "--class", "fatal"}, code: 2, stderr: `--class "fatal": must be one of permanent, panic, transient_exhausted`},
		{args: []string{"list", "--since", "yesterday", "--limit", "-1"}, code: 2, stderr: `--since "yesterday": want a duration`},
		{args: []string{"list", "--limit", "many"}, code: 2, stderr: `--limit "many": must be a whole number from 1 to 1000`},
		{args: []string{"list", "--limit", "0"}, code: 2, stderr: `--limit "0"`},
		{args: []string{"list", "--limit", "1001"}, code: 2, stderr: `--limit "1001"`},
		{args: []string{"list", "--since", "-2h"}, code: 2, stderr: "must be positive"},
		{args: []string{"list", "--order", "up"}, code: 2, stderr: `--order "up"`},
		{args: []string{"list", "--ingress", "smoke"}, code: 2, stderr: `--ingress "smoke"`},
		{args: []string{"list", "--user-id", "bob"}, code: 2, stderr: `--user-id "bob": must be a user id`},
		{args: []string{"list", "--cursor", "nope"}, code: 2, stderr: "cursor"},
		{args: []string{"list", "--since", "1h", "--until", "2h"}, code: 2, stderr: "is before since"},
		{args: []string{"stats", "--limit", "5"}, code: 2, stderr: "flag provided but not defined: -limit"},
		{args: []string{"show"}, code: 2, stderr: "want exactly one ID, got 0"},
		{args: []string{"show", "a", "b"}, code: 2, stderr: "want exactly one ID, got 2"},
		{args: []string{"show", "00000000-0000-4000-8000-000000000000"}, code: 1, stderr: "no such poison entry"},
		{args: []string{"show", "abc"}, code: 2, stderr: "first 8 or more characters"},
		{args: []string{"show", "6b7271%%"}, code: 2, stderr: "not a hexadecimal digit"},
		{args: []string{"show", "aaaa\x00aaaa"}, code: 2, stderr: `not a poison entry id: "aaaa\x00aaaa"`},
		{args: []string{"delete", "--yes", "________"}, code: 2, stderr: "nothing was done"},
		{args: []string{"replay", "--dry-run", "\u202e12345678"}, code: 2, stderr: `"\u202e12345678"`},
		{args: []string{"replay"}, code: 2, stderr: "give the IDs of the entries, or --all"},
		{args: []string{"replay", "--all", b.valid.ID}, code: 2, stderr: "not both"},
		{args: []string{"replay", "--class", "panic", b.valid.ID}, code: 2, stderr: "narrow --all"},
		{args: []string{"delete", "--all"}, code: 2, stderr: "add --yes"},
		{args: []string{"delete", "--yes"}, code: 2, stderr: "give the IDs"},
	} {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			stdout, stderr, code := b.poison(t, tt.args...)
			if code != tt.code || !strings.Contains(stdout, tt.stdout) || !strings.Contains(stderr, tt.stderr) {
				t.Errorf("exit %d, want %d\nstdout %q (want %q)\nstderr %q (want %q)", code, tt.code, stdout, tt.stdout, stderr, tt.stderr)
			}
			// A mistake is one line; only a missing or unknown command
			// prints the commands before it.
			if code != 0 && tt.args != nil && tt.args[0] != "frob" && strings.Count(strings.TrimSuffix(stderr, "\n"), "\n") > 0 {
				t.Errorf("error is not one line: %q", stderr)
			}
		})
	}
	if got := idsOf(b.listJSON(t).Entries); len(got) != 4 {
		t.Errorf("the bad command lines changed the queue: %v", got)
	}
}
