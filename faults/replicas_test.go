package faults

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/social/user-events-router/configs"
	"github.com/social/user-events-router/schema"
)

// Per-user order across replicas (README "Running more than one replica"),
// checked from what a consumer of the commands can see: each command's
// payload names its user, the stream sequence of its event, and the
// user_sequence the router's ledger gave it in commit order. A user's
// commands, taken by user_sequence, must have rising stream sequences.
const (
	// eventsPerUser: each user's history is a created and then updates,
	// each stamped a second after the one before.
	eventsPerUser = 4
	// usersPerBlock users' histories are interleaved in the stream (the
	// first event of each, then the second of each, …), so a user's next
	// event is usersPerBlock sequences on: well within the durable's
	// NATS_MAX_ACK_PENDING, so a killed router holds users whose later
	// events go to the next one, and replicas sharing a push durable get
	// one user's events at the same time.
	usersPerBlock = 8
	// pinnedTTL is the routers' NATS_PINNED_TTL, its minimum: how long the
	// killed pinned client keeps the durable from its standbys.
	pinnedTTL = 3 * time.Second
)

// TestReplicasPinned runs three routers on the pinned pull durable
// (NATS_CONSUMER=pinned) and SIGKILLs the active one (the pinned client:
// the only one handling deliveries) K times mid-drain, starting a
// replacement after each takeover. A standby must take over within about
// the pin's TTL, and every user's commands must commit in stream order
// across the whole run: the new pinned client holds back the later events
// of users whose earlier ones the dead one still held until those come
// back. Every event has exactly one command (a reordered update would have
// none: the ledger finds it stale), the stream ends empty, nothing is
// poisoned.
func TestReplicasPinned(t *testing.T) {
	t.Parallel()
	forEachBackend(t, "replicas-pinned", func(t *testing.T, f *fixture) {
		r := f.replicasInOrder(t, configs.ConsumerPinned)
		if r.order.violations > 0 {
			t.Errorf("%d commands committed after a later event of their user (by user_sequence), e.g. %s", r.order.violations, strings.Join(r.order.samples, "; "))
		}
		if r.order.noCommand > 0 {
			t.Errorf("%d events have no command: the ledger wrote none because a later event of their user had committed first (order broken), or they were lost", r.order.noCommand)
		}
		// The pin moves after the TTL without a pull (the dead client
		// pulled at most a third of it before), and the new pinned client
		// commits other users' events at once.
		if limit := 3 * pinnedTTL; r.failoverMax > limit {
			t.Errorf("failover took %v, more than %v (NATS_PINNED_TTL=%v): %s", r.failoverMax, limit, pinnedTTL, durations(r.failovers))
		}
	})
}

// TestReplicasPushOrder is TestReplicasPinned on the push durable with a
// deliver group (NATS_CONSUMER=push), where one user's events
// spread over the replicas: the check must see them out of order — a
// command committed after a later one of its user, or an update the
// ledger then found stale and wrote nothing for. Otherwise the pinned
// test's zero would prove nothing. Nothing is lost for the monolith (the
// ledger writes no stale update; apply orders by occurred_at), so only the
// end checks of every scenario apply: no command twice, the stream empty,
// no poison.
func TestReplicasPushOrder(t *testing.T) {
	t.Parallel()
	forEachBackend(t, "replicas-push-order", func(t *testing.T, f *fixture) {
		f.skipsEvents = true
		r := f.replicasInOrder(t, configs.ConsumerPush)
		if r.order.violations+r.order.noCommand == 0 {
			t.Errorf("three replicas on the deliver group kept every user's %d events in stream order: the order check saw nothing to catch", eventsPerUser)
		}
	})
}

// replicasRun is what replicasInOrder measured.
type replicasRun struct {
	order       orderFigures
	failovers   []time.Duration
	failoverMax time.Duration
}

