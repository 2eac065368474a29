package e2e

// The harness every end-to-end test builds on: the router (serve) and the
// other commands run in-process through cli.Run, as main runs them; the
// database read from the test side; the broker as the Auth Service and
// the monolith leave it. See doc.go for how to add a test.

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/social/user-events-router/cli"
	"github.com/social/user-events-router/router/broker"
	"github.com/social/user-events-router/router/routertest"
	"github.com/social/user-events-router/store"
)

// producerPayload is byte for byte what the real Auth Service sends (DESIGN §2).
const producerPayload = `{"id":"78af4bc4-afce-4676-b373-5b802a2dfd2e","email":"alice@example.com","username":"alice01","action":"created","request_id":"","timestamp":"2026-11-28T13:28:17Z","service_name":"gofiber-auth"}`

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

// routerProc is one router started in-process through cli.Run, as main does.
type routerProc struct {
	cancel context.CancelFunc
	done   chan error
	logs   *syncBuffer
}

// startRouter runs `serve` with env until the test ends (or stop is called).
func startRouter(t *testing.T, env map[string]string) *routerProc {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	p := &routerProc{cancel: cancel, done: make(chan error, 1), logs: &syncBuffer{}}
	getenv := func(k string) string { return env[k] }
	go func() { p.done <- cli.Run(ctx, nil, getenv, p.logs, p.logs) }()
	t.Cleanup(func() {
		p.stop(t)
		if t.Failed() {
			t.Logf("router logs:\n%s", p.logs.String())
		}
	})
	return p
}

// stop cancels the router and checks it shut down cleanly.
func (p *routerProc) stop(t *testing.T) {
	t.Helper()
	if p.cancel == nil {
		return
	}
	p.cancel()
	p.cancel = nil
	select {
	case err := <-p.done:
		if err != nil {
			t.Errorf("router exited with error: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Errorf("router did not stop within 30s")
	}
}

// testEnv is the configuration of a router under test.
func testEnv(t *testing.T, natsURL, dbURL string) map[string]string {
	return map[string]string{
		"NATS_URL":               natsURL,
		"DATABASE_URL":           dbURL,
		"DATA_DIR":               t.TempDir(),
		"LOG_LEVEL":              "debug",
		"NAK_DELAY":              "50ms",
		"NAK_DELAY_MAX":          "200ms",
		"RETRY_INITIAL_INTERVAL": "10ms",
		"CLOSE_TIMEOUT":          "10s",
		// Port 0: parallel routers must not fight over :3000 and :8081.
		"HTTP_ADDR":  "127.0.0.1:0",
		"ADMIN_ADDR": "127.0.0.1:0",
	}
}

type commandRow struct {
	UUID     string
	Payload  map[string]any
	Metadata map[string]string
}

func commandRows(t *testing.T, db *store.DB) []commandRow {
	t.Helper()
	rows, err := db.SQL.Query(`SELECT uuid, payload, metadata FROM watermill_profile_sync_commands ORDER BY uuid`)
	if err != nil {
		t.Fatalf("query commands: %v", err)
	}
	defer rows.Close()
	var out []commandRow
	for rows.Next() {
		var r commandRow
		var payload, metadata []byte
		if err := rows.Scan(&r.UUID, &payload, &metadata); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(payload, &r.Payload); err != nil {
			t.Fatalf("command payload is not JSON: %v: %s", err, payload)
		}
		if err := json.Unmarshal(metadata, &r.Metadata); err != nil {
			t.Fatalf("command metadata is not JSON: %v: %s", err, metadata)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// openDB opens the router's database from the test side, creating the tables
// if the router has not yet, so queries never race its start-up.
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

func countCommands(t *testing.T, db *store.DB) int {
	t.Helper()
	var n int
	if err := db.SQL.QueryRow(`SELECT COUNT(*) FROM watermill_profile_sync_commands`).Scan(&n); err != nil {
		t.Fatalf("count commands: %v", err)
	}
	return n
}

// eventFor is the producer payload with another action (and user).
func eventFor(action, userID string) string {
	s := strings.Replace(producerPayload, `"action":"created"`, `"action":"`+action+`"`, 1)
	return strings.Replace(s, "78af4bc4-afce-4676-b373-5b802a2dfd2e", userID, 1)
}

// runCommand runs one command in process with env, as a shell would, and
// returns all it printed.
func runCommand(env map[string]string, args ...string) (string, error) {
	var out syncBuffer
	err := cli.Run(context.Background(), args, func(k string) string { return env[k] }, &out, &out)
	return out.String(), err
}

// freeAddr is a loopback address whose port is free right now and was not
// handed out before in this process (routertest.FreeAddr).
func freeAddr(t *testing.T) string { return routertest.FreeAddr(t) }

// waitForConsumer waits until the router has bound (or created) its durable.
func waitForConsumer(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	routertest.Eventually(t, 20*time.Second, "the durable consumer", func() bool {
		_, err := broker.ReadConsumer(context.Background(), js, "USER_EVENTS", "social-backend-consumer")
		return err == nil
	})
}

// createMonolithDurable leaves behind the durable the monolith's old
// in-process subscriber created on nc: a push consumer delivering to an
// inbox, with a deliver group. Closing nc (not unsubscribing) keeps it, as a
// crashed monolith would. It returns once the server, asked through js, has
// seen the subscriber go: a message published before that could be pushed
// to the dead subscriber and come back only after the 30s ack wait.
func createMonolithDurable(t *testing.T, nc *nats.Conn, js jetstream.JetStream) {
	t.Helper()
	legacy, err := nc.JetStream()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := legacy.QueueSubscribe("user.events.*", "social-backend-consumer", func(*nats.Msg) {},
		nats.Durable("social-backend-consumer"), nats.ManualAck(), nats.MaxDeliver(3), nats.AckWait(30*time.Second)); err != nil {
		t.Fatal(err)
	}
	nc.Close()
	routertest.Eventually(t, 10*time.Second, "the monolith's subscriber to go", func() bool {
		return !routertest.ConsumerInfo(t, js, "USER_EVENTS", "social-backend-consumer").PushBound
	})
}

// monolithWorld is the broker as the Auth Service and the monolith's old
// subscriber leave it: the stream created with the Auth Service's settings
// (through the legacy JetStream API, as they use it) and the monolith's push
// durable, its subscriber gone.
func monolithWorld(t *testing.T, url string) {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	legacy, err := nc.JetStream()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := legacy.AddStream(&nats.StreamConfig{
		Name: "USER_EVENTS", Subjects: []string{"user.events.*"}, Retention: nats.WorkQueuePolicy,
		Storage: nats.FileStorage, MaxAge: 7 * 24 * time.Hour, Duplicates: 5 * time.Minute, Replicas: 1,
	}); err != nil {
		t.Fatal(err)
	}
	createMonolithDurable(t, nc, routertest.JetStream(t, url))
}
