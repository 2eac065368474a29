package admin_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/social/user-events-router/handlers"
	"github.com/social/user-events-router/middleware"
	"github.com/social/user-events-router/router"
	"github.com/social/user-events-router/router/admin"
	"github.com/social/user-events-router/router/pipelinetest"
	"github.com/social/user-events-router/store"
	"github.com/social/user-events-router/store/storetest"
)

// producerPayload is byte for byte what the real Auth Service sends.
const producerPayload = pipelinetest.ProducerPayload

// adminBundle is an admin handler over a real database holding a valid
// entry (replay succeeds) and a bad one (replay fails again).
type adminBundle struct {
	db         *store.DB
	handler    http.Handler
	valid, bad store.PoisonEntry
}

type adminSetup struct {
	token   string
	ready   func(context.Context) error
	metrics http.Handler
}

func setupAdmin(t *testing.T, d store.Dialect, s adminSetup) *adminBundle {
	t.Helper()
	db := storetest.Open(t, d)
	logger := slog.New(slog.DiscardHandler)
	if s.ready == nil {
		s.ready = db.Ping
	}
	handler, err := admin.NewHandler(admin.Options{
		DB:        db,
		Replayer:  newReplayer(t, db, logger),
		Token:     s.token,
		Logger:    logger,
		ReadyFunc: s.ready,
		Metrics:   s.metrics,
	})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Second)
	put := func(subject, payload, class string, ago time.Duration) store.PoisonEntry {
		t.Helper()
		e := store.PoisonEntry{
			ID: middleware.PoisonID(subject, []byte(payload)), Payload: []byte(payload),
			Class: class, Reason: class + " failure", Subject: subject, Ingress: "nats",
			FirstFailure: now.Add(-ago), LastFailure: now.Add(-ago),
		}
		if err := db.PutPoison(t.Context(), e); err != nil {
			t.Fatal(err)
		}
		stored, err := db.GetPoison(t.Context(), e.ID) // with what the store derives
		if err != nil {
			t.Fatal(err)
		}
		return stored
	}
	return &adminBundle{
		db:      db,
		handler: handler,
		bad:     put("user.events.created", `{"id":"abc"}`, middleware.ClassPermanent, 3*time.Hour),
		valid:   put("user.events.created", producerPayload, middleware.ClassTransientExhausted, time.Hour),
	}
}

// newReplayer wires the replay pipeline the way the router does.
func newReplayer(t *testing.T, db *store.DB, logger *slog.Logger) *router.Replayer {
	t.Helper()
	r, err := router.NewReplayer(db, pipelinetest.NewPipeline(t, db, handlers.DefaultRegistry(), logger))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

type response struct {
	code   int
	header http.Header
	body   string
}

func (b *adminBundle) do(t *testing.T, method, target, token string) response {
	t.Helper()
	req := httptest.NewRequestWithContext(t.Context(), method, target, nil)
	if token != "" {
		req.Header.Set("Authorization", token)
	}
	rec := httptest.NewRecorder()
	b.handler.ServeHTTP(rec, req)
	return response{rec.Code, rec.Header(), rec.Body.String()}
}

// want checks the status and decodes the JSON body into v (when not nil).
func (r response) want(t *testing.T, what string, code int, v any) {
	t.Helper()
	if r.code != code {
		t.Fatalf("%s: status %d, want %d; body %s", what, r.code, code, r.body)
	}
	if v == nil {
		return
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s: Content-Type %q", what, ct)
	}
	if err := json.Unmarshal([]byte(r.body), v); err != nil {
		t.Fatalf("%s: body is not the expected JSON: %v\n%s", what, err, r.body)
	}
}

func (r response) wantError(t *testing.T, what string, code int, mentions string) {
	t.Helper()
	var e struct {
		Error string `json:"error"`
	}
	r.want(t, what, code, &e)
	if !strings.Contains(e.Error, mentions) {
		t.Errorf("%s: error %q does not mention %q", what, e.Error, mentions)
	}
}

func TestAdminProbes(t *testing.T) {
	t.Parallel()
	notReady := errors.New("consumer social-backend-consumer not bound")
	metrics := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("router_events_total 3\n")) })
	// A token guards /admin/ only: probes and scrapers need none.
	b := setupAdmin(t, store.SQLite, adminSetup{token: "s3cret", ready: func(context.Context) error { return notReady }, metrics: metrics})

	if r := b.do(t, "GET", "/healthz", ""); r.code != 200 || r.body != "ok\n" {
		t.Errorf("/healthz = %d %q", r.code, r.body)
	}
	if r := b.do(t, "GET", "/readyz", ""); r.code != 503 || !strings.Contains(r.body, notReady.Error()) {
		t.Errorf("/readyz while not ready = %d %q", r.code, r.body)
	}
	if r := b.do(t, "GET", "/metrics", ""); r.code != 200 || r.body != "router_events_total 3\n" {
		t.Errorf("/metrics = %d %q", r.code, r.body)
	}
	if r := b.do(t, "POST", "/healthz", ""); r.code != 405 {
		t.Errorf("POST /healthz = %d, want 405", r.code)
	}

	ready := setupAdmin(t, store.SQLite, adminSetup{})
	if r := ready.do(t, "GET", "/readyz", ""); r.code != 200 || r.body != "ok\n" {
		t.Errorf("/readyz when ready = %d %q", r.code, r.body)
	}
	if r := ready.do(t, "GET", "/metrics", ""); r.code != 404 {
		t.Errorf("/metrics without a metrics handler = %d, want 404", r.code)
	}
}

