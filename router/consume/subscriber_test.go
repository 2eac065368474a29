package consume_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/social/user-events-router/configs"
	"github.com/social/user-events-router/handlers"
	"github.com/social/user-events-router/router"
	"github.com/social/user-events-router/router/broker"
	"github.com/social/user-events-router/router/routertest"
)

// consumeAPI is one of the two ways the subscriber consumes its durable
// (see router.Subscriber), with the durable's max ack pending that selects
// it on a server that takes messages of up to 1 MiB: the default 1,000 ×
// 1 MiB is more than the NATS client's default pending limits (64 MiB),
// which only the legacy API lifts; 64 × 1 MiB is not. A durable with a
// max deliver is always consumed through the legacy API.
type consumeAPI struct {
	name          string
	maxAckPending int
	logs          string // what the subscriber logs as it subscribes
}

var (
	jetstreamAPI = consumeAPI{"jetstream", 64, "through nats.go's jetstream package"}
	legacyAPI    = consumeAPI{"legacy", 1000, "through nats.go's legacy JetStream API"}
	// pinnedAPI is the pinned pull durable (NATS_CONSUMER=pinned).
	pinnedAPI = consumeAPI{"pinned", 1000, "consuming the pull durable"}
)

// eachAPI runs test once on each way of consuming.
func eachAPI(t *testing.T, test func(t *testing.T, api consumeAPI)) {
	for _, api := range []consumeAPI{jetstreamAPI, legacyAPI, pinnedAPI} {
		t.Run(api.name, func(t *testing.T) { test(t, api) })
	}
}

// routerFixture is a nats-server holding the Auth Service's stream and the
// router's durable, for a router under test.
type routerFixture struct {
	js      jetstream.JetStream
	url     string
	cfg     configs.Config
	binding broker.Binding
	logger  *slog.Logger
	logs    *syncBuffer
	api     consumeAPI // the routers' subscribers must use it
}

// syncBuffer is a log destination the routers write to while tests read it.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// newRouterFixture makes the durable of cfg, with the max ack pending of
// api, which its routers' subscribers must then consume through.
func newRouterFixture(t *testing.T, cfg configs.Config, api consumeAPI) *routerFixture {
	t.Helper()
	cfg.MaxAckPending = api.maxAckPending
	cfg.Consumer = configs.ConsumerPush
	if api == pinnedAPI {
		cfg.Consumer = configs.ConsumerPinned
	}
	srv := routertest.StartServer(t)
	logs := &syncBuffer{}
	f := &routerFixture{js: routertest.JetStream(t, srv.URL), url: srv.URL, cfg: cfg, api: api, logs: logs,
		logger: slog.New(slog.NewTextHandler(logs, nil))}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if _, err := broker.EnsureStream(ctx, f.js, cfg.Stream, f.logger); err != nil {
		t.Fatal(err)
	}
	var err error
	if f.binding, err = broker.EnsureConsumer(ctx, f.js, cfg, f.logger); err != nil {
		t.Fatal(err)
	}
	return f
}

// start runs a router with handle; stop closes it and checks that it
// closed and ran without error.
func (f *routerFixture) start(t *testing.T, handle message.NoPublishHandlerFunc) (r *router.Router, stop func()) {
	t.Helper()
	return f.startOn(t, routertest.Conn(t, f.url), handle)
}

// startOn is start on the connection nc.
func (f *routerFixture) startOn(t *testing.T, nc *nats.Conn, handle message.NoPublishHandlerFunc) (r *router.Router, stop func()) {
	t.Helper()
	r, err := router.New(router.Options{Config: f.cfg, Binding: f.binding, Conn: nc, Logger: f.logger, Handle: handle})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- r.Run(context.Background()) }()
	return r, func() {
		t.Helper()
		if err := r.Close(); err != nil {
			t.Fatalf("close: %v", err)
		}
		if err := <-done; err != nil {
			t.Fatalf("run: %v", err)
		}
		if !strings.Contains(f.logs.String(), f.api.logs) {
			t.Errorf("the subscriber did not consume %s; its log:\n%s", f.api.logs, f.logs.String())
		}
	}
}

