package router_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/social/user-events-router/handlers"
	"github.com/social/user-events-router/middleware"
	"github.com/social/user-events-router/router"
	"github.com/social/user-events-router/store"
	"github.com/social/user-events-router/store/storetest"
)

// producerPayload is byte for byte what the real Auth Service sends.
const producerPayload = `{"id":"78af4bc4-afce-4676-b373-5b802a2dfd2e","email":"alice@example.com","username":"alice01","action":"created","request_id":"","timestamp":"2026-11-28T13:28:17Z","service_name":"gofiber-auth"}`

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
	handler, err := router.NewAdminHandler(router.AdminOptions{
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
		e.Failures = 1
		return e
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
	r, err := router.NewReplayer(db, newPipeline(t, db, handlers.DefaultRegistry(), logger))
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

func countCommands(t *testing.T, db *store.DB) int {
	t.Helper()
	var n int
	if err := db.SQL.QueryRow(`SELECT COUNT(*) FROM watermill_profile_sync_commands`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
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

		var list []router.PoisonJSON
		b.do(t, "GET", "/admin/poison", "").want(t, "list", 200, &list)
		if want := []router.PoisonJSON{router.NewPoisonJSON(b.bad), router.NewPoisonJSON(b.valid)}; !jsonEqual(list, want) {
			t.Errorf("list = %+v\nwant   %+v", list, want)
		}
		b.do(t, "GET", "/admin/poison?class=transient_exhausted&since=2h&subject=user.events.created&reason=FAILURE&limit=5", "").want(t, "filtered list", 200, &list)
		if len(list) != 1 || list[0].ID != b.valid.ID {
			t.Errorf("filtered list = %+v, want only the valid entry", list)
		}
		b.do(t, "GET", "/admin/poison?class=panic", "").want(t, "empty list", 200, &list)
		if r := b.do(t, "GET", "/admin/poison?class=panic", ""); strings.TrimSpace(r.body) != "[]" {
			t.Errorf("empty list body = %q, want []", r.body)
		}
		for query, param := range map[string]string{
			"since=yesterday": "since", "until=soon": "until", "limit=-1": "limit",
			"class=fatal": "class", "clas=panic": `"clas"`, "since=-1h": "since",
		} {
			b.do(t, "GET", "/admin/poison?"+query, "").wantError(t, query, 400, param)
		}

		var got router.PoisonJSON
		b.do(t, "GET", "/admin/poison/"+b.valid.ID[:8], "").want(t, "get by prefix", 200, &got)
		if !jsonEqual(got, router.NewPoisonJSON(b.valid)) || got.Payload == nil || *got.Payload != producerPayload {
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
		if res.Result != router.ReplayWouldCommit || res.CommandType != "create_profile" || countCommands(t, b.db) != 0 {
			t.Errorf("dry run = %+v, %d commands", res, countCommands(t, b.db))
		}
		b.do(t, "POST", "/admin/poison/"+b.valid.ID+"/replay?dry_run=maybe", "").wantError(t, "bad dry_run", 400, "dry_run")
		b.do(t, "POST", "/admin/poison/"+b.valid.ID+"/replay", "").want(t, "replay", 200, &res)
		if res.Result != router.ReplayCommitted || res.ID != b.valid.ID || res.CommandID == "" || countCommands(t, b.db) != 1 {
			t.Errorf("replay = %+v, %d commands", res, countCommands(t, b.db))
		}
		b.do(t, "POST", "/admin/poison/"+b.valid.ID+"/replay", "").wantError(t, "replay again", 404, "no such poison entry")
		if n := countCommands(t, b.db); n != 1 {
			t.Errorf("%d commands after replaying twice, want 1", n)
		}
		b.do(t, "POST", "/admin/poison/"+b.bad.ID+"/replay", "").want(t, "replay bad", 200, &res)
		if e, err := b.db.GetPoison(t.Context(), b.bad.ID); res.Result != router.ReplayStillFailing || err != nil || e.Failures != 2 {
			t.Errorf("replay of a bad entry = %+v; entry %+v, %v", res, e, err)
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

func TestAdminDatabaseFailure(t *testing.T) {
	t.Parallel()
	// A database without the poison table: every query fails.
	db, err := store.Open(t.Context(), storetest.URL(t, store.SQLite))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	logger := slog.New(slog.DiscardHandler)
	h, err := router.NewAdminHandler(router.AdminOptions{DB: db, Replayer: newReplayer(t, db, logger), Logger: logger, ReadyFunc: db.Ping})
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

func TestAdminNeedsToken(t *testing.T) {
	t.Parallel()
	for addr, want := range map[string]bool{
		"127.0.0.1:8081":   false,
		"127.0.0.2:8081":   false,
		"localhost:8081":   false,
		"LocalHost:8081":   false,
		"[::1]:8081":       false,
		":8081":            true,
		"0.0.0.0:8081":     true,
		"[::]:8081":        true,
		"10.0.0.5:8081":    true,
		"admin.local:8081": true,
		"8081":             true, // not host:port: assume the worst
		"":                 true,
	} {
		if got := router.AdminNeedsToken(addr); got != want {
			t.Errorf("AdminNeedsToken(%q) = %v, want %v", addr, got, want)
		}
	}
}

func TestNewAdminHandlerValidates(t *testing.T) {
	t.Parallel()
	_, err := router.NewAdminHandler(router.AdminOptions{Token: "x"})
	if err == nil || !strings.Contains(err.Error(), "DB, Replayer, Logger, ReadyFunc") {
		t.Errorf("NewAdminHandler without dependencies: %v", err)
	}
}

func TestPoisonQueryFilter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 28, 14, 0, 0, 0, time.UTC)
	f, err := router.PoisonQuery{Reason: "uuid", Class: "panic", Subject: "user.events.created", Since: "2h", Until: "2026-11-28T13:30:00+01:00", Limit: "10"}.Filter(now)
	want := store.PoisonFilter{Reason: "uuid", Class: "panic", Subject: "user.events.created",
		Since: now.Add(-2 * time.Hour), Until: time.Date(2026, 11, 28, 12, 30, 0, 0, time.UTC), Limit: 10}
	if err != nil || !f.Since.Equal(want.Since) || !f.Until.Equal(want.Until) || f.Reason != want.Reason || f.Class != want.Class || f.Subject != want.Subject || f.Limit != want.Limit {
		t.Errorf("Filter = %+v, %v\nwant     %+v", f, err, want)
	}
	if f, err := (router.PoisonQuery{}).Filter(now); err != nil || f != (store.PoisonFilter{}) {
		t.Errorf("empty query = %+v, %v; want the zero filter", f, err)
	}

	_, err = router.PoisonQuery{Class: "fatal", Since: "yesterday", Until: "-1h", Limit: "x"}.Filter(now)
	var params []string
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var pe *router.ParamError
		if errors.As(e, &pe) {
			params = append(params, pe.Param)
		}
	}
	if !slices.Equal(params, []string{"class", "since", "until", "limit"}) {
		t.Errorf("errors name %v, want every bad parameter: %v", params, err)
	}
}

// jsonEqual compares values by their JSON, as clients see them.
func jsonEqual(a, b any) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}
