package ingress_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/social/user-events-router/router/ingress"
	"github.com/social/user-events-router/schema"
	"github.com/social/user-events-router/store"
	"github.com/social/user-events-router/store/storetest"
)

// validHeaderValue reports whether v reads back unchanged in any HTTP/1.1
// client: visible ASCII, inner spaces, nothing to trim at either end.
func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if v[i] < 0x20 || v[i] > 0x7e {
			return false
		}
	}
	return v == strings.TrimSpace(v)
}

// hostileRequestIDs are request_id values as raw JSON, as a broken or
// hostile producer could send them, and the correlation id each becomes.
var hostileRequestIDs = []struct{ name, raw, want string }{
	{"NUL", `"r\u0000"`, `r\x00`},
	{"ESC", `"\u001b[2J\u001b]0;pwned\u0007"`, `\x1b[2J\x1b]0;pwned\a`},
	{"CR LF", `"r\r\nSet-Cookie: x=1"`, `r\r\nSet-Cookie: x=1`},
	{"U+202E", `"r\u202e1"`, `r\u202e1`},
	{"non-ASCII", `"réq-ü-😀"`, "réq-ü-😀"},
	{"1 KB", `"` + strings.Repeat("r", 1<<10) + `"`, strings.Repeat("r", 128)},
	{"600 ESC", `"` + strings.Repeat(`\u001b`, 600) + `"`, strings.Repeat(`\x1b`, 32)},
	{"1 KB non-ASCII", `"` + strings.Repeat("é", 1<<9) + `"`, strings.Repeat("é", 64)},
	{"edge spaces", `" r "`, " r "},
	{"lone surrogate", `"r\ud800"`, `r\ud800`},
	{"backslash", `"r\\x1b"`, `r\x1b`},
	{"DEL and C1", `"r\u007f\u0085"`, `r\x7f\u0085`},
	{"zero-width, BOM", `"r\u200b\ufeff"`, `r\u200b\ufeff`},
}

// Every X-Request-ID the ingress sends parses in Go's own HTTP client (as
// the Auth Service's does) and reads back as the correlation id, and the
// event is committed: an answer the client cannot parse would count a
// committed event as failed.
func TestIngressRequestIDReachesTheClientIntact(t *testing.T) {
	t.Parallel()
	b := setupIngress(t, storetest.Open(t, store.SQLite), ingressSetup{})
	srv := httptest.NewServer(b.handler)
	t.Cleanup(srv.Close)

	i := 0
	want := map[string]string{} // user id → correlation id
	for _, tt := range hostileRequestIDs {
		i++
		user := fmt.Sprintf("%08d-0000-4000-8000-000000000000", i)
		body := event("78af4bc4-afce-4676-b373-5b802a2dfd2e", user, `"request_id":""`, `"request_id":`+tt.raw)
		resp, err := srv.Client().Post(srv.URL+ingress.Path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Errorf("%s: Go's HTTP client cannot read the answer: %v", tt.name, err)
			continue
		}
		data, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var rep ingressReply
		if err := json.Unmarshal(data, &rep); err != nil || resp.StatusCode != http.StatusOK {
			t.Errorf("%s: %d %s", tt.name, resp.StatusCode, data)
			continue
		}
		if rep.CorrelationID != tt.want {
			t.Errorf("%s: correlation id %q, want %q", tt.name, rep.CorrelationID, tt.want)
		}
		h := resp.Header.Get("X-Request-ID")
		if !validHeaderValue(h) || h != schema.PrintableASCII(rep.CorrelationID, 1<<10) {
			t.Errorf("%s: X-Request-ID %q for correlation id %q", tt.name, h, rep.CorrelationID)
		}
		want[user] = rep.CorrelationID
	}
	for _, c := range commandPayloads(t, b.db) {
		user := fmt.Sprint(c["user_id"])
		src, _ := c["source"].(map[string]any)
		if c["correlation_id"] != want[user] || src["request_id"] != want[user] {
			t.Errorf("command of %s: correlation_id %v, source.request_id %v; want both %q", user, c["correlation_id"], src["request_id"], want[user])
		}
		delete(want, user)
	}
	if len(want) > 0 {
		t.Errorf("no command for %v", want)
	}
}

// The caller's own X-Request-ID, sent as raw bytes no Go client would
// write: whatever the server makes of the request, its answer parses, and
// an unfit id is never echoed.
func TestIngressHostileRequestIDHeader(t *testing.T) {
	t.Parallel()
	b := setupIngress(t, storetest.Open(t, store.SQLite), ingressSetup{})
	srv := httptest.NewServer(b.handler)
	t.Cleanup(srv.Close)

	for i, id := range []string{
		"req-1", "r\x00", "\x1b[2J", "r\u202e1", "réq", strings.Repeat("r", 1<<10), "two words", "r\x7f", "r\tq",
		"r\r\nX-Evil: 1", // two header lines: the id is "r"
	} {
		body := event("78af4bc4-afce-4676-b373-5b802a2dfd2e", fmt.Sprintf("%08d-0000-4000-8000-0000000000ff", i))
		resp := rawPost(t, srv.Listener.Addr().String(), "X-Request-ID: "+id, body)
		h := resp.Header.Get("X-Request-ID")
		switch {
		case resp.StatusCode == http.StatusBadRequest && h == "":
			// net/http refused the request before the ingress saw it.
		case resp.StatusCode != http.StatusOK:
			t.Errorf("X-Request-ID %q: status %d", id, resp.StatusCode)
		case !validHeaderValue(h):
			t.Errorf("X-Request-ID %q echoed as %q", id, h)
		case h != strings.TrimSpace(strings.SplitN(id, "\r\n", 2)[0]):
			if _, err := uuid.Parse(h); err != nil {
				t.Errorf("X-Request-ID %q: answer's id %q is neither it nor a minted one", id, h)
			}
		}
	}
}

// rawPost writes one HTTP/1.1 request with a header line as given, bytes
// and all, and reads the answer with Go's HTTP client code.
func rawPost(t *testing.T, addr, headerLine, body string) *http.Response {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if err := conn.SetDeadline(time.Now().Add(30 * time.Second)); err != nil {
		t.Fatal(err)
	}
	req := "POST " + ingress.Path + " HTTP/1.1\r\nHost: router\r\nContent-Type: application/json\r\nConnection: close\r\n" +
		headerLine + "\r\n" + fmt.Sprintf("Content-Length: %d\r\n\r\n", len(body)) + body
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("header line %q: Go's HTTP client cannot read the answer: %v", headerLine, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}
