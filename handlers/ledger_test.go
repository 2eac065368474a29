package handlers

import (
	"encoding/json"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/social/user-events-router/schema"
)

// step is one arrival and what the ledger must decide for it.
type step struct {
	action string
	at     int    // seconds after t0
	body   string // stands for the content: same body = byte-identical event
	path   string
	seq    uint64
	want   string
}

var t0 = time.Date(2026, 11, 28, 13, 28, 17, 0, time.UTC)

func (s step) arrival() Arrival {
	h := uint64(0xcbf29ce484222325)
	for _, c := range s.action + "|" + s.body + "|" + time.Duration(s.at).String() {
		h = (h ^ uint64(c)) * 0x100000001b3
	}
	ident := uint64(0xcbf29ce484222325)
	for _, c := range s.body {
		ident = (ident ^ uint64(c)) * 0x100000001b3
	}
	a, _ := schema.LookupAction(s.action)
	return Arrival{Kind: a.Kind, At: t0.Add(time.Duration(s.at) * time.Second), Hash: h, Ident: ident, Path: s.path, StreamSeq: s.seq}
}

const (
	c = schema.ActionCreated
	u = schema.ActionUpdated
	d = schema.ActionDeleted
	n = PathNATS
	w = PathHTTP // web
)

func TestLedgerDecides(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		steps []step
		// gen is the generation the user ends in; writes the number of
		// commands written.
		gen, writes int
		deleted     bool
	}{
		{"registration tried three times by both paths, buffered copy last", []step{
			{c, 0, "reg", w, 0, VerdictNew},        // try 1: NATS timed out, HTTP answered 200
			{c, 6, "reg", n, 2, VerdictRegistered}, // try 2 (a 503 answered mid-commit): new timestamp
			{c, 6, "reg", w, 0, VerdictRegistered},
			{c, 0, "reg", n, 1, VerdictRegistered}, // try 1's buffered NATS copy, minutes later
			{c, 0, "reg", n, 1, VerdictRedelivery}, // and its redelivery
		}, 1, 1, false},
		{"deletion retried", []step{
			{c, 0, "reg", n, 1, VerdictNew},
			{d, 10, "del", w, 0, VerdictNew},
			{d, 10, "del", n, 2, VerdictDeleted},
			{d, 13, "del", n, 3, VerdictDeleted},
		}, 1, 2, true},
		{"A → B → A in one second, then copies of each by HTTP", []step{
			{c, 0, "reg", n, 1, VerdictNew},
			{u, 5, "A", n, 2, VerdictNew},
			{u, 5, "B", n, 3, VerdictNew},
			{u, 5, "A", n, 4, VerdictNew}, // byte-identical to seq 2, and real
			{u, 5, "A", n, 4, VerdictRedelivery},
			{u, 5, "A", w, 0, VerdictCopy},
			{u, 5, "B", w, 0, VerdictCopy},
			{u, 5, "A", w, 0, VerdictCopy},
			{u, 5, "A", w, 0, VerdictNew}, // a third A by HTTP pairs with nothing
		}, 1, 5, false},
		{"HTTP first, its NATS copy later", []step{
			{u, 5, "A", w, 0, VerdictNew},
			{u, 5, "A", n, 7, VerdictCopy},
			{u, 5, "A", n, 7, VerdictRedelivery},
		}, 1, 1, false},
		{"a late copy of an earlier update is stale", []step{
			{c, 0, "reg", n, 1, VerdictNew},
			{u, 5, "A", w, 0, VerdictNew},
			{u, 7, "B", n, 3, VerdictNew},
			{u, 5, "A", n, 2, VerdictStale}, // A's buffered copy, after B
		}, 1, 3, false},
		{"created → deleted → created in one second", []step{
			{c, 0, "reg", n, 1, VerdictNew},
			{d, 0, "del", n, 2, VerdictNew},
			{c, 0, "reg", n, 3, VerdictNew}, // a new registration
			{d, 0, "del", n, 2, VerdictRedelivery},
			{c, 0, "reg", n, 1, VerdictRedelivery},
			{d, 0, "del", w, 0, VerdictCopy}, // the HTTP copy of seq 2
		}, 2, 3, false},
		{"the identity before its registration", []step{
			{u, 5, "A", n, 2, VerdictNew},   // its created was dropped after three tries…
			{c, 3, "reg", n, 1, VerdictNew}, // …or arrives late: the profile is still created
			{c, 3, "reg", w, 0, VerdictRegistered},
			{u, 4, "older", n, 3, VerdictStale},
		}, 1, 2, false},
		{"a deletion before its registration", []step{
			{d, 5, "del", n, 2, VerdictNew},
			{c, 5, "reg", n, 1, VerdictStale}, // the same second, never registered: that registration, late
			{c, 2, "reg", w, 0, VerdictStale},
			{u, 6, "A", n, 3, VerdictAfterDeleted},
		}, 1, 1, true},
		{"re-registration by HTTP in the second of the deletion, the first registration late", []step{
			{u, 13, "A", n, 2, VerdictNew},   // a crash held the registration (seq 1)
			{d, 26, "del", n, 3, VerdictNew}, // deleted, and registered again in that second:
			{c, 0, "reg", n, 1, VerdictStale},
			{c, 26, "reg2", w, 0, VerdictNew}, // the registration was older than A, so this is a new one
			{c, 26, "reg2", n, 4, VerdictRegistered},
		}, 2, 3, false},
		{"re-registration by HTTP in the second of the deletion, the first registration never carried", []step{
			{u, 13, "A", n, 2, VerdictNew}, // the registration was dropped after three tries
			{d, 26, "del", n, 3, VerdictNew},
			{c, 26, "reg2", w, 0, VerdictNew},
		}, 2, 3, false},
		{"registration tried three times, deleted in the second of the third try, the tries late", []step{
			{d, 13, "del", n, 4, VerdictNew},   // a crash held the tries (seq 1-3)
			{c, 0, "reg", n, 1, VerdictStale},  // try 1's copy, back
			{c, 13, "reg", w, 0, VerdictStale}, // try 3 (the same identity): late, not a new registration
			{c, 6, "reg", n, 2, VerdictStale},
		}, 1, 1, true},
		{"re-registration after a deletion", []step{
			{c, 0, "reg", n, 1, VerdictNew},
			{d, 5, "del", n, 2, VerdictNew},
			{u, 6, "A", n, 3, VerdictAfterDeleted},
			{c, 9, "reg2", n, 4, VerdictNew},
			{u, 4, "old", w, 0, VerdictStale},
			{d, 5, "del", w, 0, VerdictStale}, // the old deletion's HTTP copy
			{u, 10, "B", n, 5, VerdictNew},
		}, 2, 4, false},
		{"A → B → A in one second, B redelivered after the second A (a crash held it)", []step{
			{c, 0, "reg", n, 1, VerdictNew},
			{u, 5, "A", n, 2, VerdictNew},
			{u, 5, "A", n, 4, VerdictNew}, // the new process carried it first
			{u, 5, "B", n, 3, VerdictStale},
		}, 1, 3, false},
		{"created → deleted → created in one second, the deletion redelivered last", []step{
			{c, 0, "reg", n, 1, VerdictNew},
			{c, 0, "reg", n, 3, VerdictRegistered},
			{d, 0, "del", n, 2, VerdictStale}, // published before the registration carried
		}, 1, 1, false},
		{"a deletion older than the living registration's newest event", []step{
			{c, 0, "reg", n, 1, VerdictNew},
			{u, 5, "A", n, 2, VerdictNew},
			{d, 3, "del", n, 3, VerdictStale},
		}, 1, 2, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var state []byte
			writes := 0
			for i, s := range tt.steps {
				// Each step starts from the stored bytes, as in the database.
				l, err := ParseLedger(state)
				if err != nil {
					t.Fatal(err)
				}
				v := l.Decide(s.arrival())
				if v.Why != s.want {
					t.Errorf("step %d (%s %s at +%ds by %s seq %d): %s, want %s", i, s.action, s.body, s.at, s.path, s.seq, v.Why, s.want)
				}
				if v.Write {
					writes++
					if v.Sequence != uint64(writes) || v.Generation != l.Generation {
						t.Errorf("step %d: sequence %d generation %d, want %d and %d", i, v.Sequence, v.Generation, writes, l.Generation)
					}
				}
				state = l.Bytes()
			}
			l, _ := ParseLedger(state)
			if l.Generation != tt.gen || writes != tt.writes || l.Deleted != tt.deleted {
				t.Errorf("ended at generation %d, %d commands, deleted %v; want %d, %d, %v", l.Generation, writes, l.Deleted, tt.gen, tt.writes, tt.deleted)
			}
		})
	}
}

