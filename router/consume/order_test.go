package consume

import (
	"strings"
	"testing"
	"time"

	"github.com/social/user-events-router/schema"
)

func fl(key string, seq uint64) *flight { return &flight{key: key, seq: seq} }

var t0 = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)

func TestSequencerOneMessagePerUserAtATime(t *testing.T) {
	q := newSequencer(time.Second, 30*time.Second)
	a1, a2, a3, b1 := fl("a", 1), fl("a", 2), fl("a", 3), fl("b", 4)
	for _, c := range []struct {
		f    *flight
		want verdict
	}{{a1, handOut}, {a2, wait}, {b1, handOut}, {a3, wait}} {
		if v, _ := q.arrive(c.f, t0); v != c.want {
			t.Fatalf("arrive a%d: %v, want %v", c.f.seq, v, c.want)
		}
	}
	next, holds := q.finish(a1, false, time.Time{}, false, t0)
	if next != a2 || len(holds) != 0 {
		t.Fatalf("after a1: next %v, holds %d; want a2", next, len(holds))
	}
	if next, _ := q.finish(a2, false, time.Time{}, false, t0); next != a3 {
		t.Fatalf("after a2: next %v, want a3", next)
	}
	if next, _ := q.finish(a3, false, time.Time{}, false, t0); next != nil {
		t.Fatalf("after a3: next %v, want none", next)
	}
	q.finish(b1, false, time.Time{}, false, t0)
	if len(q.lanes) != 0 {
		t.Fatalf("%d lanes left after everything settled", len(q.lanes))
	}
}

func TestSequencerUnorderedWithoutKey(t *testing.T) {
	q := newSequencer(time.Second, 30*time.Second)
	for i := range 3 {
		if v, _ := q.arrive(fl("", uint64(i)), t0); v != handOut {
			t.Fatalf("keyless message %d: %v, want handOut", i, v)
		}
	}
}

// A failed message holds back the user's later ones, waiting or arriving,
// until it is back; they come back after it and in their own order.
func TestSequencerHoldsLaterMessagesBehindAFailure(t *testing.T) {
	q := newSequencer(time.Second, 30*time.Second)
	a1, a2, a3 := fl("a", 1), fl("a", 2), fl("a", 3)
	q.arrive(a1, t0)
	q.arrive(a2, t0)
	due := t0.Add(5 * time.Second)
	next, holds := q.finish(a1, true, due, false, t0)
	if next != nil || len(holds) != 1 || holds[0].f != a2 {
		t.Fatalf("after a1 failed: next %v, holds %v; want a2 held", next, holds)
	}
	if holds[0].delay != 6*time.Second {
		t.Fatalf("a2 held for %s, want 6s (a1 due in 5s, plus the 1s margin)", holds[0].delay)
	}
	// a3 arrives meanwhile: held too, to come back after a2.
	v, d := q.arrive(a3, t0.Add(time.Second))
	if v != holdBack || d != 6*time.Second {
		t.Fatalf("a3 while a1 is away: %v %s, want holdBack 6s", v, d)
	}
	// a2 comes back before a1 (redelivery order is not guaranteed): held again.
	if v, _ := q.arrive(fl("a", 2), t0.Add(5*time.Second)); v != holdBack {
		t.Fatalf("a2 back before a1: %v, want holdBack", v)
	}
	// a1 is back: handed out; then a2, then a3.
	if v, _ := q.arrive(fl("a", 1), t0.Add(5*time.Second)); v != handOut {
		t.Fatalf("a1 back: %v, want handOut", v)
	}
	q.finish(fl("a", 1), false, time.Time{}, false, t0.Add(5*time.Second))
	if v, _ := q.arrive(fl("a", 3), t0.Add(7*time.Second)); v != holdBack {
		t.Fatalf("a3 back before a2: %v, want holdBack", v)
	}
	if v, _ := q.arrive(fl("a", 2), t0.Add(7*time.Second)); v != handOut {
		t.Fatalf("a2 back: %v, want handOut", v)
	}
}

// A message on its last delivery is never held back: it would be lost.
func TestSequencerNeverHoldsALastDelivery(t *testing.T) {
	q := newSequencer(time.Second, 30*time.Second)
	a1 := fl("a", 1)
	q.arrive(a1, t0)
	q.finish(a1, true, t0.Add(time.Second), false, t0)
	last := fl("a", 2)
	last.last = true
	if v, _ := q.arrive(last, t0); v != handOut {
		t.Fatalf("last delivery behind an outstanding message: %v, want handOut", v)
	}
}

