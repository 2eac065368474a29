package router_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/social/user-events-router/configs"
	"github.com/social/user-events-router/handlers"
	"github.com/social/user-events-router/router"
	"github.com/social/user-events-router/router/routertest"
)

// routerFixture is a nats-server holding the Auth Service's stream and the
// router's durable, for a router under test.
type routerFixture struct {
	js      jetstream.JetStream
	url     string
	cfg     configs.Config
	binding router.Binding
	logger  *slog.Logger
}

func newRouterFixture(t *testing.T, cfg configs.Config) *routerFixture {
	t.Helper()
	srv := routertest.StartServer(t)
	f := &routerFixture{js: routertest.JetStream(t, srv.URL), url: srv.URL, cfg: cfg,
		logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if _, err := router.EnsureStream(ctx, f.js, cfg.Stream, f.logger); err != nil {
		t.Fatal(err)
	}
	var err error
	if f.binding, err = router.EnsureConsumer(ctx, f.js, cfg, f.logger); err != nil {
		t.Fatal(err)
	}
	return f
}

// start runs a router with handle; stop closes it and checks that it
// closed and ran without error.
func (f *routerFixture) start(t *testing.T, handle message.NoPublishHandlerFunc) (r *router.Router, stop func()) {
	t.Helper()
	r, err := router.New(router.Options{Config: f.cfg, Binding: f.binding, Conn: routertest.Conn(t, f.url), Logger: f.logger, Handle: handle})
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
func orderRun(t *testing.T, users, perUser, failEvery int) map[string][]int {
	t.Helper()
	cfg := configs.Defaults()
	cfg.NakDelay, cfg.NakDelayMax = 20*time.Millisecond, 100*time.Millisecond
	cfg.CloseTimeout = 10 * time.Second
	cfg.MaxInFlight = 256
	f := newRouterFixture(t, cfg)
	for i := range perUser {
		for u := range users {
			body := fmt.Sprintf(`{"id":"user-%d","n":%d}`, u, i)
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
	checkOrder(t, orderRun(t, users, perUser, 0), users, perUser)
}

// TestPerUserOrderSurvivesRedelivery: an event that fails and is handed back
// to the broker still commits before the same user's later events.
func TestPerUserOrderSurvivesRedelivery(t *testing.T) {
	const users, perUser = 10, 20
	checkOrder(t, orderRun(t, users, perUser, 6), users, perUser)
}

// TestMaxInFlightBoundsConcurrentHandlers: the router hands out up to
// MAX_IN_FLIGHT messages at once — no more, and (for distinct users) that
// many, which is what lets their commits share a transaction.
func TestMaxInFlightBoundsConcurrentHandlers(t *testing.T) {
	cfg := configs.Defaults()
	cfg.MaxInFlight = 5
	f := newRouterFixture(t, cfg)
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
