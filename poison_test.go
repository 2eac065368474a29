package main

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/social/user-events-router/middleware"
	"github.com/social/user-events-router/router"
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
	err := run(t.Context(), append([]string{"poison"}, args...), func(k string) string { return b.env[k] }, &out, &errOut)
	code = exitCode(err, &errOut)
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

func (b *poisonBundle) listJSON(t *testing.T, args ...string) []router.PoisonJSON {
	t.Helper()
	out := b.mustPoison(t, append([]string{"list", "--json"}, args...)...)
	var entries []router.PoisonJSON
	if err := json.Unmarshal([]byte(out), &entries); err != nil {
		t.Fatalf("list --json is not a JSON array of entries: %v\n%s", err, out)
	}
	return entries
}

func idsOf(entries []router.PoisonJSON) []string {
	ids := make([]string, len(entries))
	for i, e := range entries {
		ids[i] = e.ID
	}
	return ids
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
		if got := strings.Fields(lines[0]); !slices.Equal(got, []string{"ID", "CLASS", "SUBJECT", "FAILURES", "LAST", "FAILURE", "REASON"}) {
			t.Errorf("header = %q", lines[0])
		}
		if lines[5] != "4 entries" {
			t.Errorf("last line = %q, want %q", lines[5], "4 entries")
		}
		// Oldest first; the short id, class, subject, count and time in columns.
		for i, e := range []store.PoisonEntry{b.garbage, b.invalid, b.valid, b.panicked} {
			f := strings.Fields(lines[i+1])
			want := []string{e.ID[:8], e.Class, e.Subject, "1", e.LastFailure.UTC().Format(time.RFC3339)}
			if !slices.Equal(f[:5], want) {
				t.Errorf("row %d = %q, want it to start with %q", i+1, lines[i+1], want)
			}
		}
		if strings.Contains(out, b.garbage.Reason) || !strings.Contains(out, b.garbage.Reason[:59]+"…") {
			t.Errorf("the long reason is not cut at 60 characters:\n%s", out)
		}

		for _, tt := range []struct {
			args []string
			want []store.PoisonEntry
		}{
			{nil, []store.PoisonEntry{b.garbage, b.invalid, b.valid, b.panicked}},
			{[]string{"--class", "permanent"}, []store.PoisonEntry{b.garbage, b.invalid}},
			{[]string{"--class=transient_exhausted"}, []store.PoisonEntry{b.valid}},
			{[]string{"--reason", "NOT A UUID"}, []store.PoisonEntry{b.invalid}},
			{[]string{"--subject", "user.events.created"}, []store.PoisonEntry{b.garbage, b.valid}},
			{[]string{"--since", "2h"}, []store.PoisonEntry{b.invalid, b.valid, b.panicked}},
			{[]string{"--since", b.now.Add(-30 * time.Minute).Format(time.RFC3339)}, []store.PoisonEntry{b.valid, b.panicked}},
			{[]string{"--until", b.now.Add(-2 * time.Hour).Format(time.RFC3339)}, []store.PoisonEntry{b.garbage}},
			{[]string{"--since", "2h", "--until", "30m"}, []store.PoisonEntry{b.invalid}},
			{[]string{"--limit", "2"}, []store.PoisonEntry{b.garbage, b.invalid}},
			{[]string{"--class", "panic", "--subject", "user.events.created"}, nil},
		} {
			var want []string
			for _, e := range tt.want {
				want = append(want, e.ID)
			}
			if got := idsOf(b.listJSON(t, tt.args...)); !slices.Equal(got, want) {
				t.Errorf("list %q = %v, want %v", tt.args, got, want)
			}
		}
		if out := b.mustPoison(t, "list", "--class", "panic", "--subject", "user.events.created"); out != "0 entries\n" {
			t.Errorf("empty list = %q", out)
		}
		if out := b.mustPoison(t, "list", "--json", "--class", "panic", "--subject", "user.events.created"); strings.TrimSpace(out) != "[]" {
			t.Errorf("empty list --json = %q, want []", out)
		}
	})
}