// drained waits until every event has left the stream (been acked).
func (f *routerFixture) drained(t *testing.T) {
	t.Helper()
	routertest.Eventually(t, 10*time.Second, "stream drained (every event acked)", func() bool {
		return routertest.StreamMsgs(t, f.js, f.cfg.Stream) == 0
	})
}

// orderRun consumes a backlog of users × perUser events, published
// interleaved, through a router whose handler takes a random time and
// (with failEvery > 0) fails the first delivery of every failEvery-th event.
// It returns, per user, the event numbers in the order they were "committed"
// (recorded under a lock when the handler succeeds).
func orderRun(t *testing.T, api consumeAPI, users, perUser, failEvery int) map[string][]int {
	t.Helper()
	return orderRunWith(t, api, users, perUser, failEvery, func(*configs.Config) {}, 0)
}

// orderRunWith is orderRun with the configuration changed by tune and
// each event padded with pad bytes.
func orderRunWith(t *testing.T, api consumeAPI, users, perUser, failEvery int, tune func(*configs.Config), pad int) map[string][]int {
	t.Helper()
	cfg := configs.Defaults()
	cfg.NakDelay, cfg.NakDelayMax = 20*time.Millisecond, 100*time.Millisecond
	cfg.CloseTimeout = 10 * time.Second
	cfg.MaxInFlight = 256
	tune(&cfg)
	f := newRouterFixture(t, cfg, api)
	for i := range perUser {
		for u := range users {
			body := fmt.Sprintf(`{"id":"user-%d","n":%d,"pad":%q}`, u, i, strings.Repeat("x", pad))
			routertest.Publish(t, f.js, "user.events.updated", []byte(body))
		}
	}

	var mu sync.Mutex
	committed := map[string][]int{}
	total := 0
	handle := func(msg *message.Message) error {
		var ev struct {
			ID string `json:"id"`
			N  int    `json:"n"`
		}
		if err := json.Unmarshal(msg.Payload, &ev); err != nil {
			return err
		}
		// Uneven handling times: without ordering, a later event of a
		// user would often finish first.
		time.Sleep(time.Duration(rand.IntN(3000)) * time.Microsecond)
		if failEvery > 0 && ev.N%failEvery == 1 && msg.Metadata.Get(handlers.MetaDeliveryAttempt) == "1" {
			return errors.New("transient failure on the first delivery")
		}
		mu.Lock()
		committed[ev.ID] = append(committed[ev.ID], ev.N)
		total++
		mu.Unlock()
		return nil
	}
	_, stop := f.start(t, handle)
	routertest.Eventually(t, 30*time.Second, "every event handled", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return total >= users*perUser
	})
	f.drained(t)
	stop()
	mu.Lock()
	defer mu.Unlock()
	if total != users*perUser {
		t.Fatalf("handled %d events successfully, want %d (a duplicate?)", total, users*perUser)
	}
	return committed
}

func checkOrder(t *testing.T, committed map[string][]int, users, perUser int) {
	t.Helper()
	if len(committed) != users {
		t.Fatalf("events of %d users committed, want %d", len(committed), users)
	}
	want := make([]int, perUser)
	for i := range want {
		want[i] = i
	}
	for user, got := range committed {
		if !slices.Equal(got, want) {
			t.Errorf("%s: committed in order %v, want stream order 0..%d", user, got, perUser-1)
		}
	}
}

// TestPerUserOrderIsStreamOrder: with hundreds of messages in flight and
// uneven handling times, each user's events still commit in stream order.
func TestPerUserOrderIsStreamOrder(t *testing.T) {
	const users, perUser = 20, 25
	eachAPI(t, func(t *testing.T, api consumeAPI) {
		checkOrder(t, orderRun(t, api, users, perUser, 0), users, perUser)
	})
}

