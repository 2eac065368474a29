package ingress_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/social/user-events-router/handlers"
	"github.com/social/user-events-router/middleware"
	"github.com/social/user-events-router/router/ingress"
	"github.com/social/user-events-router/router/pipelinetest"
	"github.com/social/user-events-router/schema"
	"github.com/social/user-events-router/store"
	"github.com/social/user-events-router/store/storetest"
)

// ingressBundle is an ingress handler over a real pipeline and database.
type ingressBundle struct {
	db      *store.DB
	handler http.Handler
}

type ingressSetup struct {
	token    string
	maxBody  int64                 // default 4096
	registry handlers.Registry     // default handlers.DefaultRegistry()
	poison   middleware.PoisonSink // default the database
	logger   *slog.Logger          // default discard
}

func setupIngress(t testing.TB, db *store.DB, s ingressSetup) *ingressBundle {
	t.Helper()
	if s.maxBody == 0 {
		s.maxBody = 4096
	}
	if s.registry == nil {
		s.registry = handlers.DefaultRegistry()
	}
	if s.poison == nil {
		s.poison = db
	}
	if s.logger == nil {
		s.logger = slog.New(slog.DiscardHandler)
	}
	h, err := ingress.NewHandler(ingress.Options{
		Pipeline:     pipelinetest.NewPipeline(t, db, s.registry, s.logger),
		Poison:       s.poison,
		MaxBodyBytes: s.maxBody,
		Token:        s.token,
		Logger:       s.logger,
	})
	if err != nil {
		t.Fatal(err)
	}
	return &ingressBundle{db: db, handler: h}
}

// producerPayload is byte for byte what the real Auth Service sends.
const producerPayload = pipelinetest.ProducerPayload