// replicasInOrder publishes users' interleaved histories, runs three
// routers on the durable kind consumer, kills the active one K times at
// random points of the drain (measuring how long until another commits)
// and restarts a replacement each time, waits for the drain, and logs the
// scenario line with the per-user order figures. It fails the test on the
// end checks every scenario shares and on an event with two commands; what
// order must hold is the caller's.
func (f *fixture) replicasInOrder(t *testing.T, consumer string) replicasRun {
	t.Helper()
	pinned := consumer == configs.ConsumerPinned
	kills := f.size.kills
	users := max(1, f.size.events/eventsPerUser)
	events := f.publishHistories(t, users)
	n := len(events)
	o := procOptions{env: []string{"NATS_CONSUMER=" + consumer, "NATS_PINNED_TTL=" + pinnedTTL.String()}}
	start := time.Now()
	live := []*routerProc{f.startRouter(t, o), f.startRouter(t, o), f.startRouter(t, o)}
	all := slices.Clone(live)
	var r replicasRun
	var killed []string
	for k := range kills {
		f.waitAckedPoint(t, n, k, kills, live...)
		victim := f.activeReplica(t, live, pinned)
		if victim == nil {
			killed = append(killed, "none(drained)")
			continue
		}
		at := fmt.Sprint(f.committed(t))
		if info := f.durableInfo(t); info != nil {
			at += fmt.Sprintf("(ack_pending=%d,ack_floor=%d,delivered=%d)", info.NumAckPending, info.AckFloor.Stream, info.Delivered.Stream)
		}
		survivors := slices.DeleteFunc(slices.Clone(live), func(p *routerProc) bool { return p == victim })
		took, ok := f.failover(t, victim, survivors)
		if ok {
			r.failovers = append(r.failovers, took)
			r.failoverMax = max(r.failoverMax, took)
		} else {
			at += "(drained before another commit)"
		}
		killed = append(killed, victim.name+"@"+at)
		replacement := f.startRouter(t, o)
		live = append(survivors, replacement)
		all = append(all, replacement)
	}
	// An empty stream says the drain is over: each event left it when
	// acked, after its command (if any) committed. Waiting for n commands
	// instead would wait out the whole drain timeout on a run that lost
	// order (a reordered update has none).
	f.waitDrained(t, 0, live...)
	out := f.measure(t)
	r.order = perUserOrder(out, events)
	t.Log(f.summary(out, n, fmt.Sprintf(
		"consumer=%s replicas=3 users=%d events_per_user=%d kills=%d killed=%s failover=%s failover_max=%v order_violations=%d no_command=%d takeovers=%s took=%v",
		consumer, users, eventsPerUser, kills, strings.Join(killed, ","), durations(r.failovers), r.failoverMax.Round(time.Millisecond),
		r.order.violations, r.order.noCommand, takeovers(t, all), since(start))))
	if r.order.twice > 0 {
		t.Errorf("%d events have more than one command", r.order.twice)
	}
	if r.order.stray > 0 {
		t.Errorf("%d commands are of no event published here", r.order.stray)
	}
	for _, p := range endProblems(out) {
		t.Error(p)
	}
	return r
}

// streamEvent is one published event and where the stream put it.
type streamEvent struct {
	seq   uint64
	user  string
	index int // its place in its user's history: 0 is the created
}

// publishHistories publishes users new users' histories (a created, then
// eventsPerUser-1 updates, a second apart, in the Auth Service's shape),
// usersPerBlock users at a time interleaved, and returns each event with
// the stream sequence its publish ack gave it.
func (f *fixture) publishHistories(t *testing.T, users int) []streamEvent {
	t.Helper()
	t0 := time.Now().UTC().Truncate(time.Second).Add(-time.Hour)
	type pending struct {
		subject string
		body    []byte
		ev      streamEvent
	}
	var all []pending
	for first := 0; first < users; first += usersPerBlock {
		block := make([]string, min(usersPerBlock, users-first))
		names := make([]int, len(block))
		for u := range block {
			f.users++
			block[u], names[u] = uuid.NewString(), f.users
		}
		for i := range eventsPerUser {
			action := schema.ActionUpdated
			if i == 0 {
				action = schema.ActionCreated
			}
			for u, id := range block {
				name := fmt.Sprintf("u%d-%d", names[u], i)
				body, err := json.Marshal(schema.ProducerEvent{ID: id, Email: name + "@example.com", Username: name, Action: action,
					Timestamp: t0.Add(time.Duration(i) * time.Second).Format(time.RFC3339), ServiceName: schema.ProducerServiceName})
				if err != nil {
					t.Fatal(err)
				}
				all = append(all, pending{subject: "user.events." + action, body: body, ev: streamEvent{user: id, index: i}})
			}
		}
	}
	const batch = 500
	out := make([]streamEvent, 0, len(all))
	for start := 0; start < len(all); start += batch {
		part := all[start:min(start+batch, len(all))]
		futures := make([]jetstream.PubAckFuture, 0, len(part))
		for _, p := range part {
			fut, err := f.js.PublishAsync(p.subject, p.body)
			if err != nil {
				t.Fatalf("publish: %v", err)
			}
			futures = append(futures, fut)
		}
		select {
		case <-f.js.PublishAsyncComplete():
		case <-time.After(30 * time.Second):
			t.Fatal("publish: no acks within 30s")
		}
		for i, fut := range futures {
			select {
			case ack := <-fut.Ok():
				ev := part[i].ev
				ev.seq = ack.Sequence
				out = append(out, ev)
			case err := <-fut.Err():
				t.Fatalf("publish: %v", err)
			}
		}
	}
	f.published += len(out)
	if got := f.streamMsgs(t); got != uint64(f.published) {
		t.Fatalf("stream holds %d messages after publishing %d", got, f.published)
	}
	return out
}

