package e2e

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/social/user-events-router/cli"
	"github.com/social/user-events-router/router/routertest"
	"github.com/social/user-events-router/store"
	"github.com/social/user-events-router/store/storetest"
)

// runHealthcheck runs `healthcheck args…` as main would and returns the
// exit status and what it printed.
func runHealthcheck(t *testing.T, env map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut syncBuffer
	err := cli.Run(context.Background(), append([]string{"healthcheck"}, args...), func(k string) string { return env[k] }, &out, &errOut)
	return cli.ExitCode(err, &errOut), out.String(), errOut.String()
}

func TestHealthcheckAnswers(t *testing.T) {
	t.Parallel()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "not ready: database: table watermill_profile_sync_commands: no such table\x1b[2J", http.StatusServiceUnavailable)
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	notReady := httptest.NewServer(mux)
	t.Cleanup(notReady.Close)

	ready := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	}))
	t.Cleanup(ready.Close)

	// A redirect is not followed: the answer must come from the router.
	redirect := httptest.NewServer(http.RedirectHandler(ready.URL+"/readyz", http.StatusFound))
	t.Cleanup(redirect.Close)

	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(slow.Close)
	t.Cleanup(func() { close(release) })

	addr := func(s *httptest.Server) string { return strings.TrimPrefix(s.URL, "http://") }
	port := func(s *httptest.Server) string { return addr(s)[strings.LastIndex(addr(s), ":"):] }
	tests := []struct {
		name   string
		env    map[string]string
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{name: "ready", env: map[string]string{"ADMIN_ADDR": addr(ready)}, code: 0, stdout: "200 OK: ok"},
		// ":port" listens on every interface; the probe asks loopback. The
		// image's ADMIN_ADDR has this form, so ADMIN_TOKEN is required.
		{name: "every interface", env: map[string]string{"ADMIN_ADDR": port(ready), "ADMIN_TOKEN": "t"}, code: 0, stdout: "http://127.0.0.1" + port(ready) + "/readyz"},
		{name: "-addr", args: []string{"-addr", addr(ready)}, code: 0, stdout: "200 OK"},
		{name: "not ready", env: map[string]string{"ADMIN_ADDR": addr(notReady)}, code: 1, stderr: `503 Service Unavailable: not ready: database: table watermill_profile_sync_commands: no such table\x1b[2J`},
		{name: "-live while not ready", env: map[string]string{"ADMIN_ADDR": addr(notReady)}, args: []string{"-live"}, code: 0, stdout: "/healthz: 200 OK"},
		{name: "redirect", env: map[string]string{"ADMIN_ADDR": addr(redirect)}, code: 1, stderr: "302 Found"},
		{name: "nobody listening", env: map[string]string{"ADMIN_ADDR": freeAddr(t)}, code: 1, stderr: "connection refused"},
		{name: "timeout", env: map[string]string{"ADMIN_ADDR": addr(slow)}, args: []string{"-timeout", "200ms"}, code: 1, stderr: "deadline exceeded"},
		{name: "random port", env: map[string]string{"ADMIN_ADDR": "127.0.0.1:0"}, code: 2, stderr: "no fixed port"},
		{name: "bad config", env: map[string]string{"ADMIN_ADDR": ":8081"}, code: 2, stderr: "ADMIN_TOKEN"},
		{name: "bad flag", args: []string{"-bogus"}, code: 2, stderr: "flag provided but not defined"},
		{name: "argument", args: []string{"now"}, code: 2, stderr: `unexpected argument "now"`},
		{name: "help", args: []string{"-h"}, code: 0, stdout: "-live"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			code, stdout, stderr := runHealthcheck(t, tt.env, tt.args...)
			if code != tt.code {
				t.Errorf("exit code %d, want %d (stdout %q, stderr %q)", code, tt.code, stdout, stderr)
			}
			if !strings.Contains(stdout, tt.stdout) || !strings.Contains(stderr, tt.stderr) {
				t.Errorf("stdout %q, stderr %q; want them to contain %q and %q", stdout, stderr, tt.stdout, tt.stderr)
			}
			if code != 0 && strings.Count(strings.TrimSpace(stderr), "\n") > 0 && tt.name != "bad flag" {
				t.Errorf("error is not one line: %q", stderr)
			}
			if strings.ContainsRune(stderr, 0x1b) {
				t.Errorf("the server's control character reached the terminal: %q", stderr)
			}
			if d := time.Since(start); tt.name == "timeout" && d > 2*time.Second {
				t.Errorf("-timeout 200ms: took %v", d)
			}
		})
	}
}

// TestHealthcheckAgainstServe asks a real router: ready once it runs,
// and not any more once it has stopped.
func TestHealthcheckAgainstServe(t *testing.T) {
	t.Parallel()
	srv := routertest.StartServer(t)
	env := testEnv(t, srv.URL, storetest.URL(t, store.SQLite))
	env["ADMIN_ADDR"] = freeAddr(t)
	p := startRouter(t, env)
	routertest.Eventually(t, 20*time.Second, "healthcheck to pass", func() bool {
		code, _, _ := runHealthcheck(t, env)
		return code == 0
	})
	if code, _, stderr := runHealthcheck(t, env, "-live"); code != 0 {
		t.Errorf("healthcheck -live = %d (%s), want 0", code, stderr)
	}
	p.stop(t)
	if code, _, _ := runHealthcheck(t, env); code != 1 {
		t.Errorf("healthcheck after the router stopped = %d, want 1", code)
	}
}