// TestPerUserOrderSurvivesRedelivery: an event that fails and is handed back
// to the broker still commits before the same user's later events.
func TestPerUserOrderSurvivesRedelivery(t *testing.T) {
	const users, perUser = 10, 20
	eachAPI(t, func(t *testing.T, api consumeAPI) {
		checkOrder(t, orderRun(t, api, users, perUser, 6), users, perUser)
	})
}

// TestMaxInFlightBoundsConcurrentHandlers: the router hands out up to
// MAX_IN_FLIGHT messages at once — no more, and (for distinct users) that
// many, which is what lets their commits share a transaction.
func TestMaxInFlightBoundsConcurrentHandlers(t *testing.T) {
	eachAPI(t, testMaxInFlightBoundsConcurrentHandlers)
}

func testMaxInFlightBoundsConcurrentHandlers(t *testing.T, api consumeAPI) {
	cfg := configs.Defaults()
	cfg.MaxInFlight = 5
	f := newRouterFixture(t, cfg, api)
	const events = 40
	for i := range events {
		routertest.Publish(t, f.js, "user.events.created", fmt.Appendf(nil, `{"id":"user-%d"}`, i))
	}

	var mu sync.Mutex
	inside, peak, done := 0, 0, 0
	release := make(chan struct{})
	handle := func(*message.Message) error {
		mu.Lock()
		inside++
		peak = max(peak, inside)
		mu.Unlock()
		<-release
		mu.Lock()
		inside--
		done++
		mu.Unlock()
		return nil
	}
	r, stop := f.start(t, handle)
	routertest.Eventually(t, 10*time.Second, "MAX_IN_FLIGHT handlers running at once", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return inside == cfg.MaxInFlight
	})
	if n := r.InFlight(); n != cfg.MaxInFlight {
		t.Errorf("InFlight() = %d with %d handlers blocked, want %d", n, cfg.MaxInFlight, cfg.MaxInFlight)
	}
	close(release)
	routertest.Eventually(t, 10*time.Second, "every event handled", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return done == events
	})
	f.drained(t)
	stop()
	if peak > cfg.MaxInFlight {
		t.Fatalf("%d handlers ran at once, MAX_IN_FLIGHT is %d", peak, cfg.MaxInFlight)
	}
}

// TestPerUserOrderUnderByteBudget: with most events handed back for room
// (a budget of a few events), each user's events still commit in stream
// order, failures included.
func TestPerUserOrderUnderByteBudget(t *testing.T) {
	const users, perUser = 8, 12
	tune := func(c *configs.Config) { c.MaxInFlightBytes = 64 << 10 }
	eachAPI(t, func(t *testing.T, api consumeAPI) {
		checkOrder(t, orderRunWith(t, api, users, perUser, 5, tune, 12<<10), users, perUser)
	})
}

// budgetProbe is a handler that records the bytes of the messages inside
// it at once, and flags any moment they exceed the budget while more than
// one message is inside (a single larger one may be handled, alone).
type budgetProbe struct {
	budget  int
	release chan struct{} // handlers wait for it to close

	mu         sync.Mutex
	inside     int // messages
	bytes      int // their payload bytes
	peak       int
	violations []string
	handled    map[string]int // id → successful handlings
	attempts   map[string]int // id → highest delivery attempt seen
}

func newBudgetProbe(budget int) *budgetProbe {
	return &budgetProbe{budget: budget, release: make(chan struct{}), handled: map[string]int{}, attempts: map[string]int{}}
}

func (p *budgetProbe) handle(msg *message.Message) error {
	var ev struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(msg.Payload, &ev); err != nil {
		return err
	}
	attempt, _ := strconv.Atoi(msg.Metadata.Get(handlers.MetaDeliveryAttempt))
	p.mu.Lock()
	p.inside++
	p.bytes += len(msg.Payload)
	p.peak = max(p.peak, p.bytes)
	if p.inside > 1 && p.bytes > p.budget {
		p.violations = append(p.violations, fmt.Sprintf("%d messages of %d bytes inside at once, budget %d", p.inside, p.bytes, p.budget))
	}
	p.attempts[ev.ID] = max(p.attempts[ev.ID], attempt)
	p.mu.Unlock()
	<-p.release
	p.mu.Lock()
	p.inside--
	p.bytes -= len(msg.Payload)
	p.handled[ev.ID]++
	p.mu.Unlock()
	return nil
}

