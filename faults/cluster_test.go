package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/social/user-events-router/apply"
	"github.com/social/user-events-router/apply/applytest"
	"github.com/social/user-events-router/router/broker"
	"github.com/social/user-events-router/router/routertest"
	"github.com/social/user-events-router/store"
)

// clusterNodes is the size of the scenarios' NATS cluster: the smallest
// that survives the loss of one server.
const clusterNodes = 3

// clusterBacklog multiplies the backlog of the node-loss scenarios: a
// server's loss and return take seconds (an election, a catch-up), about
// what the router needs to drain the usual backlog, which would leave the
// later faults after the drain.
const clusterBacklog = 3

// nodeLossBackends are the databases of the node-loss scenarios: SQLite
// alone in the short run, every backend with FAULTS_LONG=1 (see scale).
// What they fault is the broker, the database only carries the load: on
// 2 cores a cluster and three times the backlog per database would double
// the suite's short run for little.
func nodeLossBackends() []store.Dialect {
	if os.Getenv("FAULTS_LONG") == "1" {
		return backends()
	}
	return []store.Dialect{store.SQLite}
}

// consumerConnName is the name of the router's subscribing connection
// (cli/serve.go), to find the server it is connected to.
const consumerConnName = "user-events-router-consumer"

// forEachClusterBackend runs scenario once per database of dbs, in
// parallel, each on its own NATS cluster (see setupCluster).
func forEachClusterBackend(t *testing.T, name string, dbs []store.Dialect, replicas int, scenario func(t *testing.T, f *fixture, c *routertest.Cluster)) {
	t.Helper()
	if testing.Short() {
		t.Skip("the fault-injection suite does not run under -short")
	}
	for _, backend := range dbs {
		t.Run(string(backend), func(t *testing.T) {
			t.Parallel()
			f, c := setupCluster(t, name, backend, replicas)
			scenario(t, f, c)
		})
	}
}

// setupCluster starts a fresh 3-server JetStream cluster and database, and
// creates the stream as the Auth Service does but for its replicas: 1 is
// the Auth Service's own, 3 what an operator sets after it. The routers
// get every server's URL in NATS_URL; the test's client too.
func setupCluster(t *testing.T, name string, backend store.Dialect, replicas int) (*fixture, *routertest.Cluster) {
	t.Helper()
	f := newFixture(t, name, backend)
	c := routertest.StartCluster(t, clusterNodes)
	f.natsURL = c.URLs()
	f.js = jetStream(t, f.natsURL)
	cfg := broker.AuthServiceStreamConfig(streamName)
	cfg.Replicas = replicas
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if _, err := f.js.CreateStream(ctx, cfg); err != nil {
		t.Fatalf("create stream %s (R%d): %v", streamName, replicas, err)
	}
	f.waitStreamHealthy(t, replicas)
	return f, c
}

// streamCluster is where the stream lives now: its leader and peers, or
// an error while no leader answers.
func (f *fixture) streamCluster(ctx context.Context) (*jetstream.ClusterInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	s, err := f.js.Stream(ctx, streamName)
	if err != nil {
		return nil, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return nil, err
	}
	if info.Cluster == nil || info.Cluster.Leader == "" {
		return nil, fmt.Errorf("stream %s has no leader", streamName)
	}
	return info.Cluster, nil
}

// healthy reports whether a stream or consumer group has a leader and
// replicas-1 other peers, every one online and current.
func healthy(ci *jetstream.ClusterInfo, replicas int) (bool, string) {
	if ci == nil || ci.Leader == "" {
		return false, "no leader"
	}
	peers := []string{"leader=" + ci.Leader}
	ok := len(ci.Replicas) == replicas-1
	for _, p := range ci.Replicas {
		peers = append(peers, fmt.Sprintf("%s(current=%v offline=%v lag=%d)", p.Name, p.Current, p.Offline, p.Lag))
		ok = ok && p.Current && !p.Offline
	}
	return ok, strings.Join(peers, " ")
}

// waitStreamHealthy polls until the stream, and the durable if it exists,
// have a leader and every replica current: after a server's restart, the
// moment the next fault may strike without costing the group its quorum.
func (f *fixture) waitStreamHealthy(t *testing.T, replicas int, procs ...*routerProc) {
	t.Helper()
	f.waitFor(t, fmt.Sprintf("stream (R%d) and durable with a leader and every replica current", replicas), func() (bool, string) {
		ci, err := f.streamCluster(t.Context())
		if err != nil {
			return false, err.Error()
		}
		ok, state := healthy(ci, replicas)
		if !ok {
			return false, "stream: " + state
		}
		info := f.consumer(t.Context())
		if info == nil {
			// No durable yet (before the first router), or no answer:
			// only the latter is a wait.
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
			defer cancel()
			s, err := f.js.Stream(ctx, streamName)
			if err != nil {
				return false, err.Error()
			}
			if _, err := s.Consumer(ctx, durable); err != nil {
				return strings.Contains(err.Error(), "not found"), "durable: " + err.Error()
			}
			return false, "durable: no answer"
		}
		ok, state = healthy(info.Cluster, replicas)
		return ok, "durable: " + state
	}, procs...)
}