// A verdict that writes nothing leaves the stored bytes as they were, so a
// redelivery costs no write.
func TestLedgerRepeatChangesNothing(t *testing.T) {
	t.Parallel()
	l := Ledger{}
	a := step{c, 0, "reg", n, 1, ""}.arrival()
	l.Decide(a)
	before := string(l.Bytes())
	if v := l.Decide(a); v.Write || string(l.Bytes()) != before {
		t.Errorf("repeat: %+v, ledger %s → %s", v, before, l.Bytes())
	}
}

func TestLedgerRecentIsBounded(t *testing.T) {
	t.Parallel()
	l := Ledger{}
	for i := range 3 * maxRecent {
		l.Decide(step{u, 0, string(rune('a' + i%26)), n, uint64(i + 1), ""}.arrival())
	}
	if len(l.Recent) != maxRecent {
		t.Errorf("recent holds %d arrivals, want the bound %d", len(l.Recent), maxRecent)
	}
	if len(l.Bytes()) > 4096 {
		t.Errorf("a full ledger is %d bytes", len(l.Bytes()))
	}
}

func TestParseLedgerRefusesGarbage(t *testing.T) {
	t.Parallel()
	if _, err := ParseLedger([]byte("{not json")); err == nil {
		t.Error("garbage ledger accepted")
	}
}