func (p *budgetProbe) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.handled)
}

// check asserts that every one of ids was handled exactly once and the
// budget was never exceeded.
func (p *budgetProbe) check(t *testing.T, ids []string) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, v := range p.violations {
		t.Error(v)
	}
	for _, id := range ids {
		if n := p.handled[id]; n != 1 {
			t.Errorf("%s handled %d times, want once", id, n)
		}
	}
}

// sizedEvent is a body of about size bytes for user id (the ingress tests'
// paddedEvent has one user only).
func sizedEvent(id string, size int) []byte {
	head := fmt.Sprintf(`{"id":%q,"pad":"`, id)
	return []byte(head + strings.Repeat("x", max(size-len(head)-2, 0)) + `"}`)
}

// budgetRun is the setup of the byte-budget tests: a router fixture whose
// durable has maxDeliver (-1: unlimited, as the router creates it) and a
// budget of budget bytes, with quick redeliveries; a probe for its
// handlers; and the ids of the events published.
type budgetRun struct {
	*routerFixture
	probe *budgetProbe
	ids   []string
}

func newBudgetRun(t *testing.T, api consumeAPI, budget int64, maxDeliver int) *budgetRun {
	t.Helper()
	cfg := configs.Defaults()
	cfg.MaxInFlightBytes, cfg.MaxDeliver = budget, maxDeliver
	cfg.NakDelay, cfg.NakDelayMax = 20*time.Millisecond, 200*time.Millisecond
	cfg.CloseTimeout = 10 * time.Second
	return &budgetRun{routerFixture: newRouterFixture(t, cfg, api), probe: newBudgetProbe(int(budget))}
}

// publish publishes an event of about size bytes for user id.
func (b *budgetRun) publish(t *testing.T, id string, size int) {
	t.Helper()
	b.ids = append(b.ids, id)
	routertest.Publish(t, b.js, "user.events.created", sizedEvent(id, size))
}

// until waits for cond, read under the probe's lock.
func (b *budgetRun) until(t *testing.T, what string, cond func(p *budgetProbe) bool) {
	t.Helper()
	routertest.Eventually(t, 10*time.Second, what, func() bool {
		b.probe.mu.Lock()
		defer b.probe.mu.Unlock()
		return cond(b.probe)
	})
}

// finish releases the handlers, waits until every event is handled and
// acked, stops the router and checks the probe.
func (b *budgetRun) finish(t *testing.T, stop func()) {
	t.Helper()
	close(b.probe.release)
	routertest.Eventually(t, 30*time.Second, "every event handled", func() bool { return b.probe.count() == len(b.ids) })
	b.drained(t)
	stop()
	b.probe.check(t, b.ids)
}

// TestMaxInFlightBytesBoundsMessagesHeld: on the router's own durable
// (unlimited deliveries) the bytes of the messages held never exceed
// MAX_IN_FLIGHT_BYTES, though the broker pushes the whole backlog at once:
// what has no room is handed back with a delay, and still handled, once.
func TestMaxInFlightBytesBoundsMessagesHeld(t *testing.T) {
	eachAPI(t, testMaxInFlightBytesBoundsMessagesHeld)
}