func TestAdminPoisonAPI(t *testing.T) {
	t.Parallel()
	storetest.EachBackend(t, func(t *testing.T, backend store.Dialect) {
		b := setupAdmin(t, backend, adminSetup{})

		// Newest first, without payloads.
		var page admin.PoisonPageJSON
		b.do(t, "GET", "/admin/poison", "").want(t, "list", 200, &page)
		want := admin.PoisonPageJSON{
			Entries: []admin.PoisonSummaryJSON{admin.NewPoisonSummaryJSON(b.valid), admin.NewPoisonSummaryJSON(b.bad)},
			Total:   2, Limit: store.DefaultPoisonPageSize, Order: store.NewestFirst,
		}
		if !jsonEqual(page, want) {
			t.Errorf("list = %+v\nwant   %+v", page, want)
		}
		b.do(t, "GET", "/admin/poison?class=transient_exhausted&since=2h&subject=user.events.created&reason=FAILURE&ingress=nats&limit=5", "").want(t, "filtered list", 200, &page)
		if len(page.Entries) != 1 || page.Entries[0].ID != b.valid.ID || page.Total != 1 {
			t.Errorf("filtered list = %+v, want only the valid entry", page)
		}
		b.do(t, "GET", "/admin/poison?user_id=78AF4BC4-afce-4676-b373-5b802a2dfd2e&order=oldest&since=1d", "").want(t, "by user", 200, &page)
		if len(page.Entries) != 1 || page.Entries[0].ID != b.valid.ID || page.Entries[0].UserID != "78af4bc4-afce-4676-b373-5b802a2dfd2e" {
			t.Errorf("list by user id = %+v, want the valid entry", page)
		}
		if r := b.do(t, "GET", "/admin/poison?class=panic", ""); !jsonEqualText(r.body, `{"entries":[],"total":0,"limit":50,"order":"newest","next_cursor":null}`) {
			t.Errorf("empty list body = %s", r.body)
		}
		for query, param := range map[string]string{
			"since=yesterday": "since", "until=soon": "until", "limit=-1": "limit", "limit=0": "limit", "limit=x": "limit",
			"limit=1001": "limit", "class=fatal": "class", "clas=panic": "clas=", "since=-1h": "since", "order=sideways": "order",
			"ingress=smoke": "ingress", "user_id=nope": "user_id", "cursor=garbage": "cursor", "correlation_id=a%00b": "correlation_id",
			"since=1h&until=2h": "until",
		} {
			b.do(t, "GET", "/admin/poison?"+query, "").wantError(t, query, 400, param)
		}

		var got admin.PoisonJSON
		b.do(t, "GET", "/admin/poison/"+b.valid.ID[:8], "").want(t, "get by prefix", 200, &got)
		if !jsonEqual(got, admin.NewPoisonJSON(b.valid)) || got.Payload == nil || *got.Payload != producerPayload {
			t.Errorf("get = %+v", got)
		}
		b.do(t, "GET", "/admin/poison/00000000-0000-4000-8000-000000000000", "").wantError(t, "get unknown", 404, "no such poison entry")
		for _, id := range []string{"aaaaaaaa-0000-4000-8000-000000000001", "aaaaaaaa-0000-4000-8000-000000000002"} {
			if err := b.db.PutPoison(t.Context(), store.PoisonEntry{ID: id, Payload: []byte("x"), Class: "permanent"}); err != nil {
				t.Fatal(err)
			}
		}
		b.do(t, "GET", "/admin/poison/aaaaaaaa", "").wantError(t, "ambiguous prefix", 409, "several")
		b.do(t, "POST", "/admin/poison/aaaaaaaa/replay", "").wantError(t, "replay ambiguous prefix", 409, "several")

		// Replay: a dry run writes nothing; a real one commits once.
		var res router.ReplayResult
		b.do(t, "POST", "/admin/poison/"+b.valid.ID+"/replay?dry_run=true", "").want(t, "dry run", 200, &res)
		if res.Result != router.ReplayWouldCommit || res.CommandType != "create_profile" || pipelinetest.CountCommands(t, b.db) != 0 {
			t.Errorf("dry run = %+v, %d commands", res, pipelinetest.CountCommands(t, b.db))
		}
		b.do(t, "POST", "/admin/poison/"+b.valid.ID+"/replay?dry_run=maybe", "").wantError(t, "bad dry_run", 400, "dry_run")
		b.do(t, "POST", "/admin/poison/"+b.valid.ID+"/replay", "").want(t, "replay", 200, &res)
		if res.Result != router.ReplayCommitted || res.ID != b.valid.ID || res.CommandID == "" || pipelinetest.CountCommands(t, b.db) != 1 {
			t.Errorf("replay = %+v, %d commands", res, pipelinetest.CountCommands(t, b.db))
		}
		b.do(t, "POST", "/admin/poison/"+b.valid.ID+"/replay", "").wantError(t, "replay again", 404, "no such poison entry")
		if n := pipelinetest.CountCommands(t, b.db); n != 1 {
			t.Errorf("%d commands after replaying twice, want 1", n)
		}
		b.do(t, "POST", "/admin/poison/"+b.bad.ID+"/replay", "").want(t, "replay bad", 200, &res)
		e, err := b.db.GetPoison(t.Context(), b.bad.ID)
		if res.Result != router.ReplayStillFailing || err != nil || e.Failures != 2 {
			t.Errorf("replay of a bad entry = %+v; entry %+v, %v", res, e, err)
		}
		// Where it came from is kept; the replay is counted.
		if e.Ingress != "nats" || e.Subject != "user.events.created" || e.Replays != 1 || e.LastReplayAt.IsZero() {
			t.Errorf("entry after a failed replay: ingress %q, subject %q, replays %d at %v", e.Ingress, e.Subject, e.Replays, e.LastReplayAt)
		}

		if r := b.do(t, "GET", "/admin/poison/"+b.bad.ID+"/replay", ""); r.code != 405 {
			t.Errorf("GET …/replay = %d, want 405", r.code)
		}
		if r := b.do(t, "PUT", "/admin/poison", ""); r.code != 405 {
			t.Errorf("PUT /admin/poison = %d, want 405", r.code)
		}

		var deleted map[string]string
		b.do(t, "DELETE", "/admin/poison/"+b.bad.ID[:8], "").want(t, "delete", 200, &deleted)
		if deleted["deleted"] != b.bad.ID {
			t.Errorf("delete = %v", deleted)
		}
		b.do(t, "GET", "/admin/poison/"+b.bad.ID, "").wantError(t, "get deleted", 404, "no such poison entry")
		b.do(t, "DELETE", "/admin/poison/"+b.bad.ID, "").wantError(t, "delete again", 404, "no such poison entry")
	})
}

