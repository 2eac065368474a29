package router

import (
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/social/user-events-router/configs"
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

// MaxMessageBytes is the largest message the broker accepts into stream:
// the stream's own limit when it has one, else the server's max payload.
func MaxMessageBytes(stream jetstream.StreamConfig, serverMaxPayload int64) int64 {
	if stream.MaxMsgSize > 0 && int64(stream.MaxMsgSize) < serverMaxPayload {
		return int64(stream.MaxMsgSize)
	}
	return serverMaxPayload
}

// DurableLimits are the settings of a durable, and of its stream, that
// bound what the broker pushes to a process (see MemoryBound).
type DurableLimits struct {
	MaxDeliver    int   // ≤ 0: unlimited
	MaxAckPending int   // ≤ 0: unlimited
	MaxMsgBytes   int64 // the largest message the stream takes
}

// LimitsOf reads the limits of a durable configured as cc, on a stream
// that takes messages of up to maxMsg bytes.
func LimitsOf(cc jetstream.ConsumerConfig, maxMsg int64) DurableLimits {
	return DurableLimits{MaxDeliver: cc.MaxDeliver, MaxAckPending: cc.MaxAckPending, MaxMsgBytes: maxMsg}
}

// ByteBounded reports whether MAX_IN_FLIGHT_BYTES bounds what a process
// holds on a durable with limits d: when it redelivers without limit, so
// that the subscriber may hand back what has no room (see MemoryBound).
func (d DurableLimits) ByteBounded() bool { return d.MaxDeliver <= 0 }

// MemoryBound says, in one line for check and the start log, what bounds
// the memory the JetStream messages take in one router process bound to a
// durable with limits d.
//
// On a durable that redelivers without limit (the router creates its own
// so) it is MAX_IN_FLIGHT_BYTES: the subscriber holds no more, and hands
// back what the broker pushes beyond it as it arrives. The broker still
// pushes up to MaxAckPending messages at once; what is on its way is
// bounded only by that, and past 64 MiB buffered for one connection
// nats-server cuts it as a slow consumer (its messages come back after the
// ack wait). On a durable with a MaxDeliver (a legacy one, as found) it is
// what MaxAckPending lets the broker push (see Subscriber).
func MemoryBound(cfg configs.Config, d DurableLimits) string {
	pushed := "the whole backlog (its max ack pending is unlimited)"
	if d.MaxAckPending > 0 {
		pushed = fmt.Sprintf("up to its max ack pending × the largest message: %d × %s = %s", d.MaxAckPending, byteSize(d.MaxMsgBytes), byteSize(int64(d.MaxAckPending)*d.MaxMsgBytes))
	}
	if !d.ByteBounded() {
		return fmt.Sprintf("memory: bounded by the durable, not by MAX_IN_FLIGHT_BYTES: the broker may push %s into the process; the durable has max deliver %d, so the router waits for room rather than hand messages back (each trip would spend a delivery), and MAX_IN_FLIGHT_BYTES=%d bounds only the messages being handled. For a byte bound, let the router create its own durable (a NATS_DURABLE that does not exist yet) or lower this one's max ack pending",
			pushed, d.MaxDeliver, cfg.MaxInFlightBytes)
	}
	line := fmt.Sprintf("memory: bounded by MAX_IN_FLIGHT_BYTES=%d: at most %s of messages held, plus one of up to %s parked until there is room (a larger one is handled alone); the durable redelivers without limit, so what the broker pushes beyond that is handed back to it with a delay as it arrives (on the way at once: %s; the NATS client keeps at most %s of it, and drops the rest, which the broker delivers again after the ack wait)",
		cfg.MaxInFlightBytes, byteSize(cfg.MaxInFlightBytes), byteSize(d.MaxMsgBytes), pushed, byteSize(clientHolds(d, cfg.MaxInFlightBytes)))
	if d.MaxAckPending <= 0 || d.MaxAckPending > cfg.MaxInFlight {
		line += fmt.Sprintf("; while MAX_IN_FLIGHT=%d messages are held the NATS client also keeps what the broker pushes meanwhile (the durable's max ack pending is %d): set MAX_IN_FLIGHT to at least that", cfg.MaxInFlight, d.MaxAckPending)
	}
	return line
}

// byteSize writes n bytes for a reader: 64 MiB, 1.5 MiB, 512 KiB, 100 B.
func byteSize(n int64) string {
	for _, u := range []struct {
		size int64
		name string
	}{{1 << 30, "GiB"}, {1 << 20, "MiB"}, {1 << 10, "KiB"}} {
		if n >= u.size {
			return strings.TrimSuffix(fmt.Sprintf("%.1f", float64(n)/float64(u.size)), ".0") + " " + u.name
		}
	}
	return fmt.Sprintf("%d B", n)
}