func testMaxInFlightBytesBoundsMessagesHeld(t *testing.T, api consumeAPI) {
	const budget, events, size = 256 << 10, 40, 50 << 10
	b := newBudgetRun(t, api, budget, -1)
	for i := range events {
		b.publish(t, fmt.Sprintf("user-%d", i), size)
	}
	r, stop := b.start(t, b.probe.handle)
	// The handlers are held: the budget fills, and one more waits parked.
	b.until(t, "the budget full of held handlers", func(p *budgetProbe) bool { return p.bytes > budget-size })
	if n := r.InFlightBytes(); n > budget+size+1024 {
		t.Errorf("InFlightBytes() = %d with the handlers held, want at most the budget %d and one parked message", n, budget)
	}
	b.finish(t, stop)
	p := b.probe
	p.mu.Lock()
	defer p.mu.Unlock()
	handedBack := 0
	for _, a := range p.attempts {
		if a > 1 {
			handedBack++
		}
	}
	switch {
	case api == pinnedAPI && handedBack > 0:
		// A pull durable gets no more than the router pulls: it waits.
		t.Errorf("%d events were handed back for room on a pull durable", handedBack)
	case api != pinnedAPI && handedBack == 0:
		t.Errorf("no event was handed back for room: the test did not put the budget under pressure")
	}
	t.Logf("peak %d bytes in handlers (budget %d); %d of %d events came back after a hand-back", p.peak, budget, handedBack, events)
}

// TestMessageLargerThanBudgetIsHandledAlone: a message larger than the
// whole budget is not stranded: it is handled once nothing else is held,
// and nothing else is admitted beside it.
func TestMessageLargerThanBudgetIsHandledAlone(t *testing.T) {
	eachAPI(t, testMessageLargerThanBudgetIsHandledAlone)
}

func testMessageLargerThanBudgetIsHandledAlone(t *testing.T, api consumeAPI) {
	b := newBudgetRun(t, api, 64<<10, -1)
	for i := range 10 {
		b.publish(t, fmt.Sprintf("small-%d", i), 20<<10)
	}
	b.publish(t, "big", 300<<10)
	for i := range 10 {
		b.publish(t, fmt.Sprintf("late-%d", i), 20<<10)
	}
	r, stop := b.start(t, b.probe.handle)
	// Three small ones fill the budget; a fourth waits parked (or, were
	// there no budget, would be inside too).
	b.until(t, "the budget full of held handlers", func(p *budgetProbe) bool {
		return p.inside >= 4 || p.inside == 3 && r.InFlight() >= 4
	})
	b.finish(t, stop)
}

// TestByteBudgetOnALimitedDurableSpendsNoDelivery: on a durable with a
// MaxDeliver (a legacy one, as found) a trip back to the broker would cost
// a message one of its deliveries, so the router waits for room instead:
// the budget still bounds the handlers, every event is handled on its
// first delivery, and a message larger than the budget is handled alone.
// What the broker pushes meanwhile waits in the NATS client, so even with
// a small max ack pending the subscriber takes the legacy API, whose
// subscription has no pending limits (see legacysub.go).
func TestByteBudgetOnALimitedDurableSpendsNoDelivery(t *testing.T) {
	const budget, size = 128 << 10, 30 << 10
	api := legacyAPI
	api.maxAckPending = jetstreamAPI.maxAckPending
	b := newBudgetRun(t, api, budget, 3)
	for i := range 20 {
		b.publish(t, fmt.Sprintf("user-%d", i), size)
	}
	b.publish(t, "big", 300<<10)
	_, stop := b.start(t, b.probe.handle)
	b.until(t, "the budget full of held handlers", func(p *budgetProbe) bool { return p.bytes > budget-size })
	b.finish(t, stop)
	p := b.probe
	p.mu.Lock()
	defer p.mu.Unlock()
	for id, a := range p.attempts {
		if a != 1 {
			t.Errorf("%s was handled on delivery %d: a delivery was spent for room", id, a)
		}
	}
}

// TestCloseHandsBackTheParkedMessage: a message parked for room when the
// router shuts down goes back to the broker at once, and the next router
// handles it: nothing is lost.
func TestCloseHandsBackTheParkedMessage(t *testing.T) {
	eachAPI(t, testCloseHandsBackTheParkedMessage)
}

