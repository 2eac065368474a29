package broker

import (
	"fmt"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/social/user-events-router/configs"
)

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
	// Pull: the durable is a pull consumer; the router asks for no more
	// bytes than PullBytes at a time.
	Pull bool
}

// PullBytes is how many bytes of messages one pull asks for, on a pull
// durable with limits d, for a subscriber that holds up to budget: the
// budget, or one largest message if that is more (a pull that cannot take
// the next message would stall).
func PullBytes(d DurableLimits, budget int64) int64 { return max(budget, d.MaxMsgBytes) }

// LimitsOf reads the limits of a durable configured as cc, on a stream
// that takes messages of up to maxMsg bytes.
func LimitsOf(cc jetstream.ConsumerConfig, maxMsg int64) DurableLimits {
	return DurableLimits{MaxDeliver: cc.MaxDeliver, MaxAckPending: cc.MaxAckPending, MaxMsgBytes: maxMsg, Pull: cc.DeliverSubject == ""}
}

// ByteBounded reports whether MAX_IN_FLIGHT_BYTES bounds what a process
// holds on a durable with limits d: when it redelivers without limit, so
// that the subscriber may hand back what has no room (see MemoryBound); or
// when it is a pull consumer, which pulls no more than PullBytes.
func (d DurableLimits) ByteBounded() bool { return d.Pull || d.MaxDeliver <= 0 }

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
// what MaxAckPending lets the broker push (see consume.Subscriber).
func MemoryBound(cfg configs.Config, d DurableLimits) string {
	if d.Pull {
		return fmt.Sprintf("memory: bounded by MAX_IN_FLIGHT_BYTES=%d: at most %s of messages held, plus one of up to %s parked until there is room (a larger one is handled alone); the durable is a pull consumer, and the NATS client holds at most %s pulled and not yet taken",
			cfg.MaxInFlightBytes, ByteSize(cfg.MaxInFlightBytes), ByteSize(d.MaxMsgBytes), ByteSize(PullBytes(d, cfg.MaxInFlightBytes)))
	}
	pushed := "the whole backlog (its max ack pending is unlimited)"
	if d.MaxAckPending > 0 {
		pushed = fmt.Sprintf("up to its max ack pending × the largest message: %d × %s = %s", d.MaxAckPending, ByteSize(d.MaxMsgBytes), ByteSize(int64(d.MaxAckPending)*d.MaxMsgBytes))
	}
	if !d.ByteBounded() {
		return fmt.Sprintf("memory: bounded by the durable, not by MAX_IN_FLIGHT_BYTES: the broker may push %s into the process; the durable has max deliver %d, so the router waits for room rather than hand messages back (each trip would spend a delivery), and MAX_IN_FLIGHT_BYTES=%d bounds only the messages being handled. For a byte bound, let the router create its own durable (a NATS_DURABLE that does not exist yet) or lower this one's max ack pending",
			pushed, d.MaxDeliver, cfg.MaxInFlightBytes)
	}
	line := fmt.Sprintf("memory: bounded by MAX_IN_FLIGHT_BYTES=%d: at most %s of messages held, plus one of up to %s parked until there is room (a larger one is handled alone); the durable redelivers without limit, so what the broker pushes beyond that is handed back to it with a delay as it arrives (on the way at once: %s; the NATS client keeps at most %s of it, and drops the rest, which the broker delivers again after the ack wait)",
		cfg.MaxInFlightBytes, ByteSize(cfg.MaxInFlightBytes), ByteSize(d.MaxMsgBytes), pushed, ByteSize(ClientHolds(d, cfg.MaxInFlightBytes)))
	if d.MaxAckPending <= 0 || d.MaxAckPending > cfg.MaxInFlight {
		line += fmt.Sprintf("; while MAX_IN_FLIGHT=%d messages are held the NATS client also keeps what the broker pushes meanwhile (the durable's max ack pending is %d): set MAX_IN_FLIGHT to at least that", cfg.MaxInFlight, d.MaxAckPending)
	}
	return line
}

// ByteSize writes n bytes for a reader: 64 MiB, 1.5 MiB, 512 KiB, 100 B.
func ByteSize(n int64) string {
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

// PendingLimitsNeeded says why a durable with limits l needs pending limits
// the jetstream package cannot set, or "" when its defaults are enough:
// when the broker can never push more than they hold, and a message the
// client dropped all the same (a redelivery pushed while the first
// delivery still waits in the client, past the ack wait) would cost a
// trip, not a delivery.
func PendingLimitsNeeded(l DurableLimits) string {
	switch {
	case l.Pull:
		return "" // the pulls bound what the client holds
	case !l.ByteBounded():
		// The subscriber waits for room with what the broker pushed held
		// in the client (see consume.Subscriber).
		return fmt.Sprintf("the durable has max deliver %d: what the broker pushes waits in the client for room, and a message it dropped would spend a delivery", l.MaxDeliver)
	case l.MaxAckPending <= 0:
		return "the durable's max ack pending is unlimited: the broker may push more than the client's default pending limits"
	case l.MaxAckPending > nats.DefaultSubPendingMsgsLimit,
		int64(l.MaxAckPending)*l.MaxMsgBytes > nats.DefaultSubPendingBytesLimit:
		return fmt.Sprintf("the durable's max ack pending × the largest message (%d × %s) is more than the client's default pending limits (%d messages, %s)",
			l.MaxAckPending, ByteSize(l.MaxMsgBytes), nats.DefaultSubPendingMsgsLimit, ByteSize(nats.DefaultSubPendingBytesLimit))
	}
	return ""
}

// MinClientPendingBytes is the least ClientPendingBytes allows: real
// events (under 1 KiB) at the durable's max ack pending never come near it.
const MinClientPendingBytes = 8 << 20

// ClientPendingBytes is what the NATS client may hold for the subscriber
// on a durable with limits l, beside the MAX_IN_FLIGHT_BYTES (budget) it
// has received: -1 (all the broker pushes) on a durable with a max
// deliver, where a dropped message would spend a delivery; elsewhere as
// much as the budget (at least MinClientPendingBytes). Without that bound
// the broker pushes up to max ack pending × the largest message (1,000 ×
// 1 MiB), and a backlog of large messages took the router to 320 MiB
// against a pod's 256 Mi. A message the client dropped is not seen by the
// sequencer, so a later event of its user may be carried first; the
// ledger then decides the late one (stale, or another try), as it does
// for the messages of a connection the broker cut.
func ClientPendingBytes(l DurableLimits, budget int64) int64 {
	if !l.ByteBounded() {
		return -1
	}
	return max(budget, MinClientPendingBytes)
}

// ClientHolds is the most the NATS client keeps for the subscriber of a
// byte-bounded durable with limits l, beside the budget it has received:
// on the jetstream package's subscription (PendingLimitsNeeded says none
// is needed) what the broker can push at once, which is within that
// package's 64 MiB; on the legacy one ClientPendingBytes.
func ClientHolds(l DurableLimits, budget int64) int64 {
	if PendingLimitsNeeded(l) == "" && l.MaxAckPending > 0 {
		return int64(l.MaxAckPending) * l.MaxMsgBytes
	}
	return ClientPendingBytes(l, budget)
}