// TestAdminPoisonIDs: ids are matched literally. What cannot be an id gets
// 400 with a message that says what an id is, and never the database's
// error; an id that is one but matches nothing gets 404.
func TestAdminPoisonIDs(t *testing.T) {
	t.Parallel()
	storetest.EachBackend(t, func(t *testing.T, backend store.Dialect) {
		b := setupAdmin(t, backend, adminSetup{})
		for _, path := range []string{
			"/admin/poison/" + b.valid.ID[:6] + "%25%25", // the prefix LIKE once matched
			"/admin/poison/________",
			"/admin/poison/" + b.valid.ID[:7] + "%25",
			"/admin/poison/" + b.valid.ID[:8] + "%00",
			"/admin/poison/%00",
			"/admin/poison/" + b.valid.ID[:7],
			"/admin/poison/" + b.valid.ID + "0",
			"/admin/poison/%E2%80%AE" + b.valid.ID[:8],
		} {
			for _, method := range []string{"GET", "DELETE", "POST"} {
				target := path
				if method == "POST" {
					target += "/replay?dry_run=true"
				}
				r := b.do(t, method, target, "")
				r.wantError(t, method+" "+target, 400, "not a poison entry id")
				if strings.Contains(r.body, "\x00") || strings.Contains(r.body, "\u202e") || strings.Contains(r.body, "SQLSTATE") {
					t.Errorf("%s %s: body repeats the id raw or a database error: %s", method, target, r.body)
				}
			}
		}
		if n, _ := b.db.CountPoison(t.Context()); n != 2 {
			t.Errorf("%d entries left, want 2", n)
		}
		b.do(t, "GET", "/admin/poison/"+strings.ToUpper(b.valid.ID[:8]), "").want(t, "upper-case prefix", 200, nil)
		b.do(t, "GET", "/admin/poison/bbbbbbbb", "").wantError(t, "unknown prefix", 404, "no such poison entry")
	})
}