// A registration newer than everything carried for a living registration is
// held back once: it may be a new registration whose deletion a crashed
// process still holds. Delivered again, it is decided with what has come
// back meanwhile.
func TestLedgerHoldsALateRegistration(t *testing.T) {
	t.Parallel()
	held := func(s step) Arrival { a := s.arrival(); a.MayHold = true; return a }
	l := Ledger{}
	l.Decide(step{c, 0, "reg", n, 1, ""}.arrival())
	l.Decide(step{u, 5, "A", n, 2, ""}.arrival())
	before := string(l.Bytes())
	if v := l.Decide(held(step{c, 9, "reg2", n, 4, ""})); v.Why != VerdictHold || v.Write || string(l.Bytes()) != before {
		t.Fatalf("late registration: %+v, ledger %s → %s", v, before, l.Bytes())
	}
	if v := l.Decide(step{d, 9, "del", n, 3, ""}.arrival()); v.Why != VerdictNew {
		t.Fatalf("the deletion coming back: %+v", v)
	}
	if v := l.Decide(step{c, 9, "reg2", n, 4, ""}.arrival()); v.Why != VerdictNew || l.Generation != 2 || l.Deleted {
		t.Fatalf("the registration again: %+v, generation %d, deleted %v; want a new registration", v, l.Generation, l.Deleted)
	}

	// Another try of the registration, re-stamped late: held once, then
	// taken for what it is.
	l = Ledger{}
	l.Decide(step{c, 0, "reg", w, 0, ""}.arrival())
	if v := l.Decide(held(step{c, 6, "reg", n, 2, ""})); v.Why != VerdictHold {
		t.Fatalf("re-stamped try: %+v", v)
	}
	if v := l.Decide(step{c, 6, "reg", n, 2, ""}.arrival()); v.Why != VerdictRegistered || l.Generation != 1 {
		t.Fatalf("re-stamped try again: %+v", v)
	}
	// Older than what is carried: no reason to wait. In the newest second
	// itself it may be a registration after a deletion of that second.
	l.Decide(step{u, 7, "A", n, 9, ""}.arrival())
	if v := l.Decide(held(step{c, 0, "reg", n, 1, ""})); v.Why != VerdictRegistered {
		t.Fatalf("buffered copy of the first try: %+v", v)
	}
	if v := l.Decide(held(step{c, 7, "reg3", n, 10, ""})); v.Why != VerdictHold {
		t.Fatalf("a registration in the newest second: %+v", v)
	}

	// A registration in the second of the deletion that opened the
	// ledger: the deleted registration's created may still be held by a
	// crashed process. It comes back older, so this one is new.
	l = Ledger{}
	l.Decide(step{d, 13, "del", n, 2, ""}.arrival())
	if v := l.Decide(held(step{c, 13, "reg2", n, 3, ""})); v.Why != VerdictHold {
		t.Fatalf("registration in the second of the deletion: %+v", v)
	}
	if v := l.Decide(step{c, 0, "reg", n, 1, ""}.arrival()); v.Why != VerdictStale {
		t.Fatalf("the deleted registration's created, back: %+v", v)
	}
	if v := l.Decide(held(step{c, 13, "reg2", n, 3, ""})); v.Why != VerdictNew || l.Generation != 2 || l.Deleted {
		t.Fatalf("registration in the second of the deletion, again: %+v, generation %d, deleted %v; want a new registration", v, l.Generation, l.Deleted)
	}
}

