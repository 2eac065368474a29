package e2e

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/social/user-events-router/cli"
	"github.com/social/user-events-router/router/routertest"
	"github.com/social/user-events-router/store"
	"github.com/social/user-events-router/store/storetest"
)

// poisonBody is a body the router can only poison: raw mode must carry it
// byte for byte, NUL and broken JSON included.
const poisonBody = "{\"id\":\"78af4bc4\x00\",\"action\":\"created\",\"email\":"

// TestPublishRawToNATS: -payload and -file reach the stream as given, on the
// given subject, -n times.
func TestPublishRawToNATS(t *testing.T) {
	t.Parallel()
	srv := routertest.StartServer(t)
	js := routertest.JetStream(t, srv.URL)
	if _, err := js.CreateStream(context.Background(), jetstream.StreamConfig{Name: "USER_EVENTS", Subjects: []string{"user.events.*"}}); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "entry.json")
	if err := os.WriteFile(file, []byte(poisonBody+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"DATA_DIR": t.TempDir()}
	for _, args := range [][]string{
		{"publish", "-nats", srv.URL, "-subject", "user.events.created", "-payload", poisonBody, "-n", "2"},
		{"publish", "-nats", srv.URL, "-subject", "user.events.bogus", "--file", file},
	} {
		var stdout, stderr syncBuffer
		if err := cli.Run(context.Background(), args, func(k string) string { return env[k] }, &stdout, &stderr); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, stderr.String())
		}
		if !strings.Contains(stdout.String(), "published") {
			t.Errorf("%v: stdout %q", args, stdout.String())
		}
	}
	want := []struct{ subject, body string }{
		{"user.events.created", poisonBody}, {"user.events.created", poisonBody}, {"user.events.bogus", poisonBody + "\n"},
	}
	s, err := js.Stream(context.Background(), "USER_EVENTS")
	if err != nil {
		t.Fatal(err)
	}
	for i, w := range want {
		m, err := s.GetMsg(context.Background(), uint64(i+1))
		if err != nil {
			t.Fatalf("message %d: %v", i+1, err)
		}
		if m.Subject != w.subject || string(m.Data) != w.body || len(m.Header) != 0 {
			t.Errorf("message %d: %s %q (headers %v), want %s %q and no headers", i+1, m.Subject, m.Data, m.Header, w.subject, w.body)
		}
	}
}

// TestPublishRawToHTTP: with -http the bytes are the POST body, with only
// the Auth Service's Content-Type.
func TestPublishRawToHTTP(t *testing.T) {
	t.Parallel()
	var (
		mu     sync.Mutex
		bodies []string
	)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies = append(bodies, r.Header.Get("Content-Type")+" "+string(b))
		mu.Unlock()
	}))
	t.Cleanup(ts.Close)
	var stdout, stderr syncBuffer
	env := map[string]string{"DATA_DIR": t.TempDir()}
	err := cli.Run(context.Background(), []string{"publish", "-http", ts.URL, "-payload", poisonBody}, func(k string) string { return env[k] }, &stdout, &stderr)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr.String())
	}
	mu.Lock()
	defer mu.Unlock()
	if len(bodies) != 1 || bodies[0] != "application/json "+poisonBody {
		t.Errorf("posted %q, want one application/json %q", bodies, poisonBody)
	}
}

// TestPublishToIngressWithToken: with INGRESS_TOKEN set on the router,
// publish -http sends the same INGRESS_TOKEN as its bearer token and the
// event is committed; without it, or with another, the 401 ends the run
// after one try (a token does not change between tries), saying what to
// set.
func TestPublishToIngressWithToken(t *testing.T) {
	t.Parallel()
	srv := routertest.StartServer(t)
	dbURL := storetest.URL(t, store.SQLite)
	env, ingressURL := ingressEnv(t, srv.URL, dbURL)
	env["INGRESS_TOKEN"] = "s3cret-ingress"
	startRouter(t, env)
	waitForIngress(t, ingressURL)
	db := openDB(t, dbURL)

	// In front of the router, counting the tries and the tokens sent.
	var (
		mu    sync.Mutex
		tries []string
	)
	target, err := url.Parse(ingressURL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: target.Scheme, Host: target.Host})
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		tries = append(tries, r.Header.Get("Authorization"))
		mu.Unlock()
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(front.Close)

	publish := func(token string) (string, error) {
		t.Helper()
		mu.Lock()
		tries = nil
		mu.Unlock()
		pubEnv := map[string]string{"DATA_DIR": t.TempDir(), "INGRESS_TOKEN": token}
		var stdout, stderr syncBuffer
		err := cli.Run(t.Context(), []string{"publish", "-http", front.URL + target.Path, "-n", "1", "-action", "created"}, func(k string) string { return pubEnv[k] }, &stdout, &stderr)
		return stdout.String() + stderr.String(), err
	}
	for _, tt := range []struct{ token, auth, want string }{
		{"", "", "set INGRESS_TOKEN to the router's"},
		{"not-the-t0ken", "Bearer not-the-t0ken", "INGRESS_TOKEN is not the router's"},
	} {
		out, err := publish(tt.token)
		if err == nil || !strings.Contains(err.Error(), "status 401") || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("publish with INGRESS_TOKEN=%q: err %v, want a 401 saying %q\n%s", tt.token, err, tt.want, out)
		}
		if tt.token != "" && (strings.Contains(out, tt.token) || strings.Contains(err.Error(), tt.token)) {
			t.Errorf("publish showed the token %q: %v\n%s", tt.token, err, out)
		}
		mu.Lock()
		if len(tries) != 1 || tries[0] != tt.auth {
			t.Errorf("publish with INGRESS_TOKEN=%q: tries with Authorization %q, want one with %q", tt.token, tries, tt.auth)
		}
		mu.Unlock()
	}
	if n := countCommands(t, db); n != 0 {
		t.Fatalf("%d commands from refused posts", n)
	}
	if out, err := publish("s3cret-ingress"); err != nil {
		t.Fatalf("publish with the router's token: %v\n%s", err, out)
	}
	if n := countCommands(t, db); n != 1 {
		t.Errorf("%d commands after a 200, want 1", n)
	}
}