// TestAdminPoisonPaging follows next_cursor to the end: every entry once,
// newest first, and never more than limit on a page.
func TestAdminPoisonPaging(t *testing.T) {
	t.Parallel()
	b := setupAdmin(t, store.SQLite, adminSetup{})
	start := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
	want := []string{}
	for i := range 11 {
		e := store.PoisonEntry{ID: middleware.PoisonID("user.events.created", []byte(strconv.Itoa(i))), Payload: []byte(strconv.Itoa(i)),
			Class: "permanent", Reason: "bad", Subject: "user.events.created", FirstFailure: start, LastFailure: start.Add(time.Duration(i/3) * time.Minute)}
		if err := b.db.PutPoison(t.Context(), e); err != nil {
			t.Fatal(err)
		}
		want = append(want, e.ID)
	}
	// Newest first; entries sharing a time (three each) last stored first;
	// then the bundle's entries, 1 h and 3 h old, stored before them.
	slices.Reverse(want)
	want = append(want, b.valid.ID, b.bad.ID)
	var got []string
	target := "/admin/poison?limit=4&since=1d"
	for pages := 0; ; pages++ {
		if pages > 10 {
			t.Fatal("paging does not end")
		}
		var page admin.PoisonPageJSON
		b.do(t, "GET", target, "").want(t, target, 200, &page)
		if len(page.Entries) > 4 || page.Total != 13 || page.Limit != 4 {
			t.Fatalf("%s: %d entries, total %d, limit %d", target, len(page.Entries), page.Total, page.Limit)
		}
		for _, e := range page.Entries {
			got = append(got, e.ID)
		}
		if page.NextCursor == nil {
			break
		}
		target = "/admin/poison?limit=4&since=1d&cursor=" + url.QueryEscape(*page.NextCursor)
	}
	if !slices.Equal(got, want) {
		t.Errorf("paged ids\n got %v\nwant %v", got, want)
	}
	b.do(t, "GET", "/admin/poison?limit=4&order=oldest&cursor="+url.QueryEscape(target[len("/admin/poison?limit=4&since=1d&cursor="):]), "").
		wantError(t, "cursor of the other order", 400, "order")
}

