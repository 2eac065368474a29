package faults

import (
	"context"
	"fmt"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/social/user-events-router/router/routertest"
	"github.com/social/user-events-router/store"
)

// forEachBackend runs scenario once per database, in parallel.
func forEachBackend(t *testing.T, name string, scenario func(t *testing.T, f *fixture)) {
	t.Helper()
	if testing.Short() {
		t.Skip("the fault-injection suite does not run under -short")
	}
	for _, backend := range backends() {
		t.Run(string(backend), func(t *testing.T) {
			t.Parallel()
			scenario(t, setup(t, name, backend))
		})
	}
}

// waitFaultPoint waits for the moment of fault k of kills: a random count
// of committed commands in the next equal share of what is left of total,
// so the faults spread over the drain. procs are the routers doing the
// work. If the drain is already over, the fault comes after it (logged, so
// a summary that looks too easy can be explained).
func (f *fixture) waitFaultPoint(t *testing.T, total, k, kills int, procs ...*routerProc) {
	t.Helper()
	done := f.committed(t)
	if done >= total {
		t.Logf("fault %d of %d: the backlog drained before it (%d commands)", k+1, kills, done)
		return
	}
	share := max(2, (total-done)/(kills-k+1))
	f.waitCommitted(t, f.randomPoint(done+1, min(done+share, total)), procs...)
}

// drainWithFaults is the shape of the backlog scenarios: publish N
// events, start a router (with o), inject a fault K times at random points
// of the drain, wait for the drain, verify. fault returns the router that
// carries on (a new one, or p) and what to note about the fault in the
// summary, where the faults are counted as label (kills, restarts, …).
func (f *fixture) drainWithFaults(t *testing.T, label string, o procOptions, fault func(k int, p *routerProc) (*routerProc, string)) {
	t.Helper()
	n, kills := f.size.events, f.size.kills
	ids := f.publishBacklog(t, n)
	start := time.Now()
	p := f.startRouter(t, o)
	var notes []string
	for k := range kills {
		f.waitFaultPoint(t, n, k, kills, p)
		var note string
		p, note = fault(k, p)
		notes = append(notes, note)
	}
	f.waitDrained(t, n, p)
	if !p.running() {
		t.Errorf("%s exited by itself: %v", p.name, p.werr)
	}
	f.verify(t, ids, nil, fmt.Sprintf("%s=%d at=%s took=%v", label, kills, strings.Join(notes, ","), since(start)))
}

// TestKill9 crashes the router with SIGKILL at random points while it
// drains a backlog, and restarts it each time: the events delivered to the
// dead process and not acked come back after the ack wait, and commands
// already written are not written again.
func TestKill9(t *testing.T) {
	t.Parallel()
	forEachBackend(t, "kill9", func(t *testing.T, f *fixture) {
		f.drainWithFaults(t, "kills", procOptions{}, func(_ int, p *routerProc) (*routerProc, string) {
			p.kill(t)
			at := fmt.Sprint(f.committed(t))
			return f.startRouter(t, procOptions{}), at
		})
	})
}

// TestEmbeddedKill9 runs the router on its embedded NATS server (NATS_URL
// empty, the `go run .` default) and kills it with SIGKILL mid-drain: the
// broker dies with it. Restarted on the same DATA_DIR, the embedded server
// finds the stream and durable in its file store and the drain completes.
func TestEmbeddedKill9(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("the fault-injection suite does not run under -short")
	}
	f := setup(t, "embedded-kill9", store.SQLite)
	listen := freeAddr(t)
	o := procOptions{embeddedListen: listen, dataDir: filepath.Join(f.dir, "embedded")}
	p := f.startRouter(t, o)
	connect := func() {
		nc, err := nats.Connect("nats://" + listen)
		if err != nil {
			t.Fatalf("connect to the embedded server: %v", err)
		}
		t.Cleanup(nc.Close)
		if f.js, err = jetstream.New(nc); err != nil {
			t.Fatal(err)
		}
	}
	connect()
	n, kills := f.size.events, f.size.kills
	// The router already consumes while the backlog goes in (its broker
	// lives in it), so publishBacklog's "all in the stream" check does not
	// apply: publish and wait for the stream's acks only.
	var ids []string
	for _, ev := range f.newEvents(n) {
		if _, err := f.js.PublishAsync("user.events.created", ev.body); err != nil {
			t.Fatalf("publish: %v", err)
		}
		ids = append(ids, ev.userID)
	}
	select {
	case <-f.js.PublishAsyncComplete():
	case <-time.After(60 * time.Second):
		t.Fatal("publish: no acks within 60s")
	}
	f.published += n
	start := time.Now()
	var notes []string
	for k := range kills {
		f.waitFaultPoint(t, n, k, kills, p)
		p.kill(t)
		notes = append(notes, fmt.Sprint(f.committed(t)))
		p = f.startRouter(t, o)
		connect()
	}
	f.waitDrained(t, n, p)
	f.verify(t, ids, nil, fmt.Sprintf("kills=%d at=%s took=%v", kills, strings.Join(notes, ","), since(start)))
}