// response is one answer of the handler under test.
type response struct {
	code   int
	header http.Header
	body   string
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

// jsonHeader is all the Auth Service sends.
var jsonHeader = []string{"Content-Type", "application/json"}

// post sends body to the ingress path with header pairs (name, value, …).
func (b *ingressBundle) post(t *testing.T, body string, header ...string) response {
	t.Helper()
	return b.serve(t, b.request(t, http.MethodPost, ingress.Path, strings.NewReader(body), header...))
}

func (b *ingressBundle) request(t *testing.T, method, target string, body io.Reader, header ...string) *http.Request {
	t.Helper()
	req := httptest.NewRequestWithContext(t.Context(), method, target, body)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return req
}

func (b *ingressBundle) serve(t *testing.T, req *http.Request) response {
	t.Helper()
	rec := httptest.NewRecorder()
	b.handler.ServeHTTP(rec, req)
	return response{rec.Code, rec.Header(), rec.Body.String()}
}

// ingressReply is the JSON shape of every ingress answer.
type ingressReply struct {
	Status        string `json:"status"`
	Error         string `json:"error"`
	PoisonID      string `json:"poison_id"`
	CorrelationID string `json:"correlation_id"`
}

// reply checks the status, the JSON body and that the X-Request-ID header
// carries the correlation id.
func (r response) reply(t *testing.T, what string, code int) ingressReply {
	t.Helper()
	var rep ingressReply
	r.want(t, what, code, &rep)
	if rep.CorrelationID == "" || r.header.Get("X-Request-ID") != schema.PrintableASCII(rep.CorrelationID, 1<<10) {
		t.Errorf("%s: correlation_id %q, X-Request-ID %q; want the same non-empty id", what, rep.CorrelationID, r.header.Get("X-Request-ID"))
	}
	if code != http.StatusOK && rep.Error == "" {
		t.Errorf("%s: %d without an error message: %s", what, code, r.body)
	}
	return rep
}

// commandPayloads are the committed commands' JSON payloads.
func commandPayloads(t *testing.T, db *store.DB) []map[string]any {
	t.Helper()
	rows, err := db.SQL.Query(`SELECT payload FROM watermill_profile_sync_commands`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []map[string]any
	for rows.Next() {
		var raw []byte
		var p map[string]any
		if err := rows.Scan(&raw); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(raw, &p); err != nil {
			t.Fatalf("command payload is not JSON: %v", err)
		}
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func poisonEntries(t *testing.T, db *store.DB) []store.PoisonEntry {
	t.Helper()
	return storetest.PoisonEntries(t, db)
}

// wantKept checks that the poison queue holds exactly body under rep's id.
func wantKept(t *testing.T, db *store.DB, what string, rep ingressReply, body []byte, class string) store.PoisonEntry {
	t.Helper()
	if want := middleware.PoisonID("", body); rep.PoisonID != want {
		t.Errorf("%s: poison_id %q, want %q", what, rep.PoisonID, want)
	}
	e, err := db.GetPoison(t.Context(), rep.PoisonID)
	if err != nil {
		t.Fatalf("%s: not in the poison queue: %v", what, err)
	}
	if !bytes.Equal(e.Payload, body) {
		t.Errorf("%s: poison payload (%d bytes) differs from the body sent (%d bytes)", what, len(e.Payload), len(body))
	}
	if e.Class != class || e.Ingress != schema.IngressHTTP || e.CorrelationID != rep.CorrelationID || e.Subject != "" ||
		e.FirstFailure.IsZero() || e.Reason == "" {
		t.Errorf("%s: entry %+v, want class %s, ingress http, correlation id %s", what, withoutPayload(e), class, rep.CorrelationID)
	}
	return e
}

func withoutPayload(e store.PoisonEntry) store.PoisonEntry {
	e.Payload = nil
	return e
}

// event is the producer payload with replacements (old, new, …).
func event(replacements ...string) string {
	return strings.NewReplacer(replacements...).Replace(producerPayload)
}

// paddedEvent is a valid event of exactly n bytes (an unknown field pads it).
func paddedEvent(t testing.TB, n int) string {
	t.Helper()
	head := strings.TrimSuffix(producerPayload, "}") + `,"pad":"`
	pad := n - len(head) - len(`"}`)
	if pad < 0 {
		t.Fatalf("paddedEvent: %d bytes is too small", n)
	}
	return head + strings.Repeat("x", pad) + `"}`
}

func TestIngressCommits(t *testing.T) {
	t.Parallel()
	storetest.EachBackend(t, func(t *testing.T, backend store.Dialect) {
		b := setupIngress(t, storetest.Open(t, backend), ingressSetup{})

		r := b.post(t, producerPayload, jsonHeader...)
		rep := r.reply(t, "first post", http.StatusOK)
		if rep.Status != "ok" || rep.CorrelationID != handlers.MintCorrelationID([]byte(producerPayload)) {
			t.Errorf("reply %+v, want status ok and the id minted from the body (no request_id, no X-Request-ID)", rep)
		}
		cmds := commandPayloads(t, b.db)
		if len(cmds) != 1 {
			t.Fatalf("%d commands after 200, want 1", len(cmds))
		}
		src, _ := cmds[0]["source"].(map[string]any)
		if cmds[0]["type"] != "create_profile" || cmds[0]["correlation_id"] != rep.CorrelationID ||
			src["ingress"] != "http" || src["subject"] != "user.events.created" || src["stream_sequence"] != nil {
			t.Errorf("command = %v", cmds[0])
		}

		// The Auth Service retries after a lost answer: still one command.
		b.post(t, producerPayload, jsonHeader...).reply(t, "second post", http.StatusOK)
		if n := pipelinetest.CountCommands(t, b.db); n != 1 {
			t.Errorf("%d commands after posting twice, want 1", n)
		}
		// A body of exactly the limit is accepted.
		b.post(t, paddedEvent(t, 4096), jsonHeader...).reply(t, "body of exactly MaxBodyBytes", http.StatusOK)
		if n := len(poisonEntries(t, b.db)); n != 0 {
			t.Errorf("%d poison entries, want none", n)
		}
	})
}

func TestIngressInvalidEvent(t *testing.T) {
	t.Parallel()
	storetest.EachBackend(t, func(t *testing.T, backend store.Dialect) {
		b := setupIngress(t, storetest.Open(t, backend), ingressSetup{})
		for _, tt := range []struct{ name, body, reason string }{
			{"truncated JSON", producerPayload[:60], "JSON"},
			{"invalid UUID", event("78af4bc4-afce-4676-b373-5b802a2dfd2e", "not-a-uuid"), "id: not a UUID"},
			{"unknown action", event(`"created"`, `"renamed"`), `unknown action "renamed"`},
			{"empty body", "", "empty"},
			{"binary garbage", "\x00\xff\xfe\x13\x37", "UTF-8"},
			{"top-level array", "[" + producerPayload + "]", "array"},
		} {
			rep := b.post(t, tt.body, jsonHeader...).reply(t, tt.name, http.StatusBadRequest)
			if !strings.Contains(rep.Error, tt.reason) {
				t.Errorf("%s: error %q does not name the problem (%q)", tt.name, rep.Error, tt.reason)
			}
			e := wantKept(t, b.db, tt.name, rep, []byte(tt.body), middleware.ClassPermanent)
			if e.Reason != rep.Error {
				t.Errorf("%s: entry reason %q, reply error %q; want the same", tt.name, e.Reason, rep.Error)
			}
		}
		if n := pipelinetest.CountCommands(t, b.db); n != 0 {
			t.Errorf("%d commands after invalid events, want 0", n)
		}
	})
}

func TestIngressToken(t *testing.T) {
	t.Parallel()
	b := setupIngress(t, storetest.Open(t, store.SQLite), ingressSetup{token: "s3cret"})
	for _, auth := range []string{"", "Bearer wrong", "Bearer s3cre", "Bearer s3cret2", "Basic s3cret", "s3cret"} {
		r := b.post(t, producerPayload, "Content-Type", "application/json", "Authorization", auth)
		r.reply(t, "auth "+auth, http.StatusUnauthorized)
		if !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer ") {
			t.Errorf("auth %q: 401 without a Bearer challenge", auth)
		}
	}
	if n := pipelinetest.CountCommands(t, b.db); n != 0 {
		t.Fatalf("%d commands after unauthorized posts, want 0", n)
	}
	b.post(t, producerPayload, "Content-Type", "application/json", "Authorization", "bearer s3cret").reply(t, "right token", http.StatusOK)
	if n := pipelinetest.CountCommands(t, b.db); n != 1 {
		t.Errorf("%d commands after an authorized post, want 1", n)
	}
}

func TestIngressUnknownPath(t *testing.T) {
	t.Parallel()
	b := setupIngress(t, storetest.Open(t, store.SQLite), ingressSetup{})
	for _, target := range []string{"/", "/api/sync/users/", "/api/sync/user", "/api/sync/users/1", "/admin/poison"} {
		r := b.serve(t, b.request(t, http.MethodPost, target, strings.NewReader(producerPayload), jsonHeader...))
		if rep := r.reply(t, target, http.StatusNotFound); !strings.Contains(rep.Error, target) {
			t.Errorf("%s: error %q does not name the path", target, rep.Error)
		}
	}
	if n := pipelinetest.CountCommands(t, b.db); n != 0 {
		t.Errorf("%d commands, want 0", n)
	}
}

func TestIngressMethod(t *testing.T) {
	t.Parallel()
	b := setupIngress(t, storetest.Open(t, store.SQLite), ingressSetup{})
	for _, method := range []string{"GET", "HEAD", "PUT", "PATCH", "DELETE", "OPTIONS"} {
		r := b.serve(t, b.request(t, method, ingress.Path, strings.NewReader(producerPayload), jsonHeader...))
		if rep := r.reply(t, method, http.StatusMethodNotAllowed); !strings.Contains(rep.Error, method) {
			t.Errorf("%s: error %q does not name the method", method, rep.Error)
		}
		if got := r.header.Get("Allow"); got != "POST" {
			t.Errorf("%s: Allow %q, want POST", method, got)
		}
	}
	if n := pipelinetest.CountCommands(t, b.db); n != 0 {
		t.Errorf("%d commands, want 0", n)
	}
}

func TestIngressContentType(t *testing.T) {
	t.Parallel()
	b := setupIngress(t, storetest.Open(t, store.SQLite), ingressSetup{})
	for _, ct := range []string{
		"", "text/plain", "application/x-www-form-urlencoded", "application/jsonx", "json", "application/", "multipart/form-data; boundary=x",
		// JSON is UTF-8: a body in another charset would be read as the wrong text.
		"application/json; charset=latin1", "application/json; charset=ISO-8859-1", "application/json;charset=utf-16", "application/json; charset=utf8", "application/json; charset=",
	} {
		header := []string{}
		if ct != "" {
			header = []string{"Content-Type", ct}
		}
		rep := b.post(t, producerPayload, header...).reply(t, "Content-Type "+ct, http.StatusUnsupportedMediaType)
		want := ct
		if ct == "" {
			want = "missing Content-Type"
		}
		if !strings.Contains(rep.Error, want) {
			t.Errorf("Content-Type %q: error %q does not name it", ct, rep.Error)
		}
	}
	if n := pipelinetest.CountCommands(t, b.db); n != 0 {
		t.Fatalf("%d commands after 415s, want 0", n)
	}
	for i, ct := range []string{"application/json", "Application/JSON", "application/json; charset=utf-8", "APPLICATION/JSON;CHARSET=UTF-8", `application/json; charset="utf-8"`} {
		body := event("78af4bc4-afce-4676-b373-5b802a2dfd2e", fmt.Sprintf("%08d-0000-4000-8000-000000000000", i))
		b.post(t, body, "Content-Type", ct).reply(t, "Content-Type "+ct, http.StatusOK)
	}
	if n := pipelinetest.CountCommands(t, b.db); n != 5 {
		t.Errorf("%d commands, want 5", n)
	}
}

// countingReader counts the bytes the handler read.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func TestIngressTooLarge(t *testing.T) {
	t.Parallel()
	const maxBody = 4096

	t.Run("kept in the poison queue", func(t *testing.T) {
		t.Parallel()
		b := setupIngress(t, storetest.Open(t, store.SQLite), ingressSetup{maxBody: maxBody})
		for _, tt := range []struct {
			name   string
			size   int
			header []string
			// declared is the Content-Length the request claims (0: the
			// true length; -1: none, as with a chunked body).
			declared int64
		}{
			{name: "just over the limit", size: maxBody + 1, header: []string{"X-Request-ID", "req-413"}},
			{name: "1 MiB exactly", size: 1 << 20},
			{name: "understated Content-Length", size: 5000, declared: 100},
			{name: "chunked", size: 6000, declared: -1},
		} {
			body := paddedEvent(t, tt.size)
			req := b.request(t, http.MethodPost, ingress.Path, strings.NewReader(body), append(tt.header, jsonHeader...)...)
			if tt.declared != 0 {
				req.ContentLength = tt.declared
			}
			rep := b.serve(t, req).reply(t, tt.name, http.StatusRequestEntityTooLarge)
			if want := fmt.Sprintf("body is %d bytes, over the ingress limit of %d bytes", tt.size, maxBody); rep.Error != want {
				t.Errorf("%s: error %q, want %q", tt.name, rep.Error, want)
			}
			wantCorr := handlers.MintCorrelationID([]byte(body))
			if len(tt.header) > 0 {
				wantCorr = "req-413"
			}
			if rep.CorrelationID != wantCorr {
				t.Errorf("%s: correlation id %q, want %q", tt.name, rep.CorrelationID, wantCorr)
			}
			if e := wantKept(t, b.db, tt.name, rep, []byte(body), middleware.ClassPermanent); e.Reason != rep.Error {
				t.Errorf("%s: entry reason %q, want %q", tt.name, e.Reason, rep.Error)
			}
		}
		if n := pipelinetest.CountCommands(t, b.db); n != 0 {
			t.Errorf("%d commands, want 0", n)
		}
	})

	t.Run("over 1 MiB, not read", func(t *testing.T) {
		t.Parallel()
		b := setupIngress(t, storetest.Open(t, store.SQLite), ingressSetup{maxBody: maxBody})
		body := paddedEvent(t, 3<<20)
		for _, declared := range []int64{int64(len(body)), -1, 100} {
			src := &countingReader{r: strings.NewReader(body)}
			req := b.request(t, http.MethodPost, ingress.Path, src, jsonHeader...)
			req.ContentLength = declared
			r := b.serve(t, req)
			rep := r.reply(t, fmt.Sprintf("Content-Length %d", declared), http.StatusRequestEntityTooLarge)
			if !strings.Contains(rep.Error, "not stored") || rep.PoisonID != "" {
				t.Errorf("Content-Length %d: reply %+v, want an error saying the body was not stored", declared, rep)
			}
			if src.n > 1<<20+1 {
				t.Errorf("Content-Length %d: the handler read %d bytes, want at most 1 MiB + 1", declared, src.n)
			}
			if declared == int64(len(body)) && src.n != 0 {
				t.Errorf("a declared length over 1 MiB: the handler read %d bytes, want none", src.n)
			}
		}
		if n := len(poisonEntries(t, b.db)); n != 0 {
			t.Errorf("%d poison entries, want none", n)
		}
		if n := pipelinetest.CountCommands(t, b.db); n != 0 {
			t.Errorf("%d commands, want 0", n)
		}
	})

	t.Run("poison queue unavailable", func(t *testing.T) {
		t.Parallel()
		down := sinkFunc(func(store.PoisonEntry) error { return errors.New("connection refused") })
		b := setupIngress(t, storetest.Open(t, store.SQLite), ingressSetup{maxBody: maxBody, poison: down})
		r := b.post(t, paddedEvent(t, maxBody+1), jsonHeader...)
		r.reply(t, "oversized while the poison queue is down", http.StatusServiceUnavailable)
		if got := r.header.Get("Retry-After"); got != "1" {
			t.Errorf("Retry-After %q, want 1", got)
		}
	})
}

// sinkFunc is a PoisonSink from a function.
type sinkFunc func(store.PoisonEntry) error

func (f sinkFunc) PutPoison(_ context.Context, e store.PoisonEntry) error { return f(e) }

func TestIngressPanic(t *testing.T) {
	t.Parallel()
	registry := handlers.DefaultRegistry()
	registry[schema.ActionCreated] = handlers.Handler{
		Name: handlers.Created.Name, Action: schema.ActionCreated,
		Build: func(schema.UserEvent, handlers.Delivery) schema.Command { panic("boom") },
	}
	b := setupIngress(t, storetest.Open(t, store.SQLite), ingressSetup{registry: registry})
	rep := b.post(t, producerPayload, jsonHeader...).reply(t, "a panicking handler", http.StatusInternalServerError)
	if strings.Contains(rep.Error, "boom") || !strings.Contains(rep.Error, "poison queue") {
		t.Errorf("error %q: want a generic message saying the event is kept", rep.Error)
	}
	if e := wantKept(t, b.db, "panic", rep, []byte(producerPayload), middleware.ClassPanic); e.Stack == "" || !strings.Contains(e.Reason, "boom") {
		t.Errorf("panic entry lacks its reason or stack: %+v", withoutPayload(e))
	}
	if n := pipelinetest.CountCommands(t, b.db); n != 0 {
		t.Errorf("%d commands, want 0", n)
	}
	// The next event flows.
	b.post(t, event(`"created"`, `"updated"`), jsonHeader...).reply(t, "an updated event after the panic", http.StatusOK)
}

func TestIngressDatabaseUnavailable(t *testing.T) {
	t.Parallel()
	t.Run("commands table missing", func(t *testing.T) {
		t.Parallel()
		db := storetest.Open(t, store.SQLite)
		b := setupIngress(t, db, ingressSetup{})
		if _, err := db.SQL.Exec(`ALTER TABLE watermill_profile_sync_commands RENAME TO parked_commands`); err != nil {
			t.Fatal(err)
		}
		r := b.post(t, producerPayload, "Content-Type", "application/json", "X-Request-ID", "req-503")
		rep := r.reply(t, "post during the outage", http.StatusServiceUnavailable)
		if got := r.header.Get("Retry-After"); got != "1" {
			t.Errorf("Retry-After %q, want 1", got)
		}
		if rep.CorrelationID != "req-503" || rep.PoisonID != "" || strings.Contains(rep.Error, "parked") {
			t.Errorf("reply %+v", rep)
		}
		// A commit cut off mid-way may have taken: the answer does not
		// claim otherwise, and says a repeat is safe.
		if !strings.Contains(rep.Error, "may or may not have been stored") || !strings.Contains(rep.Error, "sending it again is safe") || strings.Contains(rep.Error, "nothing was committed") {
			t.Errorf("503 says %q, want that the event may or may not be stored and a repeat is safe", rep.Error)
		}
		if _, err := db.SQL.Exec(`ALTER TABLE parked_commands RENAME TO watermill_profile_sync_commands`); err != nil {
			t.Fatal(err)
		}
		if n := pipelinetest.CountCommands(t, db); n != 0 {
			t.Errorf("%d commands after a 503, want 0", n)
		}
		if n := len(poisonEntries(t, db)); n != 0 {
			t.Errorf("a database outage made %d poison entries, want none", n)
		}
		// The Auth Service's next try succeeds.
		b.post(t, producerPayload, jsonHeader...).reply(t, "retry after the outage", http.StatusOK)
		if n := pipelinetest.CountCommands(t, db); n != 1 {
			t.Errorf("%d commands after the retry, want 1", n)
		}
	})

	t.Run("database closed", func(t *testing.T) {
		t.Parallel()
		db, err := store.Open(t.Context(), storetest.URL(t, store.SQLite))
		if err != nil {
			t.Fatal(err)
		}
		if err := db.InitSchema(t.Context(), store.CommandsTopic, store.PoisonTopic); err != nil {
			t.Fatal(err)
		}
		b := setupIngress(t, db, ingressSetup{})
		db.Close()
		// A valid event cannot be committed; an invalid one cannot be
		// kept, so it must not be answered 400 (the Auth Service would
		// drop it) but 503.
		for name, body := range map[string]string{"valid": producerPayload, "invalid": producerPayload[:60], "oversized": paddedEvent(t, 5000)} {
			r := b.post(t, body, jsonHeader...)
			r.reply(t, name+" event while the database is closed", http.StatusServiceUnavailable)
			if got := r.header.Get("Retry-After"); got != "1" {
				t.Errorf("%s: Retry-After %q, want 1", name, got)
			}
		}
	})
}

func TestIngressCorrelation(t *testing.T) {
	t.Parallel()
	b := setupIngress(t, storetest.Open(t, store.SQLite), ingressSetup{})
	user := func(i int) string { return fmt.Sprintf("%08d-0000-4000-8000-000000000000", i) }
	tests := []struct {
		name, body, requestID, want string
	}{
		{"X-Request-ID when request_id is empty", event("78af4bc4-afce-4676-b373-5b802a2dfd2e", user(1)), "req-1", "req-1"},
		{"the body's request_id wins", event("78af4bc4-afce-4676-b373-5b802a2dfd2e", user(2), `"request_id":""`, `"request_id":"rid-body"`), "req-2", "rid-body"},
		{"minted without either", event("78af4bc4-afce-4676-b373-5b802a2dfd2e", user(3)), "", ""},
		{"an unfit X-Request-ID is ignored", event("78af4bc4-afce-4676-b373-5b802a2dfd2e", user(4)), "two words", ""},
		{"an overlong X-Request-ID is ignored", event("78af4bc4-afce-4676-b373-5b802a2dfd2e", user(5)), strings.Repeat("r", 200), ""},
	}
	for i, tt := range tests {
		if tt.want == "" {
			tests[i].want = handlers.MintCorrelationID([]byte(tt.body))
		}
	}
	for _, tt := range tests {
		header := jsonHeader
		if tt.requestID != "" {
			header = append([]string{"X-Request-ID", tt.requestID}, jsonHeader...)
		}
		if rep := b.post(t, tt.body, header...).reply(t, tt.name, http.StatusOK); rep.CorrelationID != tt.want {
			t.Errorf("%s: replied correlation id %q, want %q", tt.name, rep.CorrelationID, tt.want)
		}
	}
	byUser := map[string]any{}
	for _, c := range commandPayloads(t, b.db) {
		byUser[fmt.Sprint(c["user_id"])] = c["correlation_id"]
	}
	for i, tt := range tests {
		if got := byUser[user(i+1)]; got != tt.want {
			t.Errorf("%s: committed command's correlation_id %v, want %q", tt.name, got, tt.want)
		}
	}
}

func TestIngressLogsOneLinePerRequest(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	b := setupIngress(t, storetest.Open(t, store.SQLite), ingressSetup{logger: logger})
	rep := b.post(t, producerPayload, jsonHeader...).reply(t, "post", http.StatusOK)
	b.post(t, producerPayload, "Content-Type", "text/plain").reply(t, "415", http.StatusUnsupportedMediaType)
	// The poison reason quotes the bad id; the request line must not.
	bad := b.post(t, event("78af4bc4-afce-4676-b373-5b802a2dfd2e", "alice-is-no-uuid"), jsonHeader...).reply(t, "400", http.StatusBadRequest)

	var lines []map[string]any
	var raw []string
	for _, l := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line is not JSON: %q", l)
		}
		if m["msg"] == "ingress request" {
			lines, raw = append(lines, m), append(raw, l)
		}
	}
	if len(lines) != 3 {
		t.Fatalf("%d request log lines for 3 requests:\n%s", len(lines), logs.String())
	}
	if l := lines[0]; l["level"] != "INFO" || l["method"] != "POST" || l["status"] != float64(200) ||
		l["correlation_id"] != rep.CorrelationID || l["took"] == nil || l["component"] != "ingress" || l["body_bytes"] != float64(len(producerPayload)) {
		t.Errorf("request log line %v", l)
	}
	if l := lines[1]; l["status"] != float64(415) || !strings.Contains(fmt.Sprint(l["error"]), "text/plain") {
		t.Errorf("415 log line %v", l)
	}
	if l := lines[2]; l["status"] != float64(400) || l["poison_id"] != bad.PoisonID || l["correlation_id"] != bad.CorrelationID {
		t.Errorf("400 log line %v", l)
	}
	for _, l := range raw {
		if strings.Contains(l, "alice") {
			t.Errorf("a request log line carries the event's personal data: %s", l)
		}
	}
	if strings.Contains(logs.String(), "alice@example.com") || strings.Contains(logs.String(), "alice01") {
		t.Errorf("the logs carry the event's personal data:\n%s", logs.String())
	}
}