func TestPoisonListJSON(t *testing.T) {
	t.Parallel()
	b := setupPoison(t, store.SQLite)
	byID := map[string]router.PoisonJSON{}
	for _, e := range b.listJSON(t) {
		byID[e.ID] = e
	}

	v := byID[b.valid.ID]
	if v.Payload == nil || *v.Payload != producerPayload {
		t.Errorf("payload = %v, want the producer's bytes as a string", v.Payload)
	}
	want := router.PoisonJSON{
		ID: b.valid.ID, Class: "transient_exhausted", Reason: b.valid.Reason, Subject: "user.events.created",
		Handler: "user_created", Ingress: "nats", CorrelationID: "corr-transient_exhausted", Stream: "USER_EVENTS",
		StreamSeq: 42, DeliveryCount: 3, FirstFailure: b.valid.FirstFailure, LastFailure: b.valid.LastFailure,
		Failures: 1, Payload: v.Payload, PayloadBase64: base64.StdEncoding.EncodeToString([]byte(producerPayload)),
	}
	if v != want {
		t.Errorf("entry = %+v\nwant    %+v", v, want)
	}

	g := byID[b.garbage.ID]
	raw, err := base64.StdEncoding.DecodeString(g.PayloadBase64)
	if g.Payload != nil || err != nil || !bytes.Equal(raw, b.garbage.Payload) {
		t.Errorf("non-UTF-8 payload: payload %v, payload_base64 %q (%v); want null and the exact bytes", g.Payload, g.PayloadBase64, err)
	}
	if byID[b.panicked.ID].Stack != b.panicked.Stack {
		t.Errorf("stack = %q, want %q", byID[b.panicked.ID].Stack, b.panicked.Stack)
	}

	// The field names are a contract: scripts read them.
	var generic []map[string]any
	if err := json.Unmarshal([]byte(b.mustPoison(t, "list", "--json", "--class", "transient_exhausted")), &generic); err != nil || len(generic) != 1 {
		t.Fatalf("list --json: %v (%d entries)", err, len(generic))
	}
	var keys []string
	for k := range generic[0] {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	wantKeys := []string{"class", "correlation_id", "delivery_count", "failures", "first_failure_at", "handler", "id", "ingress",
		"last_failure_at", "payload", "payload_base64", "reason", "stream", "stream_seq", "subject"}
	if !slices.Equal(keys, wantKeys) {
		t.Errorf("JSON fields = %v\nwant          %v", keys, wantKeys)
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
	var j router.PoisonJSON
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
		if got := idsOf(b.listJSON(t)); len(got) != 4 {
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
	if got := idsOf(b.listJSON(t)); len(got) != 0 {
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
		{args: []string{"list", "-h"}, code: 0, stderr: "-since WHEN"},
		{args: []string{"list", "extra"}, code: 2, stderr: `unexpected argument "extra"`},
		{args: []string{"list", "--bogus"}, code: 2, stderr: "flag provided but not defined: -bogus"},
		{args: []string{"list", "--class", "fatal"}, code: 2, stderr: `--class "fatal": must be one of permanent, panic, transient_exhausted`},
		{args: []string{"list", "--since", "yesterday", "--limit", "-1"}, code: 2, stderr: `--since "yesterday": want a duration`},
		{args: []string{"list", "--limit", "many"}, code: 2, stderr: `--limit "many"`},
		{args: []string{"list", "--since", "-2h"}, code: 2, stderr: "must be positive"},
		{args: []string{"show"}, code: 2, stderr: "want exactly one ID, got 0"},
		{args: []string{"show", "a", "b"}, code: 2, stderr: "want exactly one ID, got 2"},
		{args: []string{"show", "00000000-0000-4000-8000-000000000000"}, code: 1, stderr: "no such poison entry"},
		{args: []string{"show", "abc"}, code: 1, stderr: "at least 8 characters"},
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
			if code != 0 && strings.Contains(lastLine(stderr), "\n") {
				t.Errorf("error is not one line: %q", stderr)
			}
		})
	}
	if got := idsOf(b.listJSON(t)); len(got) != 4 {
		t.Errorf("the bad command lines changed the queue: %v", got)
	}
}
