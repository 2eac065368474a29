package consume

import (
	"time"

	"github.com/social/user-events-router/schema"
)

// Per-user order. The router handles many messages at once, so two events
// of one user could commit in either order. The sequencer prevents that
// within one process: it sees messages in the order the broker delivers
// them (stream order, for a consumer's first deliveries) and
//
//   - hands out at most one message per user at a time; the user's later
//     messages wait, in arrival order, until it is settled;
//   - when a message fails and is handed back to the broker (NAK), it
//     remembers its stream sequence as outstanding until it comes back;
//     the user's later messages, waiting or arriving meanwhile, are handed
//     back too with a slightly longer delay, so none commits before it;
//   - a message that comes back is handed out only when no earlier
//     outstanding message of its user is still away.
//
// Two bounds keep this from stalling or losing anything: an outstanding
// sequence is forgotten one ack wait after it was due back (it may have
// gone to another replica, or to the poison queue), and a message on its
// last allowed delivery is never handed back for order's sake — it is
// handled, because stranding it would lose it. Replicas sharing the durable
// each order only what they receive; the broker spreads one user's events
// over replicas, so across replicas order is not guaranteed.
type sequencer struct {
	lanes map[string]*lane
	// margin is added to the delay of a message held behind an outstanding
	// one, so it comes back after it.
	margin time.Duration
	// grace is how long past its due time an outstanding sequence is kept.
	grace     time.Duration
	lastSweep time.Time
	// closed counts the takeovers that have not yet learnt which users
	// the previous pinned client held messages of (see takeOver); while
	// any has not, every message that may be handed back is, for gateFor
	// (gateDelay unless set), in its user's order, each after the one
	// before by gateSpacing.
	closed  int
	gateFor time.Duration
}

// gateDelay is how long a message arriving while the sequencer is closed
// is handed back for, on a durable that redelivers without limit: the
// gate is re-tried every second.
const gateDelay = time.Second

// gateSpacing is how much later than its user's message before it a
// message handed back by the gate is due. Order does not rest on it (a
// message that comes back before an earlier one of its user is handed
// back again), so it is small: a user with many events in the gate is not
// spread over as many NAK delays.
const gateSpacing = 10 * time.Millisecond

type lane struct {
	active      bool
	current     uint64 // stream sequence of the message handed out, while active
	waiting     []*flight
	outstanding map[uint64]time.Time // stream sequence → when it is due back
}

// verdict is what the subscriber does with an arriving message.
type verdict int

const (
	handOut  verdict = iota // give it to the handler now
	wait                    // queued behind the user's message in flight
	holdBack                // NAK it with the delay returned
)

// held is a message to hand back to the broker with a delay, for order.
type held struct {
	f     *flight
	delay time.Duration
}

func newSequencer(margin, grace time.Duration) *sequencer {
	return &sequencer{lanes: map[string]*lane{}, margin: margin, grace: grace}
}

// orderKey is the user id of an event body, or "" when it has none (such a
// message is not ordered; the handler will find what is wrong with it).
// A body over the event limit has none either: it is poisoned whatever its
// place, and not scanning it keeps the subscriber's callback fast enough to
// hand back a backlog of large messages as quickly as they arrive.
func orderKey(payload []byte) string {
	if len(payload) > schema.MaxEventBytes {
		return ""
	}
	id, _ := schema.Peek(payload)
	return id
}

func (q *sequencer) lane(key string, now time.Time) *lane {
	l := q.lanes[key]
	if l == nil {
		l = &lane{}
		q.lanes[key] = l
	}
	for seq, due := range l.outstanding {
		if now.After(due.Add(q.grace)) {
			delete(l.outstanding, seq)
		}
	}
	return l
}

// blocked reports whether an outstanding message of l precedes seq, and
// how long to hold seq back so that it comes back after all of them.
func (q *sequencer) blocked(l *lane, seq uint64, now time.Time) (time.Duration, bool) {
	var latest time.Time
	found := false
	for s, due := range l.outstanding {
		if s < seq {
			found = true
			if due.After(latest) {
				latest = due
			}
		}
	}
	if !found {
		return 0, false
	}
	return max(latest.Sub(now), 0) + q.margin, true
}

func (q *sequencer) hold(l *lane, f *flight, now time.Time) (held, bool) {
	if f.last {
		return held{}, false
	}
	d, ok := q.blocked(l, f.seq, now)
	if !ok {
		return held{}, false
	}
	if l.outstanding == nil {
		l.outstanding = map[uint64]time.Time{}
	}
	l.outstanding[f.seq] = now.Add(d)
	return held{f: f, delay: d}, true
}

