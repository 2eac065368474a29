package consume

import (
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// budget bounds the bytes of the JetStream messages the subscriber holds:
// received and not yet settled, whether being handled or waiting behind an
// earlier event of the same user. MAX_IN_FLIGHT bounds their number; this
// bounds their size, which the number alone does not (1,000 messages of
// NATS's 1 MiB took a pod past its memory limit).
//
// A message is admitted when it fits in what is left of the limit, or when
// nothing is held: a message larger than the whole limit is handled, alone,
// rather than stranded. One that does not fit is kept aside (parked) until
// it does; while a message is parked no other is admitted, so a large one
// is not starved by a stream of small ones. What arrives meanwhile either
// waits in the NATS client (wait mode) or is handed back to the broker with
// a delay (hand-back mode, see Subscriber).
//
// Messages handed back are spread over waves, one limit's worth each, due
// one step apart, so that they come back about as fast as the process can
// take them instead of all at once (to be handed back again).
//
// budget is not safe for concurrent use; the subscriber holds its lock.
type budget struct {
	limit  int64
	held   int64   // bytes of the admitted messages not yet settled
	parked *flight // the message that did not fit, kept until it does

	step      time.Duration // between waves
	maxDelay  time.Duration // no wave is due later than this from now
	waveDue   time.Time     // when the last wave comes back
	waveBytes int64         // bytes handed back into the last wave
}

func newBudget(limit int64, step, maxDelay time.Duration) *budget {
	return &budget{limit: limit, step: step, maxDelay: max(maxDelay, step)}
}

// fits reports whether a message of size bytes may be admitted now,
// parking aside.
func (b *budget) fits(size int64) bool {
	return b.held == 0 || b.held+size <= b.limit
}

// admit counts f as held.
func (b *budget) admit(f *flight) { b.held += f.size }

// release stops counting f.
func (b *budget) release(f *flight) { b.held -= f.size }

// unpark returns the parked message once it fits, and forgets it; the
// caller admits it.
func (b *budget) unpark() *flight {
	if b.parked == nil || !b.fits(b.parked.size) {
		return nil
	}
	p := b.parked
	b.parked = nil
	return p
}

// handBack returns when a message of size bytes handed back now for room
// is due back: with the last wave while it has room for it, else one step
// after it.
func (b *budget) handBack(size int64, now time.Time) time.Time {
	switch {
	case !b.waveDue.After(now):
		// Nothing handed back is still away: the first wave comes back
		// once the process has had a step to work through what it holds.
		b.waveDue, b.waveBytes = now.Add(b.step), 0
	case b.waveBytes > 0 && b.waveBytes+size > b.limit:
		b.waveDue, b.waveBytes = b.waveDue.Add(b.step), 0
	}
	if last := now.Add(b.maxDelay); b.waveDue.After(last) {
		b.waveDue = last
	}
	b.waveBytes += size
	return b.waveDue
}

// msgSize is what a message counts against the budget: its payload and
// headers, the bytes the NATS client holds for it.
func msgSize(m jetstream.Msg) int64 {
	n := len(m.Data()) + len(m.Subject()) + len(m.Reply())
	for k, vs := range m.Headers() {
		for _, v := range vs {
			n += len(k) + len(v)
		}
	}
	return int64(n)
}