func TestAdminPoisonStats(t *testing.T) {
	t.Parallel()
	b := setupAdmin(t, store.SQLite, adminSetup{})
	var s admin.PoisonStatsJSON
	b.do(t, "GET", "/admin/poison/stats", "").want(t, "stats", 200, &s)
	if s.Total != 2 || s.Newest == nil || s.Newest.ID != b.valid.ID || s.Oldest == nil || s.Oldest.ID != b.bad.ID ||
		!jsonEqual(s.ByClass.Groups, []admin.PoisonCountJSON{{"permanent", 1}, {"transient_exhausted", 1}}) ||
		!jsonEqual(s.BySubject.Groups, []admin.PoisonCountJSON{{"user.events.created", 2}}) {
		t.Errorf("stats = %+v", s)
	}
	b.do(t, "GET", "/admin/poison/stats?class=permanent", "").want(t, "filtered stats", 200, &s)
	if s.Total != 1 || s.Newest.ID != b.bad.ID {
		t.Errorf("filtered stats = %+v", s)
	}
	b.do(t, "GET", "/admin/poison/stats?limit=5", "").wantError(t, "stats with a page parameter", 400, "limit")
	var generic map[string]any
	b.do(t, "GET", "/admin/poison/stats", "").want(t, "stats", 200, &generic)
	if got := slices.Sorted(maps.Keys(generic)); !slices.Equal(got, []string{"by_class", "by_event_subject", "by_ingress", "by_reason_kind", "newest", "oldest", "total"}) {
		t.Errorf("stats fields = %v", got)
	}
}

// TestAdminPoisonJSONShape pins the field names: scripts and the console
// read them.
func TestAdminPoisonJSONShape(t *testing.T) {
	t.Parallel()
	b := setupAdmin(t, store.SQLite, adminSetup{})
	summary := []string{"action", "class", "correlation_id", "delivery_count", "event_subject", "failures", "first_failure_at", "handler",
		"id", "ingress", "last_failure_at", "last_replay_at", "reason", "reason_kind", "replays", "stream", "stream_seq", "subject", "user_id"}
	var page map[string]any
	b.do(t, "GET", "/admin/poison", "").want(t, "list", 200, &page)
	if got := slices.Sorted(maps.Keys(page)); !slices.Equal(got, []string{"entries", "limit", "next_cursor", "order", "total"}) {
		t.Errorf("page fields = %v", got)
	}
	entry := page["entries"].([]any)[0].(map[string]any)
	if got := slices.Sorted(maps.Keys(entry)); !slices.Equal(got, summary) {
		t.Errorf("list entry fields = %v\nwant %v (no payload)", got, summary)
	}
	var full map[string]any
	b.do(t, "GET", "/admin/poison/"+b.valid.ID, "").want(t, "get", 200, &full)
	wantFull := slices.Sorted(slices.Values(append(slices.Clone(summary), "payload", "payload_base64")))
	if got := slices.Sorted(maps.Keys(full)); !slices.Equal(got, wantFull) {
		t.Errorf("entry fields = %v\nwant %v", got, wantFull)
	}
}

func TestAdminDatabaseFailure(t *testing.T) {
	t.Parallel()
	// A database without the poison table: every query fails.
	db, err := store.Open(t.Context(), storetest.URL(t, store.SQLite))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	logger := slog.New(slog.DiscardHandler)
	h, err := admin.NewHandler(admin.Options{DB: db, Replayer: newReplayer(t, db, logger), Logger: logger, ReadyFunc: db.Ping})
	if err != nil {
		t.Fatal(err)
	}
	b := &adminBundle{db: db, handler: h}
	b.do(t, "GET", "/admin/poison", "").wantError(t, "list", 500, "list poison entries")
	b.do(t, "GET", "/admin/poison/00000000-0000-4000-8000-000000000000", "").wantError(t, "get", 500, "no such table")
}

