package e2e

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/social/user-events-router/router/broker"
	"github.com/social/user-events-router/router/routertest"
	"github.com/social/user-events-router/store"
	"github.com/social/user-events-router/store/storetest"
)

// TestServeReportsStreamWeakerThanCluster: a router on a cluster of three
// JetStream servers, with the stream as the Auth Service leaves it (R1),
// says so in /metrics (stream_replicas 1, stream_cluster_servers 3: what
// UserEventsStreamWeakerThanCluster fires on), in /status, and once in
// its log.
func TestServeReportsStreamWeakerThanCluster(t *testing.T) {
	t.Parallel()
	c := routertest.StartCluster(t, 3)
	js := routertest.JetStream(t, c.URLs())
	if _, err := js.CreateStream(t.Context(), broker.AuthServiceStreamConfig("USER_EVENTS")); err != nil {
		t.Fatal(err)
	}
	env, ingressURL := ingressEnv(t, c.URLs(), storetest.URL(t, store.SQLite))
	admin := freeAddr(t)
	env["ADMIN_ADDR"] = admin
	p := startRouter(t, env)
	// The admin address listens from before the ingress answers.
	waitForIngress(t, ingressURL)
	// Read again at each health check: wait for one that counted all three
	// servers (a count ends at the first quiet moment after the answers,
	// and on a loaded machine a server may answer after it).
	routertest.Eventually(t, 30*time.Second, "the stream's redundancy in /status, every server counted", func() bool {
		st := getStatus(t, admin).Stream
		return st != nil && st.JetStreamServers == 3
	})

	st := getStatus(t, admin).Stream
	if st.Replicas != 1 || st.JetStreamServers != 3 || st.Cluster != c.Name || !st.Weaker ||
		!strings.Contains(st.Reason, "nats stream edit USER_EVENTS --replicas 3") {
		t.Errorf("/status stream = %+v, want 1 replica of 3 servers, weaker, with what to do", st)
	}
	code, body := httpGet(t, "http://"+admin+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics = %d", code)
	}
	for _, want := range []string{"\nuser_events_router_stream_replicas 1\n", "\nuser_events_router_stream_cluster_servers 3\n"} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", strings.TrimSpace(want))
		}
	}
	if n := strings.Count(p.logs.String(), "stream has fewer replicas than its cluster could hold"); n != 1 {
		t.Errorf("the weaker stream was logged %d times, want once", n)
	}
}
