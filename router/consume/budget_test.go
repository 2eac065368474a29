package consume

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func sized(key string, seq uint64, size int64) *flight {
	return &flight{key: key, seq: seq, size: size}
}

func TestBudgetAdmitsWhatFitsAndAnythingAlone(t *testing.T) {
	b := newBudget(100, time.Second, time.Minute)
	if !b.fits(1000) {
		t.Fatal("nothing held: a message larger than the limit must fit, to be handled alone")
	}
	big := sized("a", 1, 1000)
	b.admit(big)
	if b.fits(1) {
		t.Fatal("a message over the limit is held: nothing else fits")
	}
	b.release(big)
	small := sized("b", 2, 60)
	b.admit(small)
	if !b.fits(40) || b.fits(41) {
		t.Fatalf("60 of 100 held: 40 must fit and 41 not (held %d)", b.held)
	}
}

func TestBudgetUnparksOnlyWhenItFits(t *testing.T) {
	b := newBudget(100, time.Second, time.Minute)
	a, p := sized("a", 1, 80), sized("p", 2, 50)
	b.admit(a)
	b.parked = p
	if got := b.unpark(); got != nil {
		t.Fatalf("unpark with 80 of 100 held gave %v, want nothing", got)
	}
	b.release(a)
	if got := b.unpark(); got != p || b.parked != nil {
		t.Fatalf("unpark with nothing held gave %v (parked %v), want p", got, b.parked)
	}
}

// Messages handed back for room are spread over waves of one limit each,
// one step apart, capped at the largest delay.
func TestBudgetHandsBackInWaves(t *testing.T) {
	b := newBudget(100, time.Second, 3*time.Second)
	for i, c := range []struct {
		size int64
		due  time.Duration
	}{
		{60, 1 * time.Second}, {40, 1 * time.Second}, // the first wave is full
		{30, 2 * time.Second}, {60, 2 * time.Second},
		{500, 3 * time.Second}, // larger than a wave: one of its own
		{10, 3 * time.Second},  // capped: no later than the largest delay
	} {
		if got := b.handBack(c.size, t0).Sub(t0); got != c.due {
			t.Errorf("message %d (%d bytes): due after %v, want %v", i, c.size, got, c.due)
		}
	}
	// Once every wave is due, the next starts a step from then.
	later := t0.Add(10 * time.Second)
	if got := b.handBack(10, later).Sub(later); got != time.Second {
		t.Errorf("after the waves came back: due after %v, want 1s", got)
	}
}

// A message handed back for room comes back after its user's earlier
// outstanding message, and holds the user's later ones behind it.
func TestSequencerAwayKeepsUserOrder(t *testing.T) {
	q := newSequencer(time.Second, 30*time.Second)
	a1 := fl("a", 1)
	if d := q.away(a1, t0.Add(5*time.Second), t0); d != 5*time.Second {
		t.Fatalf("a1 away: delay %v, want 5s", d)
	}
	// a2 is due back sooner than a1: it is delayed to come after it.
	if d := q.away(fl("a", 2), t0.Add(2*time.Second), t0); d != 6*time.Second {
		t.Fatalf("a2 away behind a1: delay %v, want 6s", d)
	}
	// a3 arrives with room: held back behind both.
	if v, d := q.arrive(fl("a", 3), t0.Add(time.Second)); v != holdBack || d != 6*time.Second {
		t.Fatalf("a3 while a1 and a2 are away: %v %v, want holdBack 6s", v, d)
	}
	// Another user is not affected.
	if v, _ := q.arrive(fl("b", 4), t0); v != handOut {
		t.Fatalf("b4: %v, want handOut", v)
	}
	// a1 back first: handed out.
	if v, _ := q.arrive(fl("a", 1), t0.Add(5*time.Second)); v != handOut {
		t.Fatalf("a1 back: %v, want handOut", v)
	}
	// Without a user, nothing to order.
	if d := q.away(fl("", 9), t0.Add(time.Second), t0); d != time.Second {
		t.Fatalf("keyless away: %v, want 1s", d)
	}
}

// fakeMsg is a jetstream.Msg with the fields of nm; any other method panics.
type fakeMsg struct {
	jetstream.Msg
	nm *nats.Msg
}

func (f fakeMsg) Data() []byte         { return f.nm.Data }
func (f fakeMsg) Headers() nats.Header { return f.nm.Header }
func (f fakeMsg) Subject() string      { return f.nm.Subject }
func (f fakeMsg) Reply() string        { return f.nm.Reply }

func TestMsgSize(t *testing.T) {
	nm := &nats.Msg{Subject: "user.events.created", Reply: "$JS.ACK.x", Data: make([]byte, 1000), Header: nats.Header{"K": {"vv"}}}
	if got, want := msgSize(fakeMsg{nm: nm}), int64(1000+len(nm.Subject)+len(nm.Reply)+3); got != want {
		t.Fatalf("msgSize = %d, want %d", got, want)
	}
}
