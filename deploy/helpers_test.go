package deploy_test

// What the checks need to run what a deploy file starts: the router
// in-process through cli.Run, as main runs it (the metrics the alert rules
// and the dashboard name, alerts_test.go), a nats-server from a
// configuration file (compose's, deploy_test.go), and a GET. The
// end-to-end tests' harness in e2e/ has the same helpers and more; test
// files cannot be imported across packages, so these are copies of the
// few the deploy checks use.

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/social/user-events-router/cli"
	"github.com/social/user-events-router/router/admin"
	"github.com/social/user-events-router/router/ingress"
	"github.com/social/user-events-router/router/routertest"
	"github.com/social/user-events-router/store"
)

// producerPayload is byte for byte what the real Auth Service sends.
const producerPayload = `{"id":"78af4bc4-afce-4676-b373-5b802a2dfd2e","email":"alice@example.com","username":"alice01","action":"created","request_id":"","timestamp":"2026-11-28T13:28:17Z","service_name":"gofiber-auth"}`

// eventFor is the producer payload with another action (and user).
func eventFor(action, userID string) string {
	s := strings.Replace(producerPayload, `"action":"created"`, `"action":"`+action+`"`, 1)
	return strings.Replace(s, "78af4bc4-afce-4676-b373-5b802a2dfd2e", userID, 1)
}

// syncBuffer collects the router's log lines for the test to print on failure.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startRouter runs `serve` with env until the test ends, and then checks
// that it shut down cleanly.
func startRouter(t *testing.T, env map[string]string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done, logs := make(chan error, 1), &syncBuffer{}
	go func() { done <- cli.Run(ctx, nil, func(k string) string { return env[k] }, logs, logs) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("router exited with error: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("router did not stop within 30s")
		}
		if t.Failed() {
			t.Logf("router logs:\n%s", logs.String())
		}
	})
}

// freeAddr returns a loopback address with a port free right now.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// ingressEnv is the configuration of a router under test, with the HTTP
// ingress on a free port, and the URL the Auth Service would post to.
func ingressEnv(t *testing.T, natsURL, dbURL string) (map[string]string, string) {
	t.Helper()
	addr := freeAddr(t)
	return map[string]string{
		"NATS_URL":               natsURL,
		"DATABASE_URL":           dbURL,
		"DATA_DIR":               t.TempDir(),
		"LOG_LEVEL":              "debug",
		"NAK_DELAY":              "50ms",
		"NAK_DELAY_MAX":          "200ms",
		"RETRY_INITIAL_INTERVAL": "10ms",
		"CLOSE_TIMEOUT":          "10s",
		"HTTP_ADDR":              addr,
		"ADMIN_ADDR":             "127.0.0.1:0",
	}, "http://" + addr + ingress.Path
}

// waitForIngress waits until the router's HTTP ingress answers.
func waitForIngress(t *testing.T, ingressURL string) {
	t.Helper()
	routertest.Eventually(t, 20*time.Second, "the HTTP ingress at "+ingressURL, func() bool {
		resp, err := http.Get(ingressURL)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusMethodNotAllowed
	})
}

// waitForConsumer waits until the router has bound (or created) its durable.
func waitForConsumer(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	routertest.Eventually(t, 20*time.Second, "the durable consumer", func() bool {
		_, err := js.PushConsumer(context.Background(), "USER_EVENTS", "social-backend-consumer")
		return err == nil
	})
}

// postOnce is one try of the Auth Service's HTTP fallback; it returns the
// status.
func postOnce(t *testing.T, url string, body []byte) int {
	t.Helper()
	resp, err := http.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// openDB opens the router's database from the test side, creating the
// tables if the router has not yet, so queries never race its start-up.
func openDB(t *testing.T, url string) *store.DB {
	t.Helper()
	db, err := store.Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.InitSchema(context.Background(), store.CommandsTopic, store.PoisonTopic); err != nil {
		t.Fatal(err)
	}
	return db
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// getStatus reads /status.
func getStatus(t *testing.T, addr string) admin.Status {
	t.Helper()
	code, body := httpGet(t, "http://"+addr+"/status")
	if code != http.StatusOK {
		t.Fatalf("/status = %d %s", code, body)
	}
	var st admin.Status
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("/status is not its JSON: %v\n%s", err, body)
	}
	return st
}

// processConf reads the server configuration at path and overrides what a
// test cannot share: a random loopback port, a store in a temporary
// directory, no signal handlers, no log.
func processConf(t *testing.T, path string) *server.Options {
	t.Helper()
	opts, err := server.ProcessConfigFile(path)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	opts.Host, opts.Port = "127.0.0.1", server.RANDOM_PORT
	opts.StoreDir = t.TempDir()
	opts.NoSigs, opts.NoLog = true, true
	return opts
}

// startConfiguredServer starts a server from opts and stops it when the test ends.
func startConfiguredServer(t *testing.T, opts *server.Options) *server.Server {
	t.Helper()
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("nats server: %v", err)
	}
	go srv.Start()
	t.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready within 10s")
	}
	if !srv.JetStreamEnabled() {
		t.Fatal("JetStream is not enabled")
	}
	return srv
}