// An outstanding message that never comes back (another replica took it)
// blocks its user for one grace period after it was due, not forever.
func TestSequencerForgetsOutstandingAfterGrace(t *testing.T) {
	q := newSequencer(time.Second, 30*time.Second)
	a1 := fl("a", 1)
	q.arrive(a1, t0)
	q.finish(a1, true, t0.Add(time.Second), false, t0)
	if v, _ := q.arrive(fl("a", 2), t0.Add(20*time.Second)); v != holdBack {
		t.Fatalf("within grace: %v, want holdBack", v)
	}
	if v, _ := q.arrive(fl("a", 3), t0.Add(40*time.Second)); v != holdBack {
		// a2 was held at t0+20s and is itself outstanding until t0+51s.
		t.Fatalf("behind held a2: %v, want holdBack", v)
	}
	if v, _ := q.arrive(fl("a", 4), t0.Add(2*time.Minute)); v != handOut {
		t.Fatalf("after grace: %v, want handOut", v)
	}
	q.finish(fl("a", 4), false, time.Time{}, false, t0.Add(2*time.Minute))
	q.sweep(t0.Add(time.Hour))
	if len(q.lanes) != 0 {
		t.Fatalf("%d lanes left after the sweep", len(q.lanes))
	}
}

// When closing, waiting messages are handed back instead of handed out.
func TestSequencerHandsBackWaitingWhenClosing(t *testing.T) {
	q := newSequencer(time.Second, 30*time.Second)
	a1, a2 := fl("a", 1), fl("a", 2)
	q.arrive(a1, t0)
	q.arrive(a2, t0)
	next, holds := q.finish(a1, false, time.Time{}, true, t0)
	if next != nil || len(holds) != 1 || holds[0].f != a2 || holds[0].delay != 0 {
		t.Fatalf("closing: next %v, holds %v; want a2 handed back at once", next, holds)
	}
}

func TestOrderKey(t *testing.T) {
	for body, want := range map[string]string{
		`{"id":"u1","action":"created"}`: "u1",
		`{"action":"created"}`:           "",
		`not json`:                       "",
		`{"id":7}`:                       "",
		// Over the event limit: poisoned wherever it is, so not scanned.
		`{"id":"u1","pad":"` + strings.Repeat("x", schema.MaxEventBytes) + `"}`: "",
	} {
		if got := orderKey([]byte(body)); got != want {
			t.Errorf("orderKey(%s) = %q, want %q", body, got, want)
		}
	}
}

// TestSequencerClosedHandsBackInOrder: while a takeover has not learnt what
// the previous pinned client held, every keyed message is handed back for
// gateDelay, a user's later ones after its earlier ones; a message without
// a key, and one on its last delivery, are not. Once open, a message that
// comes back is handed out.
func TestSequencerClosedHandsBackInOrder(t *testing.T) {
	q := newSequencer(time.Second, 30*time.Second)
	q.closed = 1
	a1, a2, b1, none := fl("a", 1), fl("a", 2), fl("b", 3), fl("", 4)
	last := fl("c", 5)
	last.last = true
	v, d1 := q.arrive(a1, t0)
	if v != holdBack || d1 != gateDelay {
		t.Fatalf("a1 while closed: %v %v, want held back for %v", v, d1, gateDelay)
	}
	// A user's later message comes back just after its earlier one, not a
	// NAK delay (the margin, 1 s here) later.
	if v, d2 := q.arrive(a2, t0); v != holdBack || d2 != d1+gateSpacing {
		t.Fatalf("a2 while closed: %v %v, want held back for a1's %v and %v", v, d2, d1, gateSpacing)
	}
	if v, d := q.arrive(b1, t0); v != holdBack || d != gateDelay {
		t.Fatalf("b1 while closed: %v %v, want held back for %v", v, d, gateDelay)
	}
	if v, _ := q.arrive(none, t0); v != handOut {
		t.Fatalf("a message without a key while closed: %v, want handed out", v)
	}
	if v, _ := q.arrive(last, t0); v != handOut {
		t.Fatalf("a last delivery while closed: %v, want handed out", v)
	}
	q.closed = 0
	back := t0.Add(gateDelay)
	// a2 back before a1: handed back again, behind it.
	if v, _ := q.arrive(a2, back); v != holdBack {
		t.Fatalf("a2 back before a1 once open: %v, want held back", v)
	}
	if v, _ := q.arrive(a1, back); v != handOut {
		t.Fatalf("a1 back once open: %v, want handed out", v)
	}

	// On a durable with a max deliver, the gate hands back once, for as
	// long as it may stay closed.
	q = newSequencer(time.Second, 30*time.Second)
	q.closed, q.gateFor = 1, 40*time.Second
	if v, d := q.arrive(fl("d", 9), t0); v != holdBack || d != 40*time.Second {
		t.Fatalf("while closed with gateFor 40s: %v %v, want held back for 40s", v, d)
	}
}
