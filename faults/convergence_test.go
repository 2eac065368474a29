package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/social/user-events-router/apply"
	"github.com/social/user-events-router/apply/applytest"
	"github.com/social/user-events-router/schema"
)

// playWorkers is how many users are played at once: their deliveries
// interleave, each user's keep their order.
const playWorkers = 16

// TestConvergence checks the outcome the product is for (DESIGN §4,
// "Converges"): N users' histories — registrations, updates, deletions and
// re-registrations, delivered as the Auth Service delivers them (every try
// re-stamped, by NATS and HTTP, the buffered NATS copy arriving late,
// byte-identical events within one second) — go through the router and
// `apply`, each SIGKILLed and restarted K times at random points, while
// the database goes away once. Once the stream is drained and apply has
// caught up, user_identities must equal the Auth Service's users (the
// model, applytest.History) row for row.
func TestConvergence(t *testing.T) {
	t.Parallel()
	forEachBackend(t, "convergence", func(t *testing.T, f *fixture) {
		f.httpTraffic = true // commands come by HTTP too, and events are not one command each
		start := time.Now()
		users, model, leftToBroker := f.histories(f.size.users)
		total := 0
		for _, u := range users {
			total += len(u.deliveries)
		}
		plan := f.faultPlan(total)

		outage := f.newDBOutage(t)
		router := f.startRouter(t, procOptions{databaseURL: outage.url})
		applier := f.startRouter(t, procOptions{databaseURL: outage.url, apply: true})
		running := func() []*routerProc { return []*routerProc{router, applier} }

		ctx, cancel := context.WithCancel(t.Context())
		pb := newPlayback(f, router.httpAddr)
		var wg sync.WaitGroup
		wg.Go(func() { pb.floor.follow(ctx, f) })
		wg.Go(func() { pb.play(ctx, users) })
		defer func() { cancel(); wg.Wait() }()

		var notes []string
		for _, ft := range plan {
			// One fault at a time: none strikes an HTTP delivery that is
			// still retrying after the one before, so that no delivery is
			// dropped (see faultPlan).
			f.waitFor(t, fmt.Sprintf("%d deliveries sent and no HTTP delivery retrying (the %s fault)", ft.at, ft.kind), func() (bool, string) {
				return pb.sent.Load() >= int64(ft.at) && pb.retrying() == 0, pb.progress()
			}, running()...)
			at := pb.sent.Load()
			switch ft.kind {
			case faultRouter:
				router.kill(t)
				router = f.startRouter(t, procOptions{databaseURL: outage.url, httpAddr: router.httpAddr})
			case faultApply:
				applier.kill(t)
				applier = f.startRouter(t, procOptions{databaseURL: outage.url, apply: true})
			case faultDB:
				before, after, _ := outage.cut(t, ft.length)
				if after != before {
					t.Errorf("database outage: %d commands written while the database was away (the outage was not real)", after-before)
				}
				notes = append(notes, fmt.Sprintf("%s@%d(%v)", ft.kind, at, ft.length))
				continue
			}
			notes = append(notes, fmt.Sprintf("%s@%d", ft.kind, at))
		}
		f.waitFor(t, "every delivery sent", func() (bool, string) {
			return pb.finished.Load(), pb.progress()
		}, running()...)
		played := since(start)
		f.waitDrained(t, 0, router)
		f.waitFor(t, "apply to catch up (lag 0)", func() (bool, string) {
			n, err := apply.Lag(t.Context(), f.db, apply.DefaultConsumerGroup)
			return err == nil && n == 0, fmt.Sprintf("lag=%d (err %v)", n, err)
		}, running()...)
		caughtUp := since(start)
		// The operator's view of the same: apply's own gauge (refreshed
		// every few seconds) comes down to 0.
		f.waitFor(t, "apply's lag gauge to read 0", func() (bool, string) {
			body, err := scrape(applier.adminAddr)
			return err == nil && strings.Contains(body, "\nuser_events_apply_lag_commands 0\n") &&
				strings.Contains(body, "\nuser_events_apply_lag_known 1\n"), fmt.Sprint(err)
		}, running()...)
		cancel()
		wg.Wait()
		for _, err := range pb.errs {
			t.Error(err)
		}

		got, err := applytest.Identities(f.db.SQL)
		if err != nil {
			t.Fatalf("read user_identities: %v", err)
		}
		diff, equal := applytest.Diff(model, got)
		t.Log(diff)
		o := f.measure(t)
		t.Log(f.summary(o, pb.natsPublished+pb.httpSent, fmt.Sprintf(
			"users=%d deliveries=%d nats_published=%d http_sent=%d http_ok=%d http_dropped=%d http_retried=%d redeliveries_left_to_broker=%d faults=%s played=%v caught_up=%v took=%v",
			len(users), total, pb.natsPublished, pb.httpSent, pb.httpOK(), len(pb.dropped()), pb.retried(), leftToBroker,
			strings.Join(notes, ","), played, caughtUp, since(start))))
		if !equal {
			t.Errorf("%s: the monolith's users are not the Auth Service's; a sample:\n%s", diff, wrongSample(users, model, got, o, 5))
		}
		for _, p := range endProblems(o) {
			t.Error(p)
		}
		if dropped := pb.dropped(); len(dropped) > 0 {
			// The Auth Service drops an event after three failed tries;
			// the model assumes none was (see faultPlan), so a diff may
			// come from these.
			t.Logf("%d HTTP deliveries dropped after three tries (users %s); their tries: %s",
				len(dropped), sample(dropped), strings.Join(pb.failures(dropped), "; "))
		}
	})
}