// arrive decides what to do with a message just received.
func (q *sequencer) arrive(f *flight, now time.Time) (verdict, time.Duration) {
	if f.key == "" {
		return handOut, 0
	}
	if q.closed > 0 && !f.last {
		d := q.gateFor
		if d <= 0 {
			d = gateDelay
		}
		return holdBack, q.awayBy(f, now.Add(d), now, gateSpacing)
	}
	l := q.lane(f.key, now)
	delete(l.outstanding, f.seq) // it is back
	if h, ok := q.hold(l, f, now); ok {
		return holdBack, h.delay
	}
	if l.active {
		l.waiting = append(l.waiting, f)
		return wait, 0
	}
	l.active, l.current = true, f.seq
	return handOut, 0
}

// forget drops the expected (outstanding) message seq of user key: it was
// acked elsewhere, or is overdue.
func (q *sequencer) forget(key string, seq uint64, now time.Time) {
	l := q.lanes[key]
	if l == nil {
		return
	}
	delete(l.outstanding, seq)
	if !l.active && len(l.waiting) == 0 && len(l.outstanding) == 0 {
		delete(q.lanes, key)
	}
}

// extend moves the due time of the expected message seq of user key to
// due, and reports whether it is still expected (it has not come back).
func (q *sequencer) extend(key string, seq uint64, due, now time.Time) bool {
	l := q.lanes[key]
	if l == nil {
		return false
	}
	if _, ok := l.outstanding[seq]; !ok {
		return false
	}
	l.outstanding[seq] = due
	return true
}

// expect records that the message seq of user key is held elsewhere (by
// the process this one took a pinned durable over from) and comes back by
// due: until it is back, the user's later messages are held back behind
// it. A message this process holds itself is not expected. It reports
// whether seq is now expected.
func (q *sequencer) expect(key string, seq uint64, due, now time.Time) bool {
	l := q.lane(key, now)
	if l.active && l.current == seq {
		return false
	}
	for _, w := range l.waiting {
		if w.seq == seq {
			return false
		}
	}
	if l.outstanding == nil {
		l.outstanding = map[uint64]time.Time{}
	}
	if _, ok := l.outstanding[seq]; !ok {
		l.outstanding[seq] = due
	}
	return true
}

// away records that f, just received, is handed back to the broker for
// room (see budget) to come back at due, and returns the delay to give it:
// later than due if an earlier message of its user is outstanding, so it
// still comes back after that one. Until it is back, the user's later
// messages are held behind it like behind a failure.
func (q *sequencer) away(f *flight, due, now time.Time) time.Duration {
	return q.awayBy(f, due, now, q.margin)
}

// awayBy is away with the message due margin after its user's earlier
// outstanding ones.
func (q *sequencer) awayBy(f *flight, due, now time.Time, margin time.Duration) time.Duration {
	d := max(due.Sub(now), 0)
	if f.key == "" {
		return d
	}
	l := q.lane(f.key, now)
	delete(l.outstanding, f.seq) // it is back, and leaves again
	if b, ok := q.blocked(l, f.seq, now); ok {
		d = max(d, b-q.margin+margin)
	}
	if l.outstanding == nil {
		l.outstanding = map[uint64]time.Time{}
	}
	l.outstanding[f.seq] = now.Add(d)
	return d
}

// finish records that f was settled: acked, or (failed) handed back to the
// broker to come back at due. It returns the user's next message to hand
// out, if any, and the waiting messages to hand back for order. When
// closing, every waiting message is handed back (without delay unless
// something before it is outstanding).
func (q *sequencer) finish(f *flight, failed bool, due time.Time, closing bool, now time.Time) (*flight, []held) {
	if f.key == "" {
		return nil, nil
	}
	l := q.lane(f.key, now)
	l.active, l.current = false, 0
	if failed && !f.last {
		if l.outstanding == nil {
			l.outstanding = map[uint64]time.Time{}
		}
		l.outstanding[f.seq] = due
	}
	var holds []held
	var next *flight
	for len(l.waiting) > 0 {
		w := l.waiting[0]
		if h, ok := q.hold(l, w, now); ok {
			holds = append(holds, h)
			l.waiting = l.waiting[1:]
			continue
		}
		if closing {
			holds = append(holds, held{f: w})
			l.waiting = l.waiting[1:]
			continue
		}
		next = w
		l.waiting = l.waiting[1:]
		l.active, l.current = true, w.seq
		break
	}
	if len(l.waiting) == 0 {
		l.waiting = nil
	}
	if !l.active && len(l.waiting) == 0 && len(l.outstanding) == 0 {
		delete(q.lanes, f.key)
	}
	q.sweep(now)
	return next, holds
}

// sweep drops, about once a second, lanes left with nothing but expired
// outstanding sequences.
func (q *sequencer) sweep(now time.Time) {
	if now.Sub(q.lastSweep) < time.Second {
		return
	}
	q.lastSweep = now
	for key := range q.lanes {
		l := q.lane(key, now)
		if !l.active && len(l.waiting) == 0 && len(l.outstanding) == 0 {
			delete(q.lanes, key)
		}
	}
}