// TestNATSRestart restarts the broker (same port, same file store) while
// the router drains: acks that were in flight are lost with the
// connection, so their events come back and must not be written twice.
//
// The broker is routertest's in-process server: a real nats-server (the
// module's version), not a mock, with its JetStream file store on disk.
func TestNATSRestart(t *testing.T) {
	t.Parallel()
	forEachBackend(t, "nats-restart", func(t *testing.T, f *fixture) {
		f.drainWithFaults(t, "restarts", procOptions{}, func(_ int, p *routerProc) (*routerProc, string) {
			f.broker.Restart(t)
			at := f.committed(t)
			// The router carries on by itself: commits resume.
			f.waitCommitted(t, min(f.size.events, at+1), p)
			return p, fmt.Sprint(at)
		})
	})
}

// TestDBOutage takes the database away while the router drains, for a few
// seconds at a time, then brings it back (see dbOutage). Failed commits
// must leave their events in the stream, and nothing may be poisoned.
func TestDBOutage(t *testing.T) {
	t.Parallel()
	forEachBackend(t, "db-outage", func(t *testing.T, f *fixture) {
		outage := f.newDBOutage(t)
		f.drainWithFaults(t, "outages", procOptions{databaseURL: outage.url}, func(k int, p *routerProc) (*routerProc, string) {
			length := time.Duration(2000+f.rng.IntN(1000)) * time.Millisecond
			if f.size.events > 2000 {
				length += 2 * time.Second
			}
			before, after, left := outage.cut(t, length)
			if after != before {
				t.Errorf("outage %d: %d commands written while the database was away (the outage was not real)", k+1, after-before)
			}
			if left == 0 {
				t.Errorf("outage %d: the stream is empty while commits fail: events were acked without a commit", k+1)
			}
			if !p.running() {
				t.Fatalf("the router exited during a database outage: %v; log tail:\n%s", p.werr, tail(p.logPath, 40))
			}
			return p, fmt.Sprintf("%d(%v)", before, length)
		})
	})
}

// dbOutage takes the database away from the processes under test and
// brings it back. PostgreSQL (and MySQL) go away for real: a TCP proxy
// between the processes and the server drops every connection and refuses
// new ones. SQLite has no server, so its commands table is renamed away
// instead, as e2e/outage_test.go does. The test's own connection (f.db) never
// goes through the proxy.
type dbOutage struct {
	f *fixture
	// url is the database URL the processes under test must be given.
	url string
	// table is where the commands are during an outage, for the test to
	// see that commits stopped.
	table    string
	down, up func()
}