// userHistory is one user's deliveries in the order the router is to see
// them.
type userHistory struct {
	id         string
	deliveries []applytest.Delivery
}

// histories makes n users' histories with applytest.History and returns
// them with the Auth Service's users at the end. A NATS delivery that
// History repeats (a redelivery after a lost ack) is left out: in a real
// run redelivering is the broker's job, and the kills make real ones. The
// count of those left out is returned.
func (f *fixture) histories(n int) ([]userHistory, map[string]applytest.User, int) {
	t0 := time.Now().UTC().Truncate(time.Second).Add(-2 * time.Hour)
	model := make(map[string]applytest.User, n)
	users := make([]userHistory, n)
	var seq uint64
	left := 0
	r := f.rng
	for i := range users {
		// From the seeded generator, so that FAULTS_SEED replays the users
		// too; unique by i.
		id := fmt.Sprintf("%08x-%04x-4%03x-%04x-%012x", r.Uint32(), r.Uint32()&0xffff, r.Uint32()&0xfff, 0x8000|r.Uint32()&0x3fff, i)
		deliveries, final := applytest.History(r, id, t0.Add(time.Duration(r.IntN(3600))*time.Second), &seq)
		published := map[uint64]bool{}
		u := userHistory{id: id}
		for _, d := range deliveries {
			if !d.HTTP {
				if published[d.StreamSeq] {
					left++
					continue
				}
				published[d.StreamSeq] = true
			}
			u.deliveries = append(u.deliveries, d)
		}
		users[i], model[id] = u, final
	}
	return users, model, left
}

// Kinds of fault TestConvergence injects.
const (
	faultRouter = "kill_router"
	faultApply  = "kill_apply"
	faultDB     = "db_outage"
)

type plannedFault struct {
	kind   string
	at     int           // deliveries sent when it strikes
	length time.Duration // of a database outage
}

// faultPlan places K router kills, K apply kills and one database outage
// at random points between a tenth and nine tenths of total deliveries
// sent. The Auth Service drops an HTTP delivery whose three tries (over
// 4 s) all fail, and the model drops nothing; so the outage lasts 1.5 to
// 2.5 s, a restart takes less, and a fault waits for the HTTP deliveries
// the one before made retry.
func (f *fixture) faultPlan(total int) []plannedFault {
	var plan []plannedFault
	for range f.size.kills {
		plan = append(plan, plannedFault{kind: faultRouter, at: f.randomPoint(total/10, 9*total/10)})
		plan = append(plan, plannedFault{kind: faultApply, at: f.randomPoint(total/10, 9*total/10)})
	}
	plan = append(plan, plannedFault{kind: faultDB, at: f.randomPoint(total/10, 9*total/10),
		length: time.Duration(1500+f.rng.IntN(1000)) * time.Millisecond})
	slices.SortStableFunc(plan, func(a, b plannedFault) int { return a.at - b.at })
	return plan
}