func testCloseHandsBackTheParkedMessage(t *testing.T, api consumeAPI) {
	b := newBudgetRun(t, api, 100<<10, -1)
	b.publish(t, "first", 60<<10)
	b.publish(t, "second", 60<<10)
	r, stop := b.start(t, b.probe.handle)
	b.until(t, "one handled, one parked", func(p *budgetProbe) bool { return p.inside == 1 && r.InFlight() == 2 })
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		stop()
	}()
	// The parked message goes back at once; the one in its handler
	// finishes (shutdown does not cancel it) and is acked.
	routertest.Eventually(t, 10*time.Second, "the parked message handed back", func() bool { return r.InFlight() == 1 })
	close(b.probe.release)
	<-closed
	if n := routertest.StreamMsgs(t, b.js, b.cfg.Stream); n != 1 {
		t.Fatalf("%d messages left in the stream after the first router, want the parked one", n)
	}
	_, stop2 := b.start(t, b.probe.handle)
	routertest.Eventually(t, 10*time.Second, "both handled", func() bool { return b.probe.count() == 2 })
	b.drained(t)
	stop2()
	b.probe.check(t, b.ids)
}

// TestCloseHandsBackWhatTheClientHolds: the messages the broker pushed
// that wait in the NATS client (all MAX_IN_FLIGHT slots are taken) go back
// to the broker as the router closes, before it returns and its connection
// is closed: the next router gets them at once, not after the ack wait, and
// every event is handled once.
func TestCloseHandsBackWhatTheClientHolds(t *testing.T) {
	eachAPI(t, testCloseHandsBackWhatTheClientHolds)
}

func testCloseHandsBackWhatTheClientHolds(t *testing.T, api consumeAPI) {
	cfg := configs.Defaults()
	cfg.MaxInFlight = 2
	cfg.CloseTimeout = 10 * time.Second
	f := newRouterFixture(t, cfg, api)
	f.logger = slog.New(slog.NewTextHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	const events = 20
	release := make(chan struct{})
	var mu sync.Mutex
	handled := map[string]int{}
	handle := func(msg *message.Message) error {
		<-release
		mu.Lock()
		handled[string(msg.Payload)]++
		mu.Unlock()
		return nil
	}
	nc := routertest.Conn(t, f.url)
	r, stop := f.startOn(t, nc, handle)
	// Published once the router has subscribed, so that what its
	// connection reads from here on is the events.
	select {
	case <-r.Running():
	case <-time.After(10 * time.Second):
		t.Fatal("the first router is not running after 10s")
	}
	before := nc.Stats().InMsgs
	for i := range events {
		routertest.Publish(t, f.js, "user.events.created", fmt.Appendf(nil, `{"id":"user-%d"}`, i))
	}
	routertest.Eventually(t, 10*time.Second, "every event pushed to the first router", func() bool {
		return routertest.ConsumerInfo(t, f.js, f.cfg.Stream, f.cfg.Durable).NumAckPending == events
	})
	// Pushed is not yet held: under load some are still on the wire, and
	// what reaches the client after the drain has unsubscribed is dropped
	// (it comes back after the ack wait). The test is about what waits in
	// the client, so it waits until the connection has read every one.
	routertest.Eventually(t, 10*time.Second, "every event read by the first router's connection", func() bool {
		return nc.Stats().InMsgs-before >= events
	})
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		stop()
		nc.Close() // as serve does, right after
	}()
	routertest.Eventually(t, 10*time.Second, "a message handed back as the router shuts down", func() bool {
		return strings.Contains(f.logs.String(), `reason="shutting down"`)
	})
	close(release) // the two in their handlers finish, and are acked
	<-closed
	_, stop2 := f.start(t, handle)
	// Well within the 30s ack wait: only hand-backs bring them so soon.
	routertest.Eventually(t, 10*time.Second, "every event handled", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(handled) == events
	})
	f.drained(t)
	stop2()
	mu.Lock()
	defer mu.Unlock()
	for body, n := range handled {
		if n != 1 {
			t.Errorf("%s handled %d times, want once", body, n)
		}
	}
}
