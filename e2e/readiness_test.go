package e2e

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/social/user-events-router/router/admin"
	"github.com/social/user-events-router/router/routertest"
	"github.com/social/user-events-router/store"
	"github.com/social/user-events-router/store/storetest"
)

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

// TestReadinessFollowsTheDatabaseNotNATS is the outage an operator fears:
// NATS goes away, and the Auth Service turns to the HTTP fallback. The pod
// must stay ready (Kubernetes would otherwise take the fallback out of the
// Service), the fallback must store the event, /status must say what the
// consumer is going through, and the consumer gauges must stay in the
// scrape. A table the router cannot write, on the other hand, is not ready,
// with the table named, until it is back.
func TestReadinessFollowsTheDatabaseNotNATS(t *testing.T) {
	t.Parallel()
	storetest.EachBackend(t, func(t *testing.T, backend store.Dialect) {
		srv := routertest.StartServer(t)
		dbURL := storetest.URL(t, backend)
		db := openDB(t, dbURL)
		env, ingressURL := ingressEnv(t, srv.URL, dbURL)
		adminAddr := freeAddr(t)
		env["ADMIN_ADDR"] = adminAddr
		p := startRouter(t, env)
		readyz := func() (int, string) { return httpGet(t, "http://"+adminAddr+"/readyz") }

		routertest.Eventually(t, 20*time.Second, "/readyz to answer 200", func() bool {
			code, _ := readyz()
			return code == http.StatusOK
		})
		routertest.Eventually(t, 20*time.Second, "/status to show the durable bound", func() bool {
			c := getStatus(t, adminAddr).Consumer
			return c.State == admin.StateOK && c.Info != nil && c.Info.Bound
		})
		js := routertest.JetStream(t, srv.URL)
		routertest.Publish(t, js, "user.events.created", []byte(eventFor("created", "00000001-0000-4000-8000-000000000001")))
		routertest.Eventually(t, 20*time.Second, "the JetStream event's command", func() bool { return countCommands(t, db) == 1 })

		// NATS goes away.
		srv.Stop()
		routertest.Eventually(t, 20*time.Second, "/status to show the consumer down", func() bool {
			c := getStatus(t, adminAddr).Consumer
			return c.State == admin.StateDown && c.Connection != "CONNECTED" && strings.Contains(c.Reason, "consumer connection")
		})
		if code, body := readyz(); code != http.StatusOK {
			t.Errorf("/readyz with NATS down = %d %q, want 200: the HTTP fallback must stay in service", code, body)
		}
		st := getStatus(t, adminAddr)
		if !st.Ready || st.Database.State != admin.StateOK || st.Ingress.State != admin.StateOK {
			t.Errorf("/status with NATS down: ready %v, database %+v, ingress %+v; want ready, both ok", st.Ready, st.Database, st.Ingress)
		}
		if st.Consumer.Info == nil || st.Consumer.LastAckAt == nil || st.Consumer.Durable != "social-backend-consumer" {
			t.Errorf("/status consumer with NATS down = %+v, want the last durable info and the last ack kept", st.Consumer)
		}

		// The Auth Service posts the producer's example body.
		// The Auth Service takes only a first 200 as success; no retry here.
		resp, err := http.Post(ingressURL, "application/json", strings.NewReader(producerPayload))
		if err != nil {
			t.Fatalf("POST to the ingress with NATS down: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("POST to the ingress with NATS down = %d, want 200", resp.StatusCode)
		}
		var found bool
		for _, row := range commandRows(t, db) {
			source, _ := row.Payload["source"].(map[string]any)
			if row.Payload["user_id"] == "78af4bc4-afce-4676-b373-5b802a2dfd2e" && source["ingress"] == "http" {
				found = true
			}
		}
		if !found {
			t.Errorf("no command row for the HTTP event: %+v", commandRows(t, db))
		}

		code, metrics := httpGet(t, "http://"+adminAddr+"/metrics")
		if code != http.StatusOK {
			t.Fatalf("/metrics with NATS down = %d", code)
		}
		for _, want := range []string{
			"user_events_router_ready 1",
			"user_events_router_consumer_up 0",
			"user_events_router_consumer_info_age_seconds ",
			"user_events_router_consumer_pending_messages ",
			"user_events_router_consumer_ack_pending_messages ",
		} {
			if !strings.Contains(metrics, "\n"+want) {
				t.Errorf("/metrics with NATS down lacks %q", want)
			}
		}

		// The commands table goes away: not ready, and why.
		commands, parked := quoteTable(backend, "watermill_profile_sync_commands"), quoteTable(backend, "parked_commands")
		mustExec(t, db, `ALTER TABLE `+commands+` RENAME TO `+parked)
		routertest.Eventually(t, 20*time.Second, "/readyz to answer 503 naming the table", func() bool {
			code, body := readyz()
			return code == http.StatusServiceUnavailable && strings.Contains(body, "watermill_profile_sync_commands")
		})
		st = getStatus(t, adminAddr)
		if st.Ready || st.Database.State != admin.StateDown || !strings.Contains(st.Database.Reason, "watermill_profile_sync_commands") ||
			st.Ingress.State != admin.StateDown {
			t.Errorf("/status with the table away: ready %v, database %+v, ingress %+v", st.Ready, st.Database, st.Ingress)
		}
		if _, metrics := httpGet(t, "http://"+adminAddr+"/metrics"); !strings.Contains(metrics, "\nuser_events_router_ready 0") {
			t.Error("/metrics with the table away lacks user_events_router_ready 0")
		}
		mustExec(t, db, `ALTER TABLE `+parked+` RENAME TO `+commands)
		routertest.Eventually(t, 20*time.Second, "/readyz to answer 200 with the table back", func() bool {
			code, _ := readyz()
			return code == http.StatusOK
		})

		// NATS comes back: so does the consumer.
		srv.Start(t)
		routertest.Eventually(t, 30*time.Second, "/status to show the consumer back", func() bool {
			c := getStatus(t, adminAddr).Consumer
			return c.State == admin.StateOK && c.Connection == "CONNECTED"
		})
		logs := p.logs.String()
		if n := strings.Count(logs, `"msg":"consumer down"`); n != 1 {
			t.Errorf("the NATS outage logged %d consumer-down lines, want 1", n)
		}
		if n := strings.Count(logs, `"msg":"database down"`); n != 1 {
			t.Errorf("the missing table logged %d database-down lines, want 1", n)
		}
		if strings.Contains(logs, "metric not collected") {
			t.Error("a scrape failed to collect a metric during the outage")
		}
	})
}

func quoteTable(d store.Dialect, name string) string {
	if d == store.MySQL {
		return "`" + name + "`"
	}
	return `"` + name + `"`
}
