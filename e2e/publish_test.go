package e2e

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/social/user-events-router/cli"
	"github.com/social/user-events-router/router/routertest"
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