// clusterServer is the server of c named name, or nil.
func clusterServer(c *routertest.Cluster, name string) *routertest.ClusterServer {
	for _, cs := range c.Servers {
		if cs.Name() == name {
			return cs
		}
	}
	return nil
}

// connectedTo is the running server of c that holds a client connection
// named name, or nil.
func connectedTo(c *routertest.Cluster, name string) *routertest.ClusterServer {
	for _, cs := range c.Servers {
		if cs.Server == nil || !cs.Running() {
			continue
		}
		conns, err := cs.Connz(&server.ConnzOptions{})
		if err != nil {
			continue
		}
		for _, conn := range conns.Conns {
			if conn.Name == name {
				return cs
			}
		}
	}
	return nil
}

// loseNode shuts victim down while p drains a backlog of total events and
// waits for the drain to go on without it, then brings it back on its
// addresses and store and waits until the stream is whole again. It
// returns what to note: the commands when it went, its name and the
// leaders it held (stream, durable), how long until the stream answered
// with a leader elsewhere, and until the router committed more than it
// could have held when the server went (its max ack pending: the drain
// had resumed).
func (f *fixture) loseNode(t *testing.T, c *routertest.Cluster, replicas, total int, victim *routertest.ClusterServer, p *routerProc) string {
	t.Helper()
	at := f.committed(t)
	// What it led: the stream's and the durable's groups elect their
	// leaders apart, and losing either leader costs an election.
	var led []string
	if ci, err := f.streamCluster(t.Context()); err == nil && ci.Leader == victim.Name() {
		led = append(led, "stream")
	}
	if info := f.consumer(t.Context()); info != nil && info.Cluster != nil && info.Cluster.Leader == victim.Name() {
		led = append(led, "durable")
	}
	was := "led=" + strings.Join(led, "+")
	if len(led) == 0 {
		was = "follower"
	}
	start := time.Now()
	victim.Stop()
	f.waitFor(t, "a stream leader on a running server", func() (bool, string) {
		ci, err := f.streamCluster(t.Context())
		if err != nil {
			return false, err.Error()
		}
		return ci.Leader != victim.Name(), "leader=" + ci.Leader
	}, p)
	leader := since(start)
	held, err := strconv.Atoi(maxAckPending)
	if err != nil {
		t.Fatal(err)
	}
	f.waitCommitted(t, min(total, at+held+1), p)
	resumed := since(start)
	victim.Restart(t)
	c.WaitForMetaLeader(t)
	f.waitStreamHealthy(t, replicas, p)
	return fmt.Sprintf("%d(%s/%s:leader_in=%v,resumed_in=%v,whole_in=%v)", at, victim.Name(), was, leader, resumed, since(start))
}

// TestClusterLeaderLoss drains a backlog from an R3 stream on a 3-server
// cluster and, K times at random points, shuts down the server that leads
// the stream, waits for the drain to go on under a new leader, and
// restarts it (same addresses, same store). Acks sent to the old leader
// may be lost with it: those events come back and must not be written
// twice.
func TestClusterLeaderLoss(t *testing.T) {
	t.Parallel()
	forEachClusterBackend(t, "cluster-leader-loss", nodeLossBackends(), 3, func(t *testing.T, f *fixture, c *routertest.Cluster) {
		f.size.events *= clusterBacklog
		f.drainWithFaults(t, "leader_losses", procOptions{}, func(_ int, p *routerProc) (*routerProc, string) {
			ci, err := f.streamCluster(t.Context())
			if err != nil {
				t.Fatalf("stream leader: %v", err)
			}
			return p, f.loseNode(t, c, 3, f.size.events, clusterServer(c, ci.Leader), p)
		})
		f.converges(t)
	})
}