// playback sends users' deliveries the way the Auth Service does: a NATS
// delivery is a publish to user.events.<action> (plain JSON, no headers),
// an HTTP delivery goes through the Auth-Service-like client (3 tries,
// only 200 counts). playWorkers users are played at once.
//
// Each user's deliveries reach the router in their order. An HTTP
// delivery is answered after its commit, so the next one follows it; a
// NATS delivery is only stored by the publish, so an HTTP delivery after
// it waits until the durable's ack floor has passed it (the Auth Service
// itself waits 5 s on NATS before it falls back to HTTP). Without that
// wait an HTTP delivery could overtake the user's earlier NATS ones,
// orders History does not make and DESIGN §3 does not promise to decide
// (a re-registration in the second of its deletion, by the other path).
type playback struct {
	f     *fixture
	floor *ackFloor
	// clients are the workers' Auth-Service-like HTTP clients, one each.
	clients []*authClient

	sent     atomic.Int64 // deliveries sent (published, or tried by HTTP)
	finished atomic.Bool

	// Set by play, read after it returned.
	natsPublished, httpSent int
	errs                    []string
}

func newPlayback(f *fixture, httpAddr string) *playback {
	pb := &playback{f: f, floor: newAckFloor()}
	for range playWorkers {
		pb.clients = append(pb.clients, newAuthClient(httpAddr))
	}
	return pb
}

// play sends every user's deliveries and sets finished.
func (pb *playback) play(ctx context.Context, users []userHistory) {
	defer pb.finished.Store(true)
	next := make(chan userHistory)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, c := range pb.clients {
		wg.Go(func() {
			defer c.client.CloseIdleConnections()
			for u := range next {
				published, posted, err := pb.user(ctx, c, u)
				mu.Lock()
				pb.natsPublished += published
				pb.httpSent += posted
				if err != nil && ctx.Err() == nil {
					pb.errs = append(pb.errs, fmt.Sprintf("user %s: %v", u.id, err))
				}
				mu.Unlock()
			}
		})
	}
	for _, u := range users {
		select {
		case next <- u:
		case <-ctx.Done():
		}
	}
	close(next)
	wg.Wait()
}

// user sends one user's deliveries in order.
func (pb *playback) user(ctx context.Context, c *authClient, u userHistory) (published, posted int, err error) {
	var last uint64 // stream sequence of the user's newest publish
	for _, d := range u.deliveries {
		if ctx.Err() != nil {
			return published, posted, ctx.Err()
		}
		if d.HTTP {
			if err := pb.floor.wait(ctx, last); err != nil {
				return published, posted, err
			}
			c.send(ctx, event{userID: u.id, body: d.Body})
			posted++
		} else {
			var ev schema.ProducerEvent
			if err := json.Unmarshal(d.Body, &ev); err != nil {
				return published, posted, fmt.Errorf("history made an event that is not JSON: %v", err)
			}
			pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			ack, err := pb.f.js.Publish(pctx, "user.events."+ev.Action, d.Body)
			cancel()
			if err != nil {
				return published, posted, fmt.Errorf("publish: %w", err)
			}
			last = ack.Sequence
			published++
		}
		pb.sent.Add(1)
	}
	return published, posted, nil
}

func (pb *playback) progress() string {
	return fmt.Sprintf("sent=%d http_retrying=%d ack_floor=%d %s", pb.sent.Load(), pb.retrying(), pb.floor.get(), pb.f.progress(context.Background()))
}

// retrying counts the HTTP deliveries being retried now.
func (pb *playback) retrying() (n int64) {
	for _, c := range pb.clients {
		n += c.retrying.Load()
	}
	return n
}

// The clients' records, read after play returned.
func (pb *playback) httpOK() (n int) {
	for _, c := range pb.clients {
		n += len(c.accepted)
	}
	return n
}

func (pb *playback) dropped() (ids []string) {
	for _, c := range pb.clients {
		ids = append(ids, c.dropped...)
	}
	return ids
}