func (f *fixture) newDBOutage(t *testing.T) *dbOutage {
	t.Helper()
	o := &dbOutage{f: f, url: f.dbURL, table: "watermill_profile_sync_commands"}
	if f.backend == store.SQLite {
		o.down = func() { f.exec(t, `ALTER TABLE watermill_profile_sync_commands RENAME TO parked_commands`) }
		o.up = func() { f.exec(t, `ALTER TABLE parked_commands RENAME TO watermill_profile_sync_commands`) }
		o.table = "parked_commands"
		return o
	}
	u, err := url.Parse(f.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := routertest.StartProxy(t, u.Host)
	u.Host = proxy.Addr()
	o.url = u.String()
	o.down, o.up = proxy.Cut, func() { proxy.Restore(t) }
	return o
}

// cut takes the database away for length, then brings it back. before and
// after count the commands 300 ms into the outage (commits that were under
// way when it began end within a moment) and at its end: equal when the
// outage was real. left is what the stream held at the end.
func (o *dbOutage) cut(t *testing.T, length time.Duration) (before, after int, left uint64) {
	t.Helper()
	o.down()
	time.Sleep(300 * time.Millisecond)
	before = o.f.countIn(t, o.table)
	time.Sleep(length - 300*time.Millisecond) // the outage itself
	after = o.f.countIn(t, o.table)
	left = o.f.streamMsgs(t)
	o.up()
	return before, after, left
}

// TestSIGTERM stops the router with SIGTERM while it drains a backlog and
// serves the HTTP fallback: it must exit 0 within CLOSE_TIMEOUT, every
// request answered 200 must be committed, and a restart finishes the rest.
func TestSIGTERM(t *testing.T) {
	t.Parallel()
	forEachBackend(t, "sigterm", func(t *testing.T, f *fixture) {
		n, stops := f.size.events, f.size.kills
		const margin = 5 * time.Second
		ids := f.publishBacklog(t, n)
		f.httpTraffic = true // commands come by HTTP too: no running loss check
		start := time.Now()
		var accepted, dropped, failures, exits []string
		p := f.startRouter(t, procOptions{})
		for k := range stops {
			// HTTP load on top of the backlog, stopped by the shutdown.
			ctx, cancel := context.WithCancel(t.Context())
			client := newAuthClient(p.httpAddr)
			client.client.Timeout = closeTimeout + margin
			events := f.newEvents(f.size.httpEvents)
			done := make(chan struct{})
			go func() { defer close(done); client.run(ctx, events) }()

			f.waitFaultPoint(t, n, k, stops, p)
			code, took := p.terminate(t, closeTimeout+margin)
			exits = append(exits, fmt.Sprintf("%d/%v", code, took.Round(time.Millisecond)))
			cancel()
			<-done
			accepted = append(accepted, client.accepted...)
			dropped = append(dropped, client.dropped...)
			failures = append(failures, client.failures...)
			if code != 0 {
				t.Errorf("SIGTERM %d: exit status %d, want 0; log tail:\n%s", k+1, code, tail(p.logPath, 20))
			}
			log := p.log(t)
			if countLines(log, `"msg":"stopped"`) != 1 || countLines(log, `"msg":"stopped with error"`) != 0 {
				t.Errorf("SIGTERM %d: no clean \"stopped\" line in the log; tail:\n%s", k+1, tail(p.logPath, 20))
			}
			p = f.startRouter(t, procOptions{})
		}
		must := append(ids, accepted...)
		f.waitDrained(t, len(must), p)
		for _, failure := range failures {
			t.Logf("http failure: %s", failure)
		}
		f.verify(t, must, dropped, fmt.Sprintf("sigterms=%d exit_code/took=%s http_ok=%d http_failed=%d took=%v",
			stops, strings.Join(exits, ","), len(accepted), len(dropped), since(start)))
	})
}

// TestHTTPKill9 crashes the router with SIGKILL while an Auth-Service-like
// client posts events to the HTTP fallback, and restarts it on the same
// address. Every event answered 200 has its command; an event whose
// requests all failed may or may not have one; none has two (the client
// retries an event whose request died with the process).
func TestHTTPKill9(t *testing.T) {
	t.Parallel()
	forEachBackend(t, "http-kill9", func(t *testing.T, f *fixture) {
		m := f.size.httpEvents
		start := time.Now()
		p := f.startRouter(t, procOptions{})
		client := newAuthClient(p.httpAddr)
		events := f.newEvents(m)
		done := make(chan struct{})
		go func() { defer close(done); client.run(t.Context(), events) }()

		killAt := f.randomPoint(m/4, 3*m/4)
		deadline := time.Now().Add(f.size.drain)
		for client.ok.Load() < int64(killAt) {
			select {
			case <-done:
				t.Fatalf("the client finished before %d events were accepted", killAt)
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %d accepted events (have %d)", killAt, client.ok.Load())
			}
			time.Sleep(time.Millisecond)
		}
		p.kill(t)
		at := client.ok.Load()
		p = f.startRouter(t, procOptions{httpAddr: p.httpAddr})
		select {
		case <-done:
		case <-time.After(f.size.drain):
			t.Fatal("the client did not finish")
		}
		for _, failure := range client.failures {
			t.Logf("http failure: %s", failure)
		}
		f.verify(t, client.accepted, client.dropped, fmt.Sprintf("http_ok=%d http_failed=%d http_retried=%d killed_at_ok=%d took=%v",
			len(client.accepted), len(client.dropped), client.retried, at, since(start)))
	})
}

// TestReplicas runs three routers on the same stream, durable and
// database, and kills replicas with SIGKILL while they drain: the first
// victim is not replaced (the survivors take over its unacked events), each
// later one is.
func TestReplicas(t *testing.T) {
	t.Parallel()
	forEachBackend(t, "replicas", func(t *testing.T, f *fixture) {
		n, kills := f.size.events, f.size.kills
		ids := f.publishBacklog(t, n)
		start := time.Now()
		live := []*routerProc{f.startRouter(t, procOptions{}), f.startRouter(t, procOptions{}), f.startRouter(t, procOptions{})}
		var at []string
		for k := range kills {
			f.waitFaultPoint(t, n, k, kills, live...)
			i := f.rng.IntN(len(live))
			victim := live[i]
			victim.kill(t)
			live = append(live[:i], live[i+1:]...)
			at = append(at, fmt.Sprintf("%s@%d", victim.name, f.committed(t)))
			if k > 0 {
				live = append(live, f.startRouter(t, procOptions{}))
			}
		}
		f.waitDrained(t, n, live...)
		f.verify(t, ids, nil, fmt.Sprintf("replicas=3 kills=%d killed=%s took=%v", kills, strings.Join(at, ","), since(start)))
	})
}

// exec runs a statement on the test's own connection to the database.
func (f *fixture) exec(t *testing.T, query string) {
	t.Helper()
	if _, err := f.db.SQL.ExecContext(t.Context(), query); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
}

// countIn is COUNT(*) of a table, from the test's own connection (which
// does not go through any proxy).
func (f *fixture) countIn(t *testing.T, table string) int {
	t.Helper()
	var n int
	if err := f.db.SQL.QueryRowContext(t.Context(), `SELECT COUNT(*) FROM `+table).Scan(&n); err != nil {
		t.Fatalf("count %s: %v", table, err)
	}
	return n
}

func since(t time.Time) time.Duration { return time.Since(t).Round(100 * time.Millisecond) }