func TestAdminReplayDuringOutage(t *testing.T) {
	t.Parallel()
	b := setupAdmin(t, store.SQLite, adminSetup{})
	// Every commit of a command fails as if the database were down.
	if _, err := b.db.SQL.Exec(`CREATE TRIGGER outage BEFORE INSERT ON watermill_profile_sync_commands
		BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END`); err != nil {
		t.Fatal(err)
	}
	var res router.ReplayResult
	b.do(t, "POST", "/admin/poison/"+b.valid.ID+"/replay", "").want(t, "replay during an outage", 503, &res)
	if res.Result != router.ReplayRetryLater || !strings.Contains(res.Reason, "disk I/O error") {
		t.Errorf("replay during an outage = %+v", res)
	}
	if e, err := b.db.GetPoison(t.Context(), b.valid.ID); err != nil || e.Failures != 1 {
		t.Errorf("entry after a transient failure: %+v, %v; want it unchanged", e, err)
	}
}

// TestReplayLogsPoisonID: every log line about a replay names the entry,
// whether it fails again or cannot be written for now.
func TestReplayLogsPoisonID(t *testing.T) {
	t.Parallel()
	db := storetest.Open(t, store.SQLite)
	var logs bytes.Buffer
	replayer := newReplayer(t, db, slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	bad := store.PoisonEntry{ID: middleware.PoisonID("user.events.created", []byte(`{"id":"abc"}`)), Payload: []byte(`{"id":"abc"}`),
		Class: "permanent", Reason: "bad", Subject: "user.events.created", Ingress: "nats"}
	valid := store.PoisonEntry{ID: middleware.PoisonID("user.events.created", []byte(producerPayload)), Payload: []byte(producerPayload),
		Class: "transient_exhausted", Reason: "down", Subject: "user.events.created", Ingress: "nats"}
	for _, e := range []store.PoisonEntry{bad, valid} {
		if err := db.PutPoison(t.Context(), e); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := replayer.Replay(t.Context(), bad.ID, false); err != nil {
		t.Fatal(err)
	}
	if _, err := db.SQL.Exec(`CREATE TRIGGER outage BEFORE INSERT ON watermill_profile_sync_commands
		BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END`); err != nil {
		t.Fatal(err)
	}
	if _, err := replayer.Replay(t.Context(), valid.ID, false); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"event sent to the poison queue": bad.ID, "event not handled; it will be delivered again": valid.ID}
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		msg, _ := rec["msg"].(string)
		if id, ok := want[msg]; ok {
			if rec["poison_id"] != id {
				t.Errorf("%q: poison_id = %v, want %s", msg, rec["poison_id"], id)
			}
			delete(want, msg)
		}
	}
	if len(want) > 0 {
		t.Errorf("no log lines %v in:\n%s", want, logs.String())
	}
}

func TestAdminToken(t *testing.T) {
	t.Parallel()
	b := setupAdmin(t, store.SQLite, adminSetup{token: "s3cret"})
	for _, tt := range []struct {
		method, target, auth string
		code                 int
	}{
		{"GET", "/admin/poison", "", 401},
		{"GET", "/admin/poison", "Bearer wrong", 401},
		{"GET", "/admin/poison", "Bearer s3cre", 401},
		{"GET", "/admin/poison", "Bearer s3cret2", 401},
		{"GET", "/admin/poison", "Basic s3cret", 401},
		{"GET", "/admin/poison", "s3cret", 401},
		{"GET", "/admin/poison", "Bearer s3cret", 200},
		{"GET", "/admin/poison", "bearer s3cret", 200},
		{"GET", "/admin/poison/" + b.valid.ID, "", 401},
		{"GET", "/admin/poison/" + b.valid.ID, "Bearer s3cret", 200},
		{"POST", "/admin/poison/" + b.valid.ID + "/replay?dry_run=true", "", 401},
		{"DELETE", "/admin/poison/" + b.valid.ID, "Bearer nope", 401},
		// Without the token nothing under /admin/ is revealed, not even which paths exist.
		{"GET", "/admin/nothing-here", "", 401},
		{"GET", "/admin/nothing-here", "Bearer s3cret", 404},
		{"GET", "/healthz", "", 200},
	} {
		r := b.do(t, tt.method, tt.target, tt.auth)
		if r.code != tt.code {
			t.Errorf("%s %s with %q = %d, want %d (%s)", tt.method, tt.target, tt.auth, r.code, tt.code, r.body)
		}
		if r.code == 401 && !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer ") {
			t.Errorf("%s %s: 401 without a WWW-Authenticate challenge", tt.method, tt.target)
		}
	}
	if _, err := b.db.GetPoison(t.Context(), b.valid.ID); err != nil {
		t.Errorf("a request without the token changed the queue: %v", err)
	}
}

