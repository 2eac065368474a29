package consume_test

import (
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"

	"github.com/social/user-events-router/configs"
	"github.com/social/user-events-router/router/routertest"
)

// failover is a pinned durable with two routers on it, each on its own
// connection, and a record of what each handled.
type failover struct {
	f *routerFixture

	mu        sync.Mutex
	handledBy map[string][]int // router → the events it committed
	committed map[string][]int // user → its events' n, in commit order
	blocked   chan struct{}    // closed when a router holds the stuck event
	stuck     string           // the user whose first event the active router hangs on
	hungBy    string           // the router that hangs on it
}

func newFailover(t *testing.T, pinnedTTL time.Duration) *failover {
	cfg := configs.Defaults()
	cfg.AckWait = 4 * time.Second
	cfg.HandlerTimeout, cfg.RetryMax = time.Second, 1
	cfg.PinnedTTL = pinnedTTL
	cfg.NakDelay, cfg.NakDelayMax = 20*time.Millisecond, 200*time.Millisecond
	cfg.CloseTimeout = 5 * time.Second
	return &failover{
		f:         newRouterFixture(t, cfg, pinnedAPI),
		handledBy: map[string][]int{},
		committed: map[string][]int{},
		blocked:   make(chan struct{}),
	}
}

func (fo *failover) publish(t *testing.T, user string, n int) {
	routertest.Publish(t, fo.f.js, "user.events.updated", fmt.Appendf(nil, `{"id":%q,"n":%d}`, user, n))
}

// handler is router name's handler. The router that gets the stuck user's
// event 0 first never finishes it: it hangs on it until its process dies.
func (fo *failover) handler(name string, hang <-chan struct{}) message.NoPublishHandlerFunc {
	return func(msg *message.Message) error {
		var ev struct {
			ID string `json:"id"`
			N  int    `json:"n"`
		}
		if err := json.Unmarshal(msg.Payload, &ev); err != nil {
			return err
		}
		if ev.ID == fo.stuck && ev.N == 0 {
			fo.mu.Lock()
			first := fo.hungBy == ""
			if first {
				fo.hungBy = name
			}
			fo.mu.Unlock()
			if first {
				close(fo.blocked)
				<-hang
				return fmt.Errorf("the process died")
			}
		}
		fo.mu.Lock()
		defer fo.mu.Unlock()
		fo.handledBy[name] = append(fo.handledBy[name], ev.N)
		fo.committed[ev.ID] = append(fo.committed[ev.ID], ev.N)
		return nil
	}
}

func (fo *failover) count(name string) int {
	fo.mu.Lock()
	defer fo.mu.Unlock()
	return len(fo.handledBy[name])
}

// TestPinnedDurableOneActiveStandbyTakesOver: two routers pull a pinned
// durable; only the pinned one gets messages. When it dies holding one
// event of a user, the standby takes over within the pin's TTL — and it
// holds that user's later events back until the held one comes back after
// its ack wait, so the user's events still commit in stream order, while
// other users' events go at once.
func TestPinnedDurableOneActiveStandbyTakesOver(t *testing.T) {
	fo := newFailover(t, 3*time.Second)
	fo.stuck = "user-stuck"
	hang := make(chan struct{})
	t.Cleanup(func() { close(hang) })
	conns := map[string]*nats.Conn{"a": routertest.Conn(t, fo.f.url), "b": routertest.Conn(t, fo.f.url)}
	ra, _ := fo.f.startOn(t, conns["a"], fo.handler("a", hang))
	rb, _ := fo.f.startOn(t, conns["b"], fo.handler("b", hang))
	t.Cleanup(func() { _ = ra.Close(); _ = rb.Close() })
	routers := map[string]interface{ InFlight() int }{"a": ra, "b": rb}

	for i := range 20 {
		fo.publish(t, fmt.Sprintf("user-%d", i), 0)
	}
	routertest.Eventually(t, 10*time.Second, "the first 20 events handled", func() bool { return fo.count("a")+fo.count("b") == 20 })
	active, standby := "a", "b"
	if fo.count("b") > 0 {
		active, standby = "b", "a"
	}
	if fo.count(standby) > 0 {
		t.Fatalf("both routers got messages: a %d, b %d; the pinned durable gives them to one", fo.count("a"), fo.count("b"))
	}

	// The active router takes the stuck user's first event and hangs on
	// it.
	fo.publish(t, fo.stuck, 0)
	select {
	case <-fo.blocked:
	case <-time.After(10 * time.Second):
		t.Fatal("the active router never got the stuck user's event")
	}
	if fo.hungBy != active {
		t.Fatalf("%s got the stuck user's event, not the active %s", fo.hungBy, active)
	}
	// It dies: its connection goes, with the event unacked.
	died := time.Now()
	conns[active].Close()
	// The user's later events, and another user's, arrive after: the
	// standby gets them as soon as it is pinned, before the held one
	// comes back.
	fo.publish(t, fo.stuck, 1)
	fo.publish(t, fo.stuck, 2)
	fo.publish(t, "user-after", 0)

	routertest.Eventually(t, 20*time.Second, "the standby to take over", func() bool { return fo.count(standby) > 0 })
	failover := time.Since(died)
	routertest.Eventually(t, 30*time.Second, "every event handled", func() bool {
		fo.mu.Lock()
		defer fo.mu.Unlock()
		return len(fo.committed[fo.stuck]) == 3 && len(fo.committed["user-after"]) == 1
	})
	fo.f.drained(t)
	routertest.Eventually(t, 10*time.Second, "the standby to settle everything", func() bool { return routers[standby].InFlight() == 0 })
	fo.mu.Lock()
	defer fo.mu.Unlock()
	if got := fo.committed[fo.stuck]; fmt.Sprint(got) != "[0 1 2]" {
		t.Errorf("the stuck user's events committed in order %v, want stream order [0 1 2]: the standby did not wait for what the dead router held", got)
	}
	if failover > fo.f.binding.PinnedTTL+5*time.Second {
		t.Errorf("the standby took over %v after the active router died; the pin's TTL is %v", failover, fo.f.binding.PinnedTTL)
	}
	t.Logf("active %s, failover after %v (pinned TTL %v, ack wait %v)", active, failover.Round(10*time.Millisecond), fo.f.binding.PinnedTTL, fo.f.binding.AckWait)
}

// TestPinnedDurableHandsOverOnClose: a router closing gracefully unpins
// once its messages are settled, so the standby takes over at once rather
// than after the pin's TTL.
func TestPinnedDurableHandsOverOnClose(t *testing.T) {
	fo := newFailover(t, 20*time.Second)
	_, stopA := fo.f.start(t, fo.handler("a", nil))
	fo.publish(t, "user-0", 0)
	routertest.Eventually(t, 10*time.Second, "the first event handled", func() bool { return fo.count("a") == 1 })
	_, stopB := fo.f.start(t, fo.handler("b", nil))
	stopA()
	closed := time.Now()
	fo.publish(t, "user-0", 1)
	routertest.Eventually(t, 10*time.Second, "the standby to take the next event", func() bool { return fo.count("b") == 1 })
	took := time.Since(closed)
	stopB()
	if took >= fo.f.binding.PinnedTTL/2 {
		t.Errorf("the standby took over %v after the active router closed: not before the pin's TTL (%v)", took, fo.f.binding.PinnedTTL)
	}
	t.Logf("handed over %v after close", took.Round(10*time.Millisecond))
}
