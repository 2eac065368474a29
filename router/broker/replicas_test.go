package broker_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/social/user-events-router/router/broker"
	"github.com/social/user-events-router/router/routertest"
)

// TestStreamRedundancy: on a cluster of three JetStream servers the Auth
// Service's R1 stream is weaker than the cluster, the operator's R3 is
// not, and the Auth Service's next start (UpdateStream with Replicas: 1)
// makes it weaker again; on a single server nothing is.
func TestStreamRedundancy(t *testing.T) {
	t.Parallel()
	// read waits for every one of the servers to be counted: the count
	// ends at the first quiet moment after the answers, and on a loaded
	// machine a server may answer after it. What else is read is checked
	// by the caller.
	read := func(t *testing.T, js jetstream.JetStream, servers int) broker.Redundancy {
		t.Helper()
		var r broker.Redundancy
		routertest.Eventually(t, 30*time.Second, "every JetStream server counted", func() bool {
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			var err error
			r, err = broker.StreamRedundancy(ctx, js, "USER_EVENTS", 2*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			return r.Servers == servers
		})
		return r
	}
	setReplicas := func(t *testing.T, js jetstream.JetStream, n int) {
		t.Helper()
		cfg := broker.AuthServiceStreamConfig("USER_EVENTS")
		cfg.Replicas = n
		if _, err := js.UpdateStream(t.Context(), cfg); err != nil {
			t.Fatalf("update stream to R%d: %v", n, err)
		}
	}

	t.Run("cluster of three", func(t *testing.T) {
		t.Parallel()
		c := routertest.StartCluster(t, 3)
		js := routertest.JetStream(t, c.URLs())
		if _, err := js.CreateStream(t.Context(), broker.AuthServiceStreamConfig("USER_EVENTS")); err != nil {
			t.Fatal(err)
		}
		r := read(t, js, 3)
		if r.Replicas != 1 || r.Servers != 3 || r.Cluster != c.Name || !r.Weaker() {
			t.Errorf("R1 on three servers: %+v, want 1 replica of 3 servers, weaker", r)
		}
		for _, want := range []string{
			"stream USER_EVENTS has 1 replica on a cluster of 3 JetStream servers",
			"losing the server that holds it stops the stream",
			"UpdateStream sets Replicas: 1 on every start",
			"nats stream edit USER_EVENTS --replicas 3",
		} {
			if !strings.Contains(r.String(), want) {
				t.Errorf("report lacks %q: %s", want, r)
			}
		}

		setReplicas(t, js, 3)
		if r := read(t, js, 3); r.Replicas != 3 || r.Servers != 3 || r.Weaker() || strings.Contains(r.String(), "losing") {
			t.Errorf("R3 on three servers: %+v (%s), want not weaker", r, r)
		}

		// The Auth Service starts again.
		setReplicas(t, js, 1)
		if r := read(t, js, 3); !r.Weaker() {
			t.Errorf("after the Auth Service's UpdateStream: %+v, want weaker", r)
		}
	})

	t.Run("single server", func(t *testing.T) {
		t.Parallel()
		srv := routertest.StartServer(t)
		js := routertest.JetStream(t, srv.URL)
		if _, err := js.CreateStream(t.Context(), broker.AuthServiceStreamConfig("USER_EVENTS")); err != nil {
			t.Fatal(err)
		}
		r := read(t, js, 1)
		if r.Cluster != "" || r.Servers != 1 || r.Weaker() || r.ServersErr != nil {
			t.Errorf("one server: %+v, want one server, not weaker", r)
		}
	})
}