// TestLedgerBytesIsJSON: the hand-written encoding is encoding/json's, byte
// for byte, so stored ledgers read the same either way.
func TestLedgerBytesIsJSON(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(3, 4))
	at := func() time.Time {
		if rng.IntN(4) == 0 {
			return time.Time{}
		}
		return t0.Add(time.Duration(rng.Int64N(int64(1000 * time.Hour)))).In(time.FixedZone("", rng.IntN(3)*3600))
	}
	paths := []string{PathNATS, PathHTTP, "", "x\"y", "ü"}
	for i := range 2000 {
		l := Ledger{Generation: rng.IntN(3), Created: rng.IntN(2) == 0, Deleted: rng.IntN(2) == 0,
			Sequence: rng.Uint64N(3) * rng.Uint64(), Newest: at(), First: at(), Reg: rng.Uint64N(2) * rng.Uint64()}
		for range rng.IntN(4) {
			p := paths[rng.IntN(2)]
			if rng.IntN(50) == 0 {
				p = paths[rng.IntN(len(paths))]
			}
			l.Recent = append(l.Recent, Arrival{Hash: rng.Uint64(), Path: p, StreamSeq: rng.Uint64N(2) * rng.Uint64N(1<<40)})
		}
		want, err := json.Marshal(l)
		if err != nil {
			t.Fatal(err)
		}
		if got := l.Bytes(); string(got) != string(want) {
			t.Fatalf("ledger %d: Bytes()\n%s\nencoding/json\n%s", i, got, want)
		}
	}
}

func BenchmarkLedgerBytes(b *testing.B) {
	l := Ledger{Generation: 1, Created: true, Sequence: 7, Newest: t0, First: t0.Add(-time.Hour),
		Recent: []Arrival{{Hash: 1 << 60, Path: PathNATS, StreamSeq: 123456}, {Hash: 42, Path: PathHTTP}}}
	b.ReportAllocs()
	for b.Loop() {
		_ = l.Bytes()
	}
}
