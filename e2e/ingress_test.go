package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/social/user-events-router/cli"
	"github.com/social/user-events-router/router/ingress"
	"github.com/social/user-events-router/router/routertest"
	"github.com/social/user-events-router/store"
	"github.com/social/user-events-router/store/storetest"
)

// ingressEnv is testEnv with the HTTP ingress on a free port, and the URL
// the Auth Service would post to (its BACKEND_SYNC_URL).
func ingressEnv(t *testing.T, natsURL, dbURL string) (map[string]string, string) {
	t.Helper()
	env := testEnv(t, natsURL, dbURL)
	addr := freeAddr(t)
	env["HTTP_ADDR"] = addr
	return env, "http://" + addr + ingress.Path
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

// postAsAuthService posts body to url as the Auth Service's fallback
// client does (three tries at 0 s, +1 s, +3 s; only 200 counts), through
// `publish -http`, which sends that way.
func postAsAuthService(ctx context.Context, url string, body []byte) error {
	return cli.Run(ctx, []string{"publish", "-http", url, "-payload", string(body)}, func(string) string { return "" }, io.Discard, io.Discard)
}

// TestIngressHTTPThenJetStreamYieldOneCommand sends one event the way the
// Auth Service does while NATS is down (HTTP), and then the same bytes over
// JetStream, as its reconnect buffer does later: one command, and the
// JetStream copy is acked, so the stream ends empty.
func TestIngressHTTPThenJetStreamYieldOneCommand(t *testing.T) {
	t.Parallel()
	storetest.EachBackend(t, func(t *testing.T, backend store.Dialect) {
		srv := routertest.StartServer(t)
		dbURL := storetest.URL(t, backend)
		env, ingressURL := ingressEnv(t, srv.URL, dbURL)
		db := openDB(t, dbURL)
		startRouter(t, env)
		js := routertest.JetStream(t, srv.URL)
		waitForIngress(t, ingressURL)
		waitForConsumer(t, js)

		if err := postAsAuthService(t.Context(), ingressURL, []byte(producerPayload)); err != nil {
			t.Fatalf("POST to the ingress: %v", err)
		}
		// 200 means committed: no waiting.
		if n := countCommands(t, db); n != 1 {
			t.Fatalf("after 200 from the ingress: %d commands, want 1", n)
		}

		seq := routertest.Publish(t, js, "user.events.created", []byte(producerPayload))
		// The server moves the ack floor before it removes the message.
		routertest.Eventually(t, 20*time.Second, "the JetStream copy to be acked and gone from the stream", func() bool {
			return routertest.ConsumerInfo(t, js, "USER_EVENTS", "social-backend-consumer").AckFloor.Stream >= seq &&
				routertest.StreamMsgs(t, js, "USER_EVENTS") == 0
		})
		rows := commandRows(t, db)
		if len(rows) != 1 {
			t.Fatalf("after HTTP and JetStream: %d commands, want 1", len(rows))
		}
		src, _ := rows[0].Payload["source"].(map[string]any)
		if src["ingress"] != "http" || src["subject"] != "user.events.created" {
			t.Errorf("the command's source is %v, want the HTTP arrival (the first) to stand", src)
		}
		if n, err := db.CountPoison(t.Context()); err != nil || n != 0 {
			t.Errorf("poison entries: %d, %v; want none", n, err)
		}
	})
}

// TestIngressAuthServiceClientThroughDatabaseOutage posts distinct events
// one after another exactly as the Auth Service does (three tries at 0 s,
// +1 s, +3 s; only 200 counts; then the event is dropped) and cuts the
// database away mid-way until the client has given up on an event. Every
// event the client saw succeed has exactly one command; one it gave up on
// has at most one; no command is duplicated and nothing is poisoned.
func TestIngressAuthServiceClientThroughDatabaseOutage(t *testing.T) {
	t.Parallel()
	storetest.EachBackend(t, func(t *testing.T, backend store.Dialect) {
		const total = 40
		srv := routertest.StartServer(t)
		dbURL := storetest.URL(t, backend)
		db := openDB(t, dbURL)

		routerURL, down, up := cuttableDatabase(t, backend, dbURL, db)
		env, ingressURL := ingressEnv(t, srv.URL, routerURL)
		startRouter(t, env)
		waitForIngress(t, ingressURL)

		// The client goes through a pass-through proxy that counts the
		// ingress's 503s, so the test knows when to end the outage.
		var unavailable atomic.Int64
		target, err := url.Parse(ingressURL)
		if err != nil {
			t.Fatal(err)
		}
		rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: target.Scheme, Host: target.Host})
		rp.ModifyResponse = func(resp *http.Response) error {
			if resp.StatusCode == http.StatusServiceUnavailable {
				unavailable.Add(1)
			}
			return nil
		}
		front := httptest.NewServer(rp)
		t.Cleanup(front.Close)
		send := func(ctx context.Context, body []byte) error {
			return postAsAuthService(ctx, front.URL+ingress.Path, body)
		}

		userID := func(i int) string { return fmt.Sprintf("%08d-0000-4000-8000-%012d", i, i) }
		cut, resume := make(chan struct{}), make(chan struct{})
		done := make(chan []error, 1)
		go func() {
			errs := make([]error, total)
			for i := range total {
				if i == total/2 {
					close(cut)
					select {
					case <-resume:
					case <-t.Context().Done():
						return
					}
				}
				errs[i] = send(t.Context(), good("78af4bc4-afce-4676-b373-5b802a2dfd2e", userID(i)))
			}
			done <- errs
		}()

		select {
		case <-cut:
		case <-time.After(60 * time.Second):
			t.Fatal("the client did not get half-way within 60s")
		}
		if n := countCommands(t, db); n != total/2 {
			t.Fatalf("before the outage: %d commands, want %d", n, total/2)
		}
		down()
		close(resume)
		// Three 503s in a row: the client has spent every try on one event.
		routertest.Eventually(t, 30*time.Second, "the client to give up on an event (three 503s)", func() bool {
			return unavailable.Load() >= 3
		})
		up()

		var errs []error
		select {
		case errs = <-done:
		case <-time.After(60 * time.Second):
			t.Fatal("the client did not finish within 60s of the database coming back")
		}

		perUser := map[string]int{}
		for _, r := range commandRows(t, db) {
			perUser[fmt.Sprint(r.Payload["user_id"])]++
		}
		gaveUp := 0
		for i, err := range errs {
			n := perUser[userID(i)]
			switch {
			case err == nil && n != 1:
				t.Errorf("event %d: the client saw 200, and there are %d commands, want 1", i, n)
			case err != nil && n > 1:
				t.Errorf("event %d: the client gave up, and there are %d commands, want at most 1", i, n)
			case err != nil && !strings.Contains(err.Error(), "status 503"):
				t.Errorf("event %d: the client gave up on %v, want only 503s during a database outage", i, err)
			}
			if err != nil {
				gaveUp++
			}
		}
		if gaveUp == 0 || gaveUp > 2 {
			t.Errorf("the client gave up on %d events, want 1 or 2 (the outage spans one event's three tries)", gaveUp)
		}
		var rows, distinct int
		if err := db.SQL.QueryRow(`SELECT COUNT(*), COUNT(DISTINCT uuid) FROM watermill_profile_sync_commands`).Scan(&rows, &distinct); err != nil {
			t.Fatal(err)
		}
		if rows != distinct || rows < total-gaveUp || rows > total {
			t.Errorf("%d commands, %d distinct; want no duplicates and between %d and %d", rows, distinct, total-gaveUp, total)
		}
		if n, err := db.CountPoison(t.Context()); err != nil || n != 0 {
			t.Errorf("a database outage made %d poison entries (%v), want none", n, err)
		}
		t.Logf("%d events: %d committed with 200, %d given up; the ingress answered 503 %d times", total, total-gaveUp, gaveUp, unavailable.Load())
	})
}
