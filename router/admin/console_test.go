package admin_test

import (
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/social/user-events-router/middleware"
	"github.com/social/user-events-router/router/admin"
	"github.com/social/user-events-router/router/pipelinetest"
	"github.com/social/user-events-router/router/routertest"
	"github.com/social/user-events-router/store"
	"github.com/social/user-events-router/store/storetest"
)

// consoleBundle is the admin handler over a real SQLite queue, served on a
// loopback port as the router serves it, with a seeded queue.
type consoleBundle struct {
	db     *store.DB
	srv    *httptest.Server
	now    *atomic.Pointer[time.Time]
	token  string
	valid  store.PoisonEntry // replays to a create_profile
	bad    store.PoisonEntry // fails again
	script store.PoisonEntry // hostile: not JSON, HTML and script
	img    store.PoisonEntry // hostile: JSON whose values are markup
	bidi   store.PoisonEntry // hostile: bidi override and terminal escapes in every field, a panic stack
	big    store.PoisonEntry // a 1 MiB JSON body
}

// The hostile payloads: run as script, each would change the page's title
// (and set a global); shown as text, they change nothing. Both are
// invalid events (the second has no timestamp), so replays keep them.
const (
	scriptPayload = `<script>document.title='pwned';window.pwned=1</script><b>bold?</b>`
	imgPayload    = `{"id":"5f0e1d2c-3b4a-4958-8776-a5b4c3d2e1f0","email":"x@example.com","username":"<img src=x onerror=\"document.title='pwned'\">","action":"created"}`
)

// hostileText carries a right-to-left override, a terminal escape and markup.
const hostileText = "evil\u202etxt.exe \x1b[31mred\x1b[0m <i>markup</i>"

func setupConsole(t *testing.T, token string) *consoleBundle {
	t.Helper()
	db := storetest.Open(t, store.SQLite)
	logger := slog.New(slog.DiscardHandler)
	b := &consoleBundle{db: db, now: &atomic.Pointer[time.Time]{}, token: token}
	start := time.Now()
	b.now.Store(&start)
	handler, err := admin.NewHandler(admin.Options{
		DB: db, Replayer: newReplayer(t, db, logger), Token: token, Logger: logger, ReadyFunc: db.Ping,
		NowFunc: func() time.Time { return *b.now.Load() },
	})
	if err != nil {
		t.Fatal(err)
	}
	b.srv = httptest.NewServer(handler)
	t.Cleanup(b.srv.Close)

	at := start.UTC().Truncate(time.Second)
	put := func(e store.PoisonEntry, ago time.Duration) store.PoisonEntry {
		t.Helper()
		e.ID = middleware.PoisonID(e.Subject, e.Payload)
		e.FirstFailure, e.LastFailure = at.Add(-ago), at.Add(-ago)
		if err := db.PutPoison(t.Context(), e); err != nil {
			t.Fatal(err)
		}
		stored, err := db.GetPoison(t.Context(), e.ID)
		if err != nil {
			t.Fatal(err)
		}
		return stored
	}
	b.bad = put(store.PoisonEntry{Payload: []byte(`{"id":"abc"}`), Class: middleware.ClassPermanent, Reason: `id: not a UUID: "abc"`,
		Subject: "user.events.created", Ingress: "nats", Stream: "USER_EVENTS", StreamSeq: 7, DeliveryCount: 1}, 5*time.Hour)
	b.valid = put(store.PoisonEntry{Payload: []byte(producerPayload), Class: middleware.ClassTransientExhausted, Reason: "commit: database is locked",
		Subject: "user.events.created", Ingress: "nats", CorrelationID: "corr-valid", Stream: "USER_EVENTS", StreamSeq: 42, DeliveryCount: 3}, 4*time.Hour)
	b.script = put(store.PoisonEntry{Payload: []byte(scriptPayload), Class: middleware.ClassPermanent, Reason: "decode event: not one JSON object",
		Ingress: "http", CorrelationID: "corr-script"}, 3*time.Hour)
	b.img = put(store.PoisonEntry{Payload: []byte(imgPayload), Class: middleware.ClassPermanent, Reason: `username: not allowed: "<img src=x onerror=alert(1)>"`,
		Subject: "user.events.created", Ingress: "nats", StreamSeq: 9}, 2*time.Hour)
	b.bidi = put(store.PoisonEntry{Payload: []byte("{\"id\":\"" + hostileText + "\"}"), Class: middleware.ClassPanic, Reason: "panic: " + hostileText,
		Subject: "user.events.\u202ecreated", Handler: "created", Ingress: "nats", CorrelationID: hostileText, Stream: "USER_EVENTS",
		Stack: "goroutine 1 [running]:\n\tmain.go:1 " + hostileText + "\n"}, time.Hour)
	b.big = put(store.PoisonEntry{Payload: []byte(`{"id":"0d6c1d4e-34a4-4a49-9b5c-b2f1f1f6a001","bio":"` + strings.Repeat("a", 1<<20) + `"}`),
		Class: middleware.ClassPermanent, Reason: "body too large", Ingress: "http"}, 30*time.Minute)
	return b
}

