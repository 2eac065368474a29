package e2e

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/social/user-events-router/router/routertest"
	"github.com/social/user-events-router/store"
	"github.com/social/user-events-router/store/storetest"
)

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

// TestHealthReadinessAndMetrics checks what an orchestrator and a scraper
// see on the admin address of a router with traffic.
func TestHealthReadinessAndMetrics(t *testing.T) {
	t.Parallel()
	srv := routertest.StartServer(t)
	dbURL := storetest.URL(t, store.SQLite)
	env := testEnv(t, srv.URL, dbURL)
	admin := freeAddr(t)
	env["ADMIN_ADDR"] = admin
	db := openDB(t, dbURL)
	startRouter(t, env)
	js := routertest.JetStream(t, srv.URL)

	routertest.Eventually(t, 20*time.Second, "/readyz to answer 200", func() bool {
		code, _ := httpGet(t, "http://"+admin+"/readyz")
		return code == http.StatusOK
	})
	if code, body := httpGet(t, "http://"+admin+"/healthz"); code != http.StatusOK || strings.TrimSpace(body) != "ok" {
		t.Errorf("/healthz = %d %q", code, body)
	}
	routertest.Publish(t, js, "user.events.created", []byte(producerPayload))
	routertest.Publish(t, js, "user.events.created", []byte(`{"broken`))
	routertest.Eventually(t, 20*time.Second, "the command", func() bool { return countCommands(t, db) == 1 })
	routertest.Eventually(t, 20*time.Second, "the stream to drain", func() bool {
		return routertest.StreamMsgs(t, js, "USER_EVENTS") == 0
	})

	// The consumer's figures are the broker's last answer, read every few
	// seconds, so they catch up with the drained stream a little later.
	routertest.Eventually(t, 20*time.Second, "the consumer gauges to show the drained durable", func() bool {
		_, body := httpGet(t, "http://"+admin+"/metrics")
		return strings.Contains(body, "\nuser_events_router_consumer_pending_messages 0\n") &&
			strings.Contains(body, "\nuser_events_router_consumer_ack_pending_messages 0\n") &&
			strings.Contains(body, "\nuser_events_router_consumer_up 1\n")
	})
	code, body := httpGet(t, "http://"+admin+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics = %d", code)
	}
	for _, want := range []string{
		`user_events_router_events_total{action="created",ingress="nats",outcome="committed"} 1`,
		`user_events_router_events_total{action="undecodable",ingress="nats",outcome="poisoned"} 1`,
		`user_events_router_poison_writes_total{class="permanent"} 1`,
		`user_events_router_poison_queue_depth 1`,
		`user_events_router_consumer_pending_messages 0`,
		`user_events_router_consumer_ack_pending_messages 0`,
		`user_events_router_consumer_info_age_seconds`,
		`user_events_router_ready 1`,
		`user_events_router_commit_lag_seconds_count 1`,
		`user_events_router_commit_batch_commands_count 1`,
		"user_events_router_receive_to_ack_seconds_count 2", // the poisoned event is acked too
		// The handler's own attempt: the undecodable event's failed (and
		// was then poisoned, outside it).
		`user_events_router_watermill_handler_execution_time_seconds_count{handler_name="user_events",success="true"} 1`,
		`user_events_router_watermill_handler_execution_time_seconds_count{handler_name="user_events",success="false"} 1`,
		`go_goroutines`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}