func TestNewIngressHandlerValidates(t *testing.T) {
	t.Parallel()
	_, err := ingress.NewHandler(ingress.Options{Token: "x"})
	if err == nil || !strings.Contains(err.Error(), "Pipeline, Poison, Logger") {
		t.Errorf("NewHandler without dependencies: %v", err)
	}
	db := storetest.Open(t, store.SQLite)
	logger := slog.New(slog.DiscardHandler)
	_, err = ingress.NewHandler(ingress.Options{Pipeline: pipelinetest.NewPipeline(t, db, handlers.DefaultRegistry(), logger), Poison: db, Logger: logger})
	if err == nil || !strings.Contains(err.Error(), "MaxBodyBytes=0") {
		t.Errorf("NewHandler without MaxBodyBytes: %v", err)
	}
}

func TestNewIngressServer(t *testing.T) {
	t.Parallel()
	db := storetest.Open(t, store.SQLite)
	b := setupIngress(t, db, ingressSetup{})
	const budget = 20 * time.Second
	srv := ingress.NewServer("127.0.0.1:0", b.handler, budget)
	if srv.Addr != "127.0.0.1:0" || srv.Handler == nil || srv.ReadHeaderTimeout <= 0 || srv.ReadTimeout < srv.ReadHeaderTimeout ||
		srv.WriteTimeout < srv.ReadTimeout+budget || srv.IdleTimeout <= 0 || srv.MaxHeaderBytes <= 0 || srv.MaxHeaderBytes > 1<<20 {
		t.Fatalf("server timeouts: header %v, read %v, write %v, idle %v, max header bytes %d",
			srv.ReadHeaderTimeout, srv.ReadTimeout, srv.WriteTimeout, srv.IdleTimeout, srv.MaxHeaderBytes)
	}

	// Over a real connection, as the Auth Service posts.
	ln, err := net.Listen("tcp", srv.Addr)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	resp, err := http.Post("http://"+ln.Addr().String()+ingress.Path, "application/json", strings.NewReader(producerPayload))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || pipelinetest.CountCommands(t, db) != 1 {
		t.Errorf("POST over HTTP: %d %s, %d commands", resp.StatusCode, body, pipelinetest.CountCommands(t, db))
	}
}