// durableInfo is the durable's state, pull or push; nil when the broker
// does not answer.
func (f *fixture) durableInfo(t *testing.T) *jetstream.ConsumerInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if c, err := f.js.Consumer(ctx, streamName, durable); err == nil {
		if info, err := c.Info(ctx); err == nil {
			return info
		}
	}
	return f.consumer(ctx)
}

// deliveries is what one router has done, by its /metrics: the deliveries
// it handled (any outcome) and those that committed a command.
type deliveries struct{ handled, committed float64 }

// readDeliveries sums the router's user_events_router_events_total.
func readDeliveries(p *routerProc) (deliveries, error) {
	body, err := scrape(p.adminAddr)
	if err != nil {
		return deliveries{}, fmt.Errorf("%s: %w", p.name, err)
	}
	var d deliveries
	for line := range strings.Lines(body) {
		if !strings.HasPrefix(line, "user_events_router_events_total{") {
			continue
		}
		labels, value, _ := strings.Cut(strings.TrimSpace(line), "} ")
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			return deliveries{}, fmt.Errorf("%s: /metrics line %q: %w", p.name, line, err)
		}
		d.handled += v
		if strings.Contains(labels, `outcome="committed"`) {
			d.committed += v
		}
	}
	return d, nil
}

// readAll reads every router's deliveries; a router that does not answer
// keeps its figures from before (last), and err says why.
func readAll(procs []*routerProc, last []deliveries) ([]deliveries, error) {
	out := make([]deliveries, len(procs))
	var errs []string
	for i, p := range procs {
		d, err := readDeliveries(p)
		if err != nil {
			errs = append(errs, err.Error())
			if last != nil {
				d = last[i]
			}
		}
		out[i] = d
	}
	if len(errs) > 0 {
		return out, fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return out, nil
}

// activeReplica is a router of live that is handling deliveries now, found
// by its counters growing: on the pinned durable the pinned client, which
// must be the only one; on the push durable any of them (each gets a
// share). It returns nil once the stream is empty (the drain is over).
func (f *fixture) activeReplica(t *testing.T, live []*routerProc, pinned bool) *routerProc {
	t.Helper()
	deadline := time.Now().Add(f.size.drain)
	before, err := readAll(live, nil)
	for {
		time.Sleep(50 * time.Millisecond)
		var now []deliveries
		now, err = readAll(live, before)
		var growing []*routerProc
		for i, p := range live {
			if now[i].handled > before[i].handled {
				growing = append(growing, p)
			}
		}
		if pinned && len(growing) > 1 {
			t.Errorf("on the pinned durable %d replicas handled deliveries within the same 50 ms: %s", len(growing), names(growing))
		}
		if len(growing) > 0 {
			return growing[f.rng.IntN(len(growing))]
		}
		if s, serr := f.tryStreamMsgs(t.Context()); serr == nil && s == 0 {
			return nil
		}
		f.failIfAllExited(t, live)
		if time.Now().After(deadline) {
			t.Fatalf("no router handled a delivery for %v (%v): %s", f.size.drain, err, f.progress(t.Context()))
		}
		before = now
	}
}

// failover SIGKILLs victim and returns how long it took until one of
// survivors committed a command: the durable's failover as the monolith
// sees it (on the push durable the survivors never stopped).
func (f *fixture) failover(t *testing.T, victim *routerProc, survivors []*routerProc) (time.Duration, bool) {
	t.Helper()
	before, err := readAll(survivors, nil)
	if err != nil {
		t.Fatalf("read the survivors' counters before killing %s: %v", victim.name, err)
	}
	killed := time.Now()
	victim.kill(t)
	deadline := killed.Add(f.size.drain)
	for {
		now, err := readAll(survivors, before)
		for i := range survivors {
			if now[i].committed > before[i].committed {
				return time.Since(killed), true
			}
		}
		if s, serr := f.tryStreamMsgs(t.Context()); serr == nil && s == 0 {
			// Everything was acked: the victim held nothing, and no
			// commit is left to come.
			return 0, false
		}
		f.failIfAllExited(t, survivors)
		if time.Now().After(deadline) {
			t.Fatalf("no router committed within %v of killing %s (%v): %s", f.size.drain, victim.name, err, f.progress(t.Context()))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// orderFigures is how a run's commands keep their users' stream order.
type orderFigures struct {
	// violations: commands whose event the stream holds before that of a
	// command their user got earlier (a lower user_sequence).
	violations int
	samples    []string // a few of them, for the failure message
	noCommand  int      // events with no command
	twice      int      // events with more than one command
	stray      int      // commands of no event published here
}

// perUserOrder reads o's commands against the events published.
func perUserOrder(o outcome, events []streamEvent) orderFigures {
	var fig orderFigures
	bySeq := make(map[uint64]streamEvent, len(events))
	for _, ev := range events {
		bySeq[ev.seq] = ev
	}
	commands := make(map[uint64]int, len(events))
	type command struct{ userSeq, streamSeq, attempt uint64 }
	for user, payloads := range o.payloads {
		var cmds []command
		for _, payload := range payloads {
			var c struct {
				UserSequence uint64 `json:"user_sequence"`
				Source       struct {
					Ingress         string `json:"ingress"`
					StreamSequence  uint64 `json:"stream_sequence"`
					DeliveryAttempt uint64 `json:"delivery_attempt"`
				} `json:"source"`
			}
			if err := json.Unmarshal(payload, &c); err != nil {
				fig.stray++
				continue
			}
			ev, ok := bySeq[c.Source.StreamSequence]
			if c.Source.Ingress != schema.IngressNATS || !ok || ev.user != user {
				fig.stray++
				continue
			}
			commands[ev.seq]++
			cmds = append(cmds, command{c.UserSequence, c.Source.StreamSequence, c.Source.DeliveryAttempt})
		}
		slices.SortFunc(cmds, func(a, b command) int { return cmp.Compare(a.userSeq, b.userSeq) })
		var newest uint64
		wrong := false
		for _, c := range cmds {
			if c.streamSeq < newest {
				fig.violations++
				wrong = true
			}
			newest = max(newest, c.streamSeq)
		}
		if wrong && len(fig.samples) < 3 {
			var published []string
			for _, ev := range events {
				if ev.user == user {
					published = append(published, strconv.FormatUint(ev.seq, 10))
				}
			}
			committed := make([]string, len(cmds))
			for i, c := range cmds {
				committed[i] = fmt.Sprintf("%d(delivery %d)", c.streamSeq, c.attempt)
			}
			fig.samples = append(fig.samples, fmt.Sprintf("user %s published at stream sequences %s, committed (by user_sequence) %s",
				user, strings.Join(published, ","), strings.Join(committed, ",")))
		}
	}
	for _, ev := range events {
		switch commands[ev.seq] {
		case 0:
			fig.noCommand++
		case 1:
		default:
			fig.twice++
		}
	}
	return fig
}

// takeovers lists, per router, the expected_back of each of its log's
// "pinned: this process now holds the durable" lines: how many messages
// the previous pinned client still held when it took over.
func takeovers(t *testing.T, procs []*routerProc) string {
	t.Helper()
	var out []string
	for _, p := range procs {
		for line := range strings.Lines(p.log(t)) {
			if !strings.Contains(line, "now holds the durable") {
				continue
			}
			var l struct {
				ExpectedBack int `json:"expected_back"`
			}
			if err := json.Unmarshal([]byte(line), &l); err != nil {
				out = append(out, p.name+":?")
				continue
			}
			out = append(out, fmt.Sprintf("%s:%d", p.name, l.ExpectedBack))
		}
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, ",")
}

func durations(ds []time.Duration) string {
	if len(ds) == 0 {
		return "none"
	}
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.Round(time.Millisecond).String()
	}
	return strings.Join(out, ",")
}

func names(procs []*routerProc) string {
	out := make([]string, len(procs))
	for i, p := range procs {
		out[i] = p.name
	}
	return strings.Join(out, ",")
}

// waitAckedPoint is waitFaultPoint counted in events acked (gone from the
// stream) rather than in commands: on a durable that loses order some
// events rightly get no command, so a point counted in commands might
// never come.
func (f *fixture) waitAckedPoint(t *testing.T, total, k, kills int, procs ...*routerProc) {
	t.Helper()
	acked := func() int {
		s, err := f.tryStreamMsgs(t.Context())
		if err != nil {
			return -1
		}
		return total - int(s)
	}
	done := acked()
	if done >= total {
		t.Logf("fault %d of %d: the backlog drained before it", k+1, kills)
		return
	}
	share := max(2, (total-done)/(kills-k+1))
	point := f.randomPoint(done+1, min(done+share, total))
	deadline := time.Now().Add(f.size.drain)
	for {
		if a := acked(); a >= point {
			return
		}
		f.failIfAllExited(t, procs)
		if time.Now().After(deadline) {
			t.Fatalf("fault %d of %d: %d events not acked within %v: %s", k+1, kills, point, f.size.drain, f.progress(t.Context()))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