func TestNewAdminHandlerValidates(t *testing.T) {
	t.Parallel()
	_, err := admin.NewHandler(admin.Options{Token: "x"})
	if err == nil || !strings.Contains(err.Error(), "DB, Replayer, Logger, ReadyFunc") {
		t.Errorf("NewHandler without dependencies: %v", err)
	}
}

func TestPoisonQueryFilter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 28, 14, 0, 0, 0, time.UTC)
	q := admin.PoisonQuery{Reason: "uuid", ReasonKind: "id: missing", Class: "panic", Subject: "user.events.created", Ingress: "http",
		CorrelationID: "c-1", UserID: "78AF4BC4-AFCE-4676-B373-5B802A2DFD2E", Since: "1d2h", Until: "2026-11-28T13:30:00+01:00", Limit: "10", Order: "oldest", Cursor: "abc"}
	r, err := q.Page(now)
	want := store.PoisonPageRequest{
		Filter: store.PoisonFilter{Reason: "uuid", ReasonKind: "id: missing", Class: "panic", Subject: "user.events.created", Ingress: "http",
			CorrelationID: "c-1", UserID: "78af4bc4-afce-4676-b373-5b802a2dfd2e",
			Since: now.Add(-26 * time.Hour), Until: time.Date(2026, 11, 28, 12, 30, 0, 0, time.UTC)},
		Order: store.OldestFirst, Limit: 10, Cursor: "abc",
	}
	if err != nil || !r.Filter.Since.Equal(want.Filter.Since) || !r.Filter.Until.Equal(want.Filter.Until) {
		t.Errorf("Page = %+v, %v\nwant   %+v", r, err, want)
	}
	r.Filter.Since, r.Filter.Until, want.Filter.Since, want.Filter.Until = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	if r != want {
		t.Errorf("Page = %+v\nwant   %+v", r, want)
	}
	if r, err := (admin.PoisonQuery{}).Page(now); err != nil || r != (store.PoisonPageRequest{Order: store.NewestFirst, Limit: store.DefaultPoisonPageSize}) {
		t.Errorf("empty query = %+v, %v; want the first page of 50, newest first", r, err)
	}
	for since, ago := range map[string]time.Duration{"1d": 24 * time.Hour, "7d": 7 * 24 * time.Hour, "30m": 30 * time.Minute, "1d12h": 36 * time.Hour, "0s": 0} {
		if f, err := (admin.PoisonQuery{Since: since}).Filter(now); err != nil || !f.Since.Equal(now.Add(-ago)) {
			t.Errorf("since %s = %v, %v; want %v", since, f.Since, err, now.Add(-ago))
		}
	}

	_, err = admin.PoisonQuery{Class: "fatal", Since: "yesterday", Until: "-1h", Limit: "x", Ingress: "carrier pigeon", UserID: "abc", Order: "up"}.Page(now)
	var params []string
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		for _, e := range append([]error{e}, unwrapAll(e)...) {
			var pe *admin.ParamError
			if errors.As(e, &pe) && !slices.Contains(params, pe.Param) {
				params = append(params, pe.Param)
			}
		}
	}
	slices.Sort(params)
	if !slices.Equal(params, []string{"class", "ingress", "limit", "order", "since", "until", "user_id"}) {
		t.Errorf("errors name %v, want every bad parameter: %v", params, err)
	}
}

func unwrapAll(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return nil
}

// jsonEqualText compares a JSON body with the JSON it should be.
func jsonEqualText(body, want string) bool {
	var a, b any
	return json.Unmarshal([]byte(body), &a) == nil && json.Unmarshal([]byte(want), &b) == nil && jsonEqual(a, b)
}

// jsonEqual compares values by their JSON, as clients see them.
func jsonEqual(a, b any) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}