func (pb *playback) retried() (n int) {
	for _, c := range pb.clients {
		n += c.retried
	}
	return n
}

// failures are the failed tries of the users ids.
func (pb *playback) failures(ids []string) (out []string) {
	for _, c := range pb.clients {
		for _, f := range c.failures {
			if slices.ContainsFunc(ids, func(id string) bool { return strings.HasPrefix(f, id+" ") }) {
				out = append(out, f)
			}
		}
	}
	return out
}

// ackFloor follows the durable's ack floor: the stream sequence up to
// which every message is acked, that is (every ack following its commit)
// carried by the router.
type ackFloor struct {
	mu      sync.Mutex
	seq     uint64
	changed chan struct{} // closed and replaced when seq moves
}

func newAckFloor() *ackFloor { return &ackFloor{changed: make(chan struct{})} }

// follow polls the durable until ctx ends.
func (a *ackFloor) follow(ctx context.Context, f *fixture) {
	for ctx.Err() == nil {
		if info := f.consumer(ctx); info != nil {
			a.mu.Lock()
			if info.AckFloor.Stream > a.seq {
				a.seq = info.AckFloor.Stream
				close(a.changed)
				a.changed = make(chan struct{})
			}
			a.mu.Unlock()
		}
		select {
		case <-ctx.Done():
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func (a *ackFloor) get() uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.seq
}

// wait returns once the floor is at or past seq.
func (a *ackFloor) wait(ctx context.Context, seq uint64) error {
	for {
		a.mu.Lock()
		at, changed := a.seq, a.changed
		a.mu.Unlock()
		if at >= seq {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		}
	}
}

// waitFor polls cond until it holds, failing the test when any of procs
// has exited by itself or f.size.drain passes; cond's second result says
// where things stand, for the progress and failure messages.
func (f *fixture) waitFor(t *testing.T, what string, cond func() (bool, string), procs ...*routerProc) {
	t.Helper()
	deadline := time.Now().Add(f.size.drain)
	progress := newTicker()
	for {
		ok, state := cond()
		if ok {
			return
		}
		for _, p := range procs {
			f.failIfAllExited(t, []*routerProc{p})
		}
		if progress() {
			t.Logf("waiting for %s: %s", what, state)
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s: %s", f.size.drain, what, state)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// scrape reads a process's /metrics.
func scrape(addr string) (string, error) {
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	resp, err := client.Get("http://" + addr + "/metrics")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("/metrics: %s", resp.Status)
	}
	return string(b), nil
}

// wrongSample describes up to n users whose row differs from the model:
// what the Auth Service holds, what the monolith holds, the deliveries sent
// and the commands written for them.
func wrongSample(users []userHistory, model, got map[string]applytest.User, o outcome, n int) string {
	var b strings.Builder
	for _, u := range users {
		g, ok := got[u.id]
		if ok && g == model[u.id] {
			continue
		}
		if n == 0 {
			break
		}
		n--
		fmt.Fprintf(&b, "user %s: Auth Service %+v, monolith %+v (row present: %v)\n", u.id, model[u.id], g, ok)
		for _, d := range u.deliveries {
			path := "nats"
			if d.HTTP {
				path = "http"
			}
			fmt.Fprintf(&b, "  sent %-4s %s\n", path, d.Body)
		}
		var cmds []schema.Command
		for _, p := range o.payloads[u.id] {
			c, err := apply.Decode(p)
			if err != nil {
				fmt.Fprintf(&b, "  command (undecodable: %v) %s\n", err, p)
				continue
			}
			cmds = append(cmds, c)
		}
		slices.SortFunc(cmds, func(a, b schema.Command) int { return int(a.UserSequence) - int(b.UserSequence) })
		for _, c := range cmds {
			fmt.Fprintf(&b, "  command %s gen=%d seq=%d at=%s email=%q username=%q ingress=%s stream_seq=%d attempt=%d\n",
				c.Type, c.Generation, c.UserSequence, c.OccurredAt.Format(time.RFC3339), c.Email, c.Username,
				c.Source.Ingress, c.Source.StreamSequence, c.Source.DeliveryAttempt)
		}
	}
	return b.String()
}