// consoleClient is a browser as far as cookies go (it sends none of the
// headers a browser adds, so the cross-origin check lets it by, as it does
// curl).
type consoleClient struct {
	t *testing.T
	b *consoleBundle
	c *http.Client
}

func (b *consoleBundle) client(t *testing.T) *consoleClient {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &consoleClient{t: t, b: b, c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (c *consoleClient) do(req *http.Request) response {
	c.t.Helper()
	res, err := c.c.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	return response{res.StatusCode, res.Header, string(body)}
}

func (c *consoleClient) get(path string) response {
	c.t.Helper()
	req, err := http.NewRequestWithContext(c.t.Context(), "GET", c.b.srv.URL+path, nil)
	if err != nil {
		c.t.Fatal(err)
	}
	return c.do(req)
}

// post sends form; headers are extra request headers (Origin, Sec-Fetch-Site).
func (c *consoleClient) post(path string, form url.Values, headers ...string) response {
	c.t.Helper()
	req, err := http.NewRequestWithContext(c.t.Context(), "POST", c.b.srv.URL+path, strings.NewReader(form.Encode()))
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	return c.do(req)
}

// login logs in with the token (when the bundle has one) and returns the
// session's CSRF token, read from the list page as a browser would.
func (c *consoleClient) login() string {
	c.t.Helper()
	if c.b.token != "" {
		if r := c.post("/admin/ui/login", url.Values{"token": {c.b.token}}); r.code != http.StatusSeeOther {
			c.t.Fatalf("login = %d %s", r.code, r.body)
		}
	}
	r := c.get("/admin/ui/")
	if r.code != 200 {
		c.t.Fatalf("list after login = %d %s", r.code, r.body)
	}
	return csrfOf(c.t, r.body)
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func csrfOf(t *testing.T, page string) string {
	t.Helper()
	m := csrfField.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no csrf field in the page:\n%s", page)
	}
	return m[1]
}

func (b *consoleBundle) exists(t *testing.T, id string) bool {
	t.Helper()
	return exists(t, b.db, id)
}

func TestConsoleSecurityHeaders(t *testing.T) {
	t.Parallel()
	b := setupConsole(t, "s3cret")
	c := b.client(t)
	csrf := c.login()
	for what, r := range map[string]response{
		"list":       c.get("/admin/ui/"),
		"entry":      c.get("/admin/ui/entry/" + b.valid.ID),
		"unknown":    c.get("/admin/ui/entry/00000000-0000-4000-8000-000000000000"),
		"bad id":     c.get("/admin/ui/entry/%E2%80%AE"),
		"payload":    c.get("/admin/ui/entry/" + b.script.ID + "/payload"),
		"css":        c.get("/admin/ui/console.css"),
		"login":      b.client(t).get("/admin/ui/login"),
		"no csrf":    c.post("/admin/ui/delete", url.Values{"scope": {"ids"}, "id": {b.bad.ID}}),
		"dry run":    c.post("/admin/ui/replay", url.Values{"csrf": {csrf}, "scope": {"ids"}, "id": {b.valid.ID}}),
		"cross":      c.post("/admin/ui/delete", url.Values{"csrf": {csrf}, "scope": {"ids"}, "id": {b.bad.ID}}, "Sec-Fetch-Site", "cross-site"),
		"logged out": b.client(t).get("/admin/ui/"),
	} {
		want := map[string]string{
			"Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
			"X-Content-Type-Options":  "nosniff",
			"Referrer-Policy":         "same-origin",
			"X-Frame-Options":         "DENY",
			"Cache-Control":           "no-store",
		}
		for k, v := range want {
			if got := r.header.Get(k); got != v {
				t.Errorf("%s (%d): %s = %q, want %q", what, r.code, k, got, v)
			}
		}
	}
	r := c.get("/admin/ui/entry/" + b.script.ID + "/payload")
	if r.code != 200 || r.body != scriptPayload || r.header.Get("Content-Type") != "application/octet-stream" ||
		r.header.Get("Content-Disposition") != `attachment; filename=poison-`+b.script.ID+`.bin` {
		t.Errorf("payload download = %d %v %q", r.code, r.header, r.body)
	}
	if r := c.get("/admin/ui/entry/" + b.big.ID + "/payload"); len(r.body) != len(b.big.Payload) {
		t.Errorf("download of a 1 MiB payload has %d bytes, want %d", len(r.body), len(b.big.Payload))
	}
}

func TestConsoleLogin(t *testing.T) {
	t.Parallel()
	b := setupConsole(t, "s3cret")
	c := b.client(t)
	for _, path := range []string{"/admin/ui/", "/admin/ui/entry/" + b.valid.ID, "/admin/ui/entry/" + b.valid.ID + "/payload"} {
		if r := c.get(path); r.code != http.StatusSeeOther || r.header.Get("Location") != "/admin/ui/login" {
			t.Errorf("GET %s without a session = %d %q, want a redirect to the login", path, r.code, r.header.Get("Location"))
		}
	}
	// The bearer header is the API's; the console takes the token by its form.
	req, _ := http.NewRequestWithContext(t.Context(), "GET", b.srv.URL+"/admin/ui/", nil)
	req.Header.Set("Authorization", "Bearer s3cret")
	if r := c.do(req); r.code != http.StatusSeeOther {
		t.Errorf("console with a bearer header = %d, want the login", r.code)
	}
	for _, wrong := range []string{"", "s3cre", "s3cret2", "S3CRET"} {
		r := c.post("/admin/ui/login", url.Values{"token": {wrong}})
		if r.code != http.StatusUnauthorized || len(r.header.Values("Set-Cookie")) > 0 || !strings.Contains(r.body, "not the admin token") {
			t.Errorf("login with %q = %d, cookies %v", wrong, r.code, r.header.Values("Set-Cookie"))
		}
	}
	r := c.post("/admin/ui/login", url.Values{"token": {"s3cret"}})
	if r.code != http.StatusSeeOther || r.header.Get("Location") != "/admin/ui/" {
		t.Fatalf("login = %d %q", r.code, r.header.Get("Location"))
	}
	cookie := r.header.Get("Set-Cookie")
	for _, attr := range []string{"poison_console=", "Path=/admin/ui", "HttpOnly", "SameSite=Strict"} {
		if !strings.Contains(cookie, attr) {
			t.Errorf("session cookie %q lacks %s", cookie, attr)
		}
	}
	if strings.Contains(cookie, "s3cret") {
		t.Errorf("session cookie %q holds the token", cookie)
	}
	list := c.get("/admin/ui/")
	if list.code != 200 || !strings.Contains(list.body, b.valid.ID[:8]) || !strings.Contains(list.body, "Log out") {
		t.Fatalf("list after login = %d", list.code)
	}

	// A cookie changed by hand is no session.
	u, _ := url.Parse(b.srv.URL + "/admin/ui/")
	ck := c.c.Jar.Cookies(u)[0]
	forged := *ck
	forged.Value = otherFirst(ck.Value)
	other := b.client(t)
	other.c.Jar.SetCookies(u, []*http.Cookie{&forged})
	if r := other.get("/admin/ui/"); r.code != http.StatusSeeOther {
		t.Errorf("forged session cookie = %d, want the login", r.code)
	}
	// Sessions end.
	later := time.Now().Add(13 * time.Hour)
	b.now.Store(&later)
	if r := c.get("/admin/ui/"); r.code != http.StatusSeeOther {
		t.Errorf("13 h after login = %d, want the login", r.code)
	}
	now := time.Now()
	b.now.Store(&now)

	csrf := csrfOf(t, list.body)
	if r := c.post("/admin/ui/logout", url.Values{"csrf": {csrf}}); r.code != http.StatusSeeOther || r.header.Get("Location") != "/admin/ui/login" {
		t.Errorf("logout = %d %q", r.code, r.header.Get("Location"))
	}
	if r := c.get("/admin/ui/"); r.code != http.StatusSeeOther {
		t.Errorf("after logout = %d, want the login", r.code)
	}
}

// otherFirst returns s with another first character. A fixed one ("A" or
// "x") leaves one random token in 64 as it was, and a test built on it
// failed then.
func otherFirst(s string) string {
	if s[0] == 'A' {
		return "B" + s[1:]
	}
	return "A" + s[1:]
}

// TestConsoleCSRF: an action needs the session's own CSRF token, and an
// action refused changes nothing.
func TestConsoleCSRF(t *testing.T) {
	t.Parallel()
	b := setupConsole(t, "s3cret")
	c := b.client(t)
	csrf := c.login()
	otherCSRF := b.client(t).login()
	if otherCSRF == csrf {
		t.Fatal("two sessions share a CSRF token")
	}
	del := func(token string) url.Values {
		v := url.Values{"scope": {"ids"}, "id": {b.bad.ID}, "confirm": {"yes"}}
		if token != "" {
			v.Set("csrf", token)
		}
		return v
	}
	for what, form := range map[string]url.Values{
		"without a token":          del(""),
		"with a wrong token":       del(otherFirst(csrf)),
		"with another's token":     del(otherCSRF),
		"with the token truncated": del(csrf[:len(csrf)-1]),
	} {
		if r := c.post("/admin/ui/delete", form); r.code != http.StatusForbidden || !strings.Contains(r.body, "CSRF token is missing or wrong") {
			t.Errorf("delete %s = %d, want 403", what, r.code)
		}
	}
	for _, path := range []string{"/admin/ui/replay", "/admin/ui/logout"} {
		if r := c.post(path, url.Values{"scope": {"ids"}, "id": {b.valid.ID}, "confirm": {"yes"}}); r.code != http.StatusForbidden {
			t.Errorf("POST %s without a token = %d, want 403", path, r.code)
		}
	}
	if !b.exists(t, b.bad.ID) || !b.exists(t, b.valid.ID) || pipelinetest.CountCommands(t, b.db) != 0 {
		t.Fatal("a refused action changed the queue")
	}
	// Without a session (logged out, or another browser) nothing passes either.
	if r := b.client(t).post("/admin/ui/delete", del(csrf)); r.code != http.StatusUnauthorized {
		t.Errorf("delete without a session = %d, want 401", r.code)
	}
	if r := c.post("/admin/ui/delete", del(csrf)); r.code != 200 || b.exists(t, b.bad.ID) {
		t.Errorf("delete with the token = %d; entry still there: %v", r.code, b.exists(t, b.bad.ID))
	}
}

// TestConsoleCrossOrigin: a console form posted from another origin is
// refused, with the right CSRF token too, and so is the login; the
// console's own posts (same-origin) pass.
func TestConsoleCrossOrigin(t *testing.T) {
	t.Parallel()
	for _, token := range []string{"", "s3cret"} {
		b := setupConsole(t, token)
		c := b.client(t)
		csrf := c.login()
		for _, h := range crossOriginHeaders(b.srv.URL) {
			form := url.Values{"csrf": {csrf}, "scope": {"ids"}, "id": {b.bad.ID}, "confirm": {"yes"}}
			if r := c.post("/admin/ui/delete", form, h...); r.code != http.StatusForbidden || !strings.Contains(r.body, "cross-origin") {
				t.Errorf("token %q: console delete with %v = %d, want 403", token, h, r.code)
			}
			if r := c.post("/admin/ui/login", url.Values{"token": {"s3cret"}}, h...); r.code != http.StatusForbidden {
				t.Errorf("token %q: console login with %v = %d, want 403", token, h, r.code)
			}
		}
		if !b.exists(t, b.bad.ID) {
			t.Fatalf("token %q: a cross-origin request deleted an entry", token)
		}
		form := url.Values{"csrf": {csrf}, "scope": {"ids"}, "id": {b.bad.ID}}
		if r := c.post("/admin/ui/delete", form, "Sec-Fetch-Site", "same-origin", "Origin", b.srv.URL); r.code != 200 {
			t.Errorf("token %q: same-origin delete preview = %d", token, r.code)
		}
	}
}

// TestConsoleWithoutTokenOnlyOnLoopback: without ADMIN_TOKEN a first visit
// opens a session, so only a loopback name may (a DNS name rebound to
// 127.0.0.1 would otherwise get one).
func TestConsoleWithoutTokenOnlyOnLoopback(t *testing.T) {
	t.Parallel()
	b := setupConsole(t, "")
	c := b.client(t)
	if r := c.get("/admin/ui/"); r.code != 200 || !strings.Contains(r.header.Get("Set-Cookie"), "poison_console=") || strings.Contains(r.body, "Log out") {
		t.Errorf("first visit without a token = %d, cookie %q", r.code, r.header.Get("Set-Cookie"))
	}
	if r := c.get("/admin/ui/login"); r.code != http.StatusSeeOther {
		t.Errorf("login without a token = %d, want a redirect to the list", r.code)
	}
	for _, host := range []string{"rebound.example:8081", "10.0.0.5:8081", "rebound.example"} {
		req, _ := http.NewRequestWithContext(t.Context(), "GET", b.srv.URL+"/admin/ui/", nil)
		req.Host = host
		if r := c.do(req); r.code != http.StatusForbidden || len(r.header.Values("Set-Cookie")) > 0 || !strings.Contains(r.body, "ADMIN_TOKEN") {
			t.Errorf("Host %s without a token = %d, cookies %v", host, r.code, r.header.Values("Set-Cookie"))
		}
	}
	for _, host := range []string{"localhost:8081", "[::1]:8081", "127.0.0.1", "localhost"} {
		req, _ := http.NewRequestWithContext(t.Context(), "GET", b.srv.URL+"/admin/ui/", nil)
		req.Host = host
		if r := c.do(req); r.code != 200 {
			t.Errorf("Host %s without a token = %d, want 200", host, r.code)
		}
	}
}

// unsafeRaw finds what no console page may carry raw: a bidi override, a
// terminal escape, a NUL, the hostile markup unescaped.
var unsafeRaw = regexp.MustCompile("[\u202e\x1b\x00]|<script|<img|<i>|<b>|onerror=\"")

// TestConsoleEscapesEverything renders every page that shows an entry and
// checks that nothing hostile reaches it raw, and that it is all shown.
func TestConsoleEscapesEverything(t *testing.T) {
	t.Parallel()
	b := setupConsole(t, "s3cret")
	c := b.client(t)
	csrf := c.login()
	all := []string{b.bidi.ID, b.script.ID, b.img.ID}
	pages := map[string]response{
		"list":           c.get("/admin/ui/"),
		"list panic":     c.get("/admin/ui/?class=panic"),
		"bidi entry":     c.get("/admin/ui/entry/" + b.bidi.ID),
		"script":         c.get("/admin/ui/entry/" + b.script.ID),
		"img":            c.get("/admin/ui/entry/" + b.img.ID),
		"delete preview": c.post("/admin/ui/delete", url.Values{"csrf": {csrf}, "scope": {"ids"}, "id": all}),
		"dry run":        c.post("/admin/ui/replay", url.Values{"csrf": {csrf}, "scope": {"ids"}, "id": all}),
		"bad filter":     c.get("/admin/ui/?subject=%1B%E2%80%AE&since=%3Cscript%3E"),
		"bad id":         c.get("/admin/ui/entry/%E2%80%AE%3Cscript%3E"),
	}
	for what, r := range pages {
		if r.code != 200 && !strings.HasPrefix(what, "bad") {
			t.Errorf("%s: status %d", what, r.code)
		}
		// The list's filter inputs echo what was typed, as it was typed
		// (so that the filter round-trips); only there may it stand.
		body := regexp.MustCompile(`value="[^"]*"`).ReplaceAllString(r.body, "")
		if m := unsafeRaw.FindString(body); m != "" {
			i := strings.Index(body, m)
			t.Errorf("%s: %q raw in the page: …%s…", what, m, body[max(0, i-200):min(len(body), i+200)])
		}
	}
	entry := pages["bidi entry"].body
	for _, want := range []string{
		`evil\u202etxt.exe \x1b[31mred\x1b[0m &lt;i&gt;markup&lt;/i&gt;`, // reason, correlation id, stack
		`user.events.\u202ecreated`,                                      // subject
		"goroutine 1 [running]:\n\tmain.go:1",                            // the stack keeps its layout
	} {
		if !strings.Contains(entry, want) {
			t.Errorf("entry page does not show %q", want)
		}
	}
	if !strings.Contains(pages["script"].body, `&lt;script&gt;document.title=&#39;pwned&#39;;window.pwned=1&lt;/script&gt;`) {
		t.Errorf("script payload not shown as text")
	}
	if !strings.Contains(pages["img"].body, `&lt;img src=x onerror=\&#34;document.title=&#39;pwned&#39;\&#34;&gt;`) {
		t.Errorf("img payload not shown as text:\n%s", pages["img"].body)
	}
}

func TestConsolePayloadViews(t *testing.T) {
	t.Parallel()
	b := setupConsole(t, "")
	c := b.client(t)
	c.login()
	valid := c.get("/admin/ui/entry/" + b.valid.ID).body
	if !strings.Contains(valid, "{\n  &#34;id&#34;: &#34;78af4bc4-afce-4676-b373-5b802a2dfd2e&#34;,\n  &#34;email&#34;") || strings.Contains(valid, `id="hex"`) {
		t.Errorf("JSON payload is not pretty-printed (or has a hex dump)")
	}
	for _, want := range []string{"corr-valid", "USER_EVENTS", ">42<", ">3<", "transient_exhausted", "commit: database is locked"} {
		if !strings.Contains(valid, want) {
			t.Errorf("entry page lacks %q", want)
		}
	}
	script := c.get("/admin/ui/entry/" + b.script.ID).body
	if dump := strings.ReplaceAll(hex.Dump([]byte(scriptPayload))[:60], "<", "&lt;"); !strings.Contains(script, dump) {
		t.Errorf("non-JSON payload has no hex dump %q", dump)
	}
	if !strings.Contains(script, "no NATS subject: it came in by http") {
		t.Errorf("HTTP entry does not say it has no subject")
	}
	big := c.get("/admin/ui/entry/" + b.big.ID)
	if big.code != 200 || len(big.body) > 100<<10 || !strings.Contains(big.body, "Showing the first 64 KiB") || !strings.Contains(big.body, fmt.Sprintf("all %d bytes", len(b.big.Payload))) {
		t.Errorf("1 MiB entry page: %d, %d bytes", big.code, len(big.body))
	}
}

// TestConsoleBulk replays and deletes by selection and by filter, each
// after its confirmation step.
func TestConsoleBulk(t *testing.T) {
	t.Parallel()
	b := setupConsole(t, "")
	c := b.client(t)
	csrf := c.login()

	// The dry run of everything transient writes nothing; the replay does.
	form := url.Values{"csrf": {csrf}, "scope": {"matching"}, "filter": {"class=transient_exhausted"}}
	dry := c.post("/admin/ui/replay", form)
	if dry.code != 200 || !strings.Contains(dry.body, "would_commit") || !strings.Contains(dry.body, "nothing was written yet") ||
		!strings.Contains(dry.body, `name="confirm" value="yes"`) || pipelinetest.CountCommands(t, b.db) != 0 || !b.exists(t, b.valid.ID) {
		t.Fatalf("dry run = %d, %d commands:\n%s", dry.code, pipelinetest.CountCommands(t, b.db), dry.body)
	}
	form.Set("confirm", "yes")
	done := c.post("/admin/ui/replay", form)
	if done.code != 200 || !strings.Contains(done.body, "committed") || pipelinetest.CountCommands(t, b.db) != 1 || b.exists(t, b.valid.ID) {
		t.Fatalf("replay = %d, %d commands:\n%s", done.code, pipelinetest.CountCommands(t, b.db), done.body)
	}

	// A selection: one that fails again stays, with the replay counted.
	sel := url.Values{"csrf": {csrf}, "scope": {"ids"}, "id": {b.bad.ID, b.img.ID}, "confirm": {"yes"}}
	if r := c.post("/admin/ui/replay", sel); r.code != 200 || !strings.Contains(r.body, `<td class="n">2</td><td class="result-still_failing">still_failing</td>`) {
		t.Errorf("replay of a selection = %d:\n%s", r.code, r.body)
	}
	if e, _ := b.db.GetPoisonSummary(t.Context(), b.bad.ID); e.Replays != 1 {
		t.Errorf("failed replay not counted: %+v", e)
	}

	// Delete everything permanent: first what it would remove, then that.
	del := url.Values{"csrf": {csrf}, "scope": {"matching"}, "filter": {"class=permanent"}}
	preview := c.post("/admin/ui/delete", del)
	if preview.code != 200 || !strings.Contains(preview.body, "<strong>4 entries</strong> will be deleted") {
		t.Fatalf("delete preview = %d:\n%s", preview.code, preview.body)
	}
	if n, _ := b.db.CountPoison(t.Context()); n != 5 {
		t.Fatalf("the preview deleted: %d entries left", n)
	}
	del.Set("confirm", "yes")
	if r := c.post("/admin/ui/delete", del); r.code != 200 || !strings.Contains(r.body, "4 entries deleted") {
		t.Errorf("delete matching = %d:\n%s", r.code, r.body)
	}
	if n, _ := b.db.CountPoison(t.Context()); n != 1 || !b.exists(t, b.bidi.ID) {
		t.Errorf("%d entries left, want only the panic", n)
	}

	for what, form := range map[string]url.Values{
		"nothing ticked": {"csrf": {csrf}, "scope": {"ids"}},
		"a bad id":       {"csrf": {csrf}, "scope": {"ids"}, "id": {"%%%%%%%%"}},
		"a bad filter":   {"csrf": {csrf}, "scope": {"matching"}, "filter": {"clas=panic"}},
		"a bad scope":    {"csrf": {csrf}, "scope": {"everything"}},
	} {
		if r := c.post("/admin/ui/delete", form); r.code != 400 {
			t.Errorf("delete with %s = %d, want 400", what, r.code)
		}
	}
	if n, _ := b.db.CountPoison(t.Context()); n != 1 {
		t.Errorf("a refused delete deleted: %d left", n)
	}
}

// TestConsoleList: filters, counts and paging.
func TestConsoleList(t *testing.T) {
	t.Parallel()
	b := setupConsole(t, "")
	c := b.client(t)
	c.login()
	// The counts are on the page when they were taken within
	// consoleStatsWait; on a loaded machine they come on a later load.
	var all string
	routertest.Eventually(t, 30*time.Second, "the list with its counts", func() bool {
		all = c.get("/admin/ui/").body
		return strings.Contains(all, `id="stats-at"`)
	})
	for _, want := range []string{`<strong id="total">6</strong>`, `href="/admin/ui/?class=permanent">permanent</a>`, `<td class="n">4</td>`} {
		if !strings.Contains(all, want) {
			t.Errorf("list lacks %q", want)
		}
	}
	filtered := c.get("/admin/ui/?class=transient_exhausted&correlation_id=corr-valid&since=1d&ingress=nats").body
	if !strings.Contains(filtered, `<strong id="total">1</strong>`) || !strings.Contains(filtered, b.valid.ID[:8]) || strings.Contains(filtered, b.bad.ID[:8]) {
		t.Errorf("filtered list is not the valid entry alone")
	}
	if r := c.get("/admin/ui/?user_id=nope"); r.code != 400 || !strings.Contains(r.body, "user_id=&#34;nope&#34;: must be a user id") {
		t.Errorf("bad filter = %d", r.code)
	}
	// Paging by cursor: two a page, every entry once.
	seen := map[string]bool{}
	next := "/admin/ui/?limit=2"
	for pages := 0; next != ""; pages++ {
		if pages > 5 {
			t.Fatal("paging does not end")
		}
		r := c.get(strings.ReplaceAll(next, "&amp;", "&"))
		if r.code != 200 {
			t.Fatalf("%s = %d", next, r.code)
		}
		for _, m := range regexp.MustCompile(`<tr data-id="([^"]+)">`).FindAllStringSubmatch(r.body, -1) {
			if seen[m[1]] {
				t.Errorf("%s listed twice", m[1])
			}
			seen[m[1]] = true
		}
		next = ""
		if m := regexp.MustCompile(`href="([^"]+)" id="next-page"`).FindStringSubmatch(r.body); m != nil {
			next = m[1]
		}
	}
	if len(seen) != 6 {
		t.Errorf("paging showed %d entries, want 6", len(seen))
	}
}

func TestConsoleVisible(t *testing.T) {
	t.Parallel()
	b := setupConsole(t, "")
	c := b.client(t)
	c.login()
	// visible is unexported; its outcome is seen on a page.
	for in, want := range map[string]string{
		"plain":           "plain",
		"a\u202eb":        `a\u202eb`,
		"\x1b[2J":         `\x1b[2J`,
		"zero\u200bwidth": `zero\u200bwidth`,
		"line\u2028sep":   `line\u2028sep`,
		"bom\ufeff":       `bom\ufeff`,
		"c1\u0085":        `c1\u0085`,
		"tab\there":       `tab\there`,
		"ünïcødé ✓":       "ünïcødé ✓",
	} {
		e := store.PoisonEntry{ID: middleware.PoisonID("x", []byte(in)), Payload: []byte("x"), Class: "permanent", Reason: in}
		if err := b.db.PutPoison(t.Context(), e); err != nil {
			t.Fatal(err)
		}
		page := c.get("/admin/ui/entry/" + e.ID).body
		if !strings.Contains(page, `<dd id="reason">`+want+`</dd>`) {
			i := strings.Index(page, `<dd id="reason">`)
			t.Errorf("reason %q shown as %s, want %s", in, page[i:i+60], want)
		}
	}
	// Invalid UTF-8 can only be in a payload (metadata is JSON).
	e := store.PoisonEntry{ID: middleware.PoisonID("x", []byte("bad\xffutf8")), Payload: []byte("bad\xffutf8"), Class: "permanent"}
	if err := b.db.PutPoison(t.Context(), e); err != nil {
		t.Fatal(err)
	}
	if page := c.get("/admin/ui/entry/" + e.ID).body; !strings.Contains(page, `<pre id="payload">bad\xffutf8</pre>`) {
		t.Errorf("invalid UTF-8 in a payload is not shown as an escape")
	}
}