// FuzzIngress feeds arbitrary bodies (and X-Request-IDs) through the
// handler over a healthy database: every answer is 200, 400 or 413 with
// the JSON shape, and every refused body is kept byte for byte.
func FuzzIngress(f *testing.F) {
	for _, seed := range []string{
		producerPayload, producerPayload[:60], "", "null", "[]", `{"request_id":"r"}`, "\xef\xbb\xbf" + producerPayload,
		event(`"request_id":""`, `"request_id":"rid"`), event(`"created"`, `"deleted"`), strings.Repeat("[", 100),
		paddedEvent(f, 4097), "\x00\xff",
	} {
		f.Add([]byte(seed), "")
	}
	f.Add([]byte(producerPayload), "req-1")
	f.Add([]byte(producerPayload), "bad id\n")
	f.Add([]byte(event(`"request_id":""`, `"request_id":"\u001b[31m\u0000\u202e\ud800é"`)), "")
	b := setupIngress(f, storetest.Open(f, store.SQLite), ingressSetup{})

	f.Fuzz(func(t *testing.T, body []byte, requestID string) {
		req := b.request(t, http.MethodPost, ingress.Path, bytes.NewReader(body), jsonHeader...)
		req.Header["X-Request-Id"] = []string{requestID} // as sent, unvalidated
		r := b.serve(t, req)
		switch r.code {
		case http.StatusOK, http.StatusBadRequest, http.StatusRequestEntityTooLarge:
		default:
			t.Fatalf("status %d for a body of %d bytes over a healthy database: %s", r.code, len(body), r.body)
		}
		rep := r.reply(t, "fuzz", r.code)
		if h := r.header.Get("X-Request-ID"); !validHeaderValue(h) {
			t.Fatalf("X-Request-ID %q is not a header value every client reads back", h)
		}
		if r.code != http.StatusOK {
			wantKept(t, b.db, "fuzz", rep, body, middleware.ClassPermanent)
		}
	})
}