// TestClusterRouterNodeLoss drains a backlog from an R3 stream and, K
// times, shuts down the server the router consumes through: the router
// must reconnect to another of the servers in its NATS_URL and go on;
// the server is restarted each time.
func TestClusterRouterNodeLoss(t *testing.T) {
	t.Parallel()
	forEachClusterBackend(t, "cluster-router-node-loss", nodeLossBackends(), 3, func(t *testing.T, f *fixture, c *routertest.Cluster) {
		f.size.events *= clusterBacklog
		var router *routerProc
		f.drainWithFaults(t, "node_losses", procOptions{}, func(_ int, p *routerProc) (*routerProc, string) {
			router = p
			var victim *routertest.ClusterServer
			f.waitFor(t, "the server the router consumes through", func() (bool, string) {
				victim = connectedTo(c, consumerConnName)
				return victim != nil, "no server has a connection named " + consumerConnName
			}, p)
			return p, f.loseNode(t, c, 3, f.size.events, victim, p)
		})
		if n := countLines(router.log(t), `"msg":"nats reconnected"`, consumerConnName); n < f.size.kills {
			t.Errorf("the router's consumer logged %d reconnects, want at least %d (one per server lost)", n, f.size.kills)
		}
		f.converges(t)
	})
}

// TestClusterStreamNodeDown takes down the one server of an R1 stream (the
// Auth Service's own setting) while an Auth-Service-like producer sends
// events: its publishes time out, it falls back to HTTP, and the router,
// which cannot consume meanwhile, must stay ready and take them. The
// producer's connection names that server only, so its reconnect buffer
// holds the timed-out publishes until the server returns; those copies
// then reach the stream and must change nothing.
func TestClusterStreamNodeDown(t *testing.T) {
	t.Parallel()
	forEachClusterBackend(t, "cluster-r1-node-down", backends(), 1, func(t *testing.T, f *fixture, c *routertest.Cluster) {
		f.httpTraffic = true // commands come by HTTP too: no running loss check
		const workers = 8
		const natsTimeout = 500 * time.Millisecond
		m := f.size.httpEvents
		ci, err := f.streamCluster(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		node := clusterServer(c, ci.Leader)
		start := time.Now()
		p := f.startRouter(t, procOptions{})

		// The Auth Service's connection: to that one server (not the
		// others it advertises), retried for ever, through a proxy the
		// test cuts with the server and restores only once the stream is
		// back, so what the client buffered meanwhile reaches the stream
		// and not a server that would answer "no responders".
		proxy := routertest.StartProxy(t, strings.TrimPrefix(node.URL, "nats://"))
		nc, err := nats.Connect("nats://"+proxy.Addr(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond),
			nats.IgnoreDiscoveredServers(), nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		prod := newAuthProducer(js, p.httpAddr, natsTimeout)

		// Before: everything by NATS.
		prod.run(t.Context(), f.newEvents(m), workers)
		before := len(prod.natsOK)

		// During: the stream's server is down; the router stays ready
		// and the producer falls back to HTTP.
		proxy.Cut()
		node.Stop()
		down := time.Now()
		ready := watchReady(p.adminAddr)
		prod.run(t.Context(), f.newEvents(m), workers)
		during := len(prod.httpOK)
		ready.stop()
		downFor := since(down)
		// Ready means answering 200. An isolated poll that gets no answer
		// within 2 s is the machine (seen only with the load average at 9
		// on 2 cores); no answer for 5 s is a router that hangs.
		if len(ready.notReady) > 0 {
			t.Errorf("/readyz answered other than 200 %d times while the stream's server was down, e.g. %s", len(ready.notReady), sample(ready.notReady))
		}
		if ready.longestSilence >= 5*time.Second {
			t.Errorf("/readyz did not answer for %v while the stream's server was down (%d polls unanswered, e.g. %s)",
				ready.longestSilence.Round(time.Millisecond), len(ready.unanswered), sample(ready.unanswered))
		} else if len(ready.unanswered) > 0 {
			t.Logf("/readyz: %d polls unanswered within 2 s, none for 5 s in a row: %s", len(ready.unanswered), strings.Join(ready.unanswered, "; "))
		}
		if during < m {
			t.Errorf("%d of %d events sent while the stream's server was down were answered 200 by HTTP, want all", during, m)
		}

		// After: the server returns with the stream; the producer
		// reconnects, its buffered publishes reach the stream, new events
		// go by NATS again.
		node.Restart(t)
		c.WaitForMetaLeader(t)
		f.waitStreamHealthy(t, 1, p)
		back := since(down)
		proxy.Restore(t)
		f.waitFor(t, "the producer's connection back, its buffer flushed", func() (bool, string) {
			return nc.IsConnected() && nc.FlushTimeout(2*time.Second) == nil, nc.Status().String()
		}, p)
		prod.run(t.Context(), f.newEvents(m), workers)
		for _, failure := range prod.failures {
			t.Logf("producer failure: %s", failure)
		}
		if len(prod.dropped) > 0 {
			t.Errorf("%d events dropped after three tries, e.g. %s", len(prod.dropped), sample(prod.dropped))
		}
		accepted := append(append([]string{}, prod.natsOK...), prod.httpOK...)
		f.waitDrained(t, len(accepted), p)
		// Every message stored in the stream is counted by its last
		// sequence; those beyond the acked publishes are the copies that
		// timed out and still arrived (the reconnect buffer).
		lastSeq := f.lastSeq(t)
		buffered := int(lastSeq) - len(prod.natsOK)
		if buffered == 0 {
			t.Logf("no buffered copy reached the stream: the dedup of HTTP and NATS copies was not exercised this run")
		}
		// What an operator saw: the health log's consumer state (logged
		// once per change, probed every few seconds, so a short outage
		// may pass between two probes; not a check).
		log := p.log(t)
		f.verify(t, accepted, prod.dropped, fmt.Sprintf(
			"nats_ok=%d http_ok=%d nats_failed_tries=%d http_retried=%d buffered_copies_stored=%d stream_last_seq=%d down_for=%v back_in=%v nats_before=%d readyz_polls=%d readyz_not_200=%d readyz_unanswered=%d readyz_slowest=%v consumer_down_logged=%d consumer_back_logged=%d took=%v",
			len(prod.natsOK), len(prod.httpOK), prod.natsFailed, prod.retried, buffered, lastSeq, downFor, back, before,
			ready.polls, len(ready.notReady), len(ready.unanswered), ready.slowest.Round(time.Millisecond),
			countLines(log, `"msg":"consumer down"`), countLines(log, `"msg":"consumer back"`), since(start)))
		f.converges(t)
	})
}

// lastSeq is the stream's last sequence: how many messages it ever stored.
func (f *fixture) lastSeq(t *testing.T) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	s, err := f.js.Stream(ctx, streamName)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info.State.LastSeq
}

// readyWatch polls a router's /readyz every 20 ms until stopped, as an
// orchestrator's probe would, only more often.
type readyWatch struct {
	stopCh chan struct{}
	done   chan struct{}

	// Read after stop. notReady are the answers other than 200: the
	// router saying it cannot take events. unanswered are the polls that
	// got no answer within 2 s; longestSilence is the longest stretch
	// without any answer (a hang, past a few seconds).
	notReady, unanswered []string
	polls                int
	slowest              time.Duration // the slowest answer
	longestSilence       time.Duration
}

func watchReady(adminAddr string) *readyWatch {
	w := &readyWatch{stopCh: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{}}
		defer client.CloseIdleConnections()
		lastAnswer := time.Now()
		for {
			begin := time.Now()
			resp, err := client.Get("http://" + adminAddr + "/readyz")
			w.polls++
			switch {
			case err != nil:
				w.unanswered = append(w.unanswered, begin.Format("15:04:05.000")+" "+err.Error())
				w.longestSilence = max(w.longestSilence, time.Since(lastAnswer))
			default:
				resp.Body.Close()
				lastAnswer = time.Now()
				w.slowest = max(w.slowest, lastAnswer.Sub(begin))
				if resp.StatusCode != http.StatusOK {
					w.notReady = append(w.notReady, begin.Format("15:04:05.000")+" "+resp.Status)
				}
			}
			select {
			case <-w.stopCh:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	return w
}

// stop ends the watch.
func (w *readyWatch) stop() {
	close(w.stopCh)
	<-w.done
}

// model is the Auth Service's users after the events this test made:
// every one registered, none changed or deleted.
func (f *fixture) model(t *testing.T) map[string]applytest.User {
	t.Helper()
	out := make(map[string]applytest.User, len(f.made))
	for _, ev := range f.made {
		var body struct{ Email, Username string }
		if err := json.Unmarshal(ev.body, &body); err != nil {
			t.Fatal(err)
		}
		out[ev.userID] = applytest.User{Email: body.Email, Username: body.Username}
	}
	return out
}

// converges runs `apply` on the commands until it has caught up and
// checks that the monolith's users are the Auth Service's (see
// TestConvergence), logging the convergence line.
func (f *fixture) converges(t *testing.T) {
	t.Helper()
	applier := f.startRouter(t, procOptions{apply: true})
	f.waitFor(t, "apply to catch up (lag 0)", func() (bool, string) {
		n, err := apply.Lag(t.Context(), f.db, apply.DefaultConsumerGroup)
		return err == nil && n == 0, fmt.Sprintf("lag=%d (err %v)", n, err)
	}, applier)
	got, err := applytest.Identities(f.db.SQL)
	if err != nil {
		t.Fatalf("read user_identities: %v", err)
	}
	diff, equal := applytest.Diff(f.model(t), got)
	t.Log(diff)
	if !equal {
		t.Errorf("%s: the monolith's users are not the Auth Service's", diff)
	}
	applier.kill(t)
}
