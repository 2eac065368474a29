package consume

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/social/user-events-router/router/broker"
)

// Pull durables, and the pinned one with hot standbys.
//
// On a pinned durable (broker.PinnedConsumerConfig) every replica pulls in
// the priority group, and the server gives messages to one of them only,
// the pinned client, whose pulls carry its pin id; the others' pulls wait.
// When the pinned client has not pulled for the durable's PinnedTTL (it
// died, or hangs), the server pins the next one that pulls. So at any
// moment one process holds the stream's order, and its sequencer keeps
// each user's events in it.
//
// What a takeover must add is what the old pinned client still held: the
// messages it received and never acked come back only after their ack
// wait, while the new one receives the messages after them at once. So
// when a process finds itself newly pinned (a message with a pin id it has
// not seen), before it hands out that first message it reads, from the
// stream, every message between the durable's ack floor and that one that
// is still there (on a WorkQueue stream an acked message is gone), and
// tells the sequencer to expect each back: their users' later messages are
// then held back, as behind a failure, until those come back. Other users'
// events go at once.

// pinIDHeader is the header nats-server puts on each message it delivers
// to the pinned client: the pin id.
const pinIDHeader = "Nats-Pin-Id"

// pullExpiry is how long one pull waits on the server: under a third of
// the pin's TTL, so an idle pinned process pulls again well before the
// server would unpin it.
func pullExpiry(ttl time.Duration) time.Duration {
	if ttl <= 0 {
		return 30 * time.Second
	}
	return min(max(ttl/3, time.Second), 30*time.Second)
}

// consumePull consumes the pull durable of s.binding: in its priority
// group, if it has one, asking for no more bytes at a time than the budget.
func (s *Subscriber) consumePull(ctx context.Context, topic string) (jetstream.ConsumeContext, error) {
	c, err := s.js.Consumer(ctx, s.binding.Stream, s.binding.Durable)
	if err != nil {
		return nil, err
	}
	if f := c.CachedInfo().Config.FilterSubject; f != "" && f != topic {
		return nil, fmt.Errorf("the durable filters %q, not %q", f, topic)
	}
	opts := []jetstream.PullConsumeOpt{
		jetstream.PullMaxBytes(int(broker.PullBytes(s.binding.Limits, s.budget.limit))),
		jetstream.PullExpiry(pullExpiry(s.binding.PinnedTTL)),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			if errors.Is(err, jetstream.ErrPinIDMismatch) {
				// Another replica is pinned: this one waits as a standby.
				s.logger.Debug("jetstream consumer: not the pinned client", "durable", s.binding.Durable)
				return
			}
			s.logger.Warn("jetstream consumer error", "durable", s.binding.Durable, "error", err)
		}),
	}
	if s.binding.Group != "" {
		opts = append(opts, jetstream.PullPriorityGroup(s.binding.Group))
	}
	return c.Consume(s.receive, opts...)
}

// newlyPinned reports whether jm carries a pin id this process has not
// seen: it has just become the pinned client. Only receive calls it, one
// message at a time.
func (s *Subscriber) newlyPinned(jm jetstream.Msg) bool {
	if !s.binding.Pinned {
		return false
	}
	h := jm.Headers()
	if h == nil {
		return false
	}
	pin := h.Get(pinIDHeader)
	s.mu.Lock()
	defer s.mu.Unlock()
	if pin == "" || pin == s.pin {
		return false
	}
	s.pin = pin
	return true
}

// takeOver tells the sequencer to expect back what the durable has
// delivered and not had acked, but for what this process holds itself:
// messages the previous pinned client held (see the top of this file).
// The range read is from the ack floor to the last delivered message (not
// to seq: the first message a new pinned client gets may be a redelivery,
// which the server hands out before new ones). Each read jumps to the
// next message still in the stream, so it costs one request per message
// held, not per sequence. Reading the stream happens before s.mu is taken;
// what is expected is then re-read every second (recheck), so that a
// message the previous client acked after all (it was alive, only slow)
// stops holding its user back.
//
// The read runs in the NATS callback, so it is bounded well under the
// pin's TTL (takeoverTimeout). When it has not finished by then (a slow
// server, a loaded machine), the rest is read in the background
// (finishTakeover) with the sequencer closed meanwhile: every message
// that arrives is handed back for a second, in its user's order, since
// any of them may be a later event of a user whose earlier one the
// previous client still holds. The callback returns, the client keeps
// pulling, and the pin is kept.
func (s *Subscriber) takeOver(seq uint64) {
	t := &takeover{first: seq, start: time.Now()}
	ctx, cancel := context.WithTimeout(context.Background(), takeoverTimeout(s.binding.PinnedTTL))
	defer cancel()
	// Closed from the start: a message parked for room, or waiting behind
	// its user's, may be handed out by a worker meanwhile.
	s.mu.Lock()
	s.seq.closed++
	s.seq.gateFor = 0
	if s.binding.MaxDeliver > 0 {
		// Each trip spends a delivery: one, for as long as the gate may
		// stay closed.
		s.seq.gateFor = takeoverTimeout(s.binding.PinnedTTL) + finishTimeout(s.binding.AckWait)
	}
	s.mu.Unlock()
	if err := s.readHeld(ctx, t); err != nil {
		s.logger.Info("pinned: this process now holds the durable; what the previous pinned client held is still being read, so events are handed back meanwhile",
			"durable", s.binding.Durable, "first_stream_seq", seq, "read_to_stream_seq", t.from, "found_so_far", len(t.found),
			"took", time.Since(t.start).Round(time.Millisecond), "error", err)
		go s.finishTakeover(t)
		return
	}
	s.expectHeld(t)
}

// finishTimeout is how long finishTakeover goes on trying: an ack wait,
// by when what the previous pinned client held has come back anyway.
func finishTimeout(ackWait time.Duration) time.Duration { return max(ackWait, 5*time.Second) }

// finishTakeover goes on with a takeover's read that did not finish in the
// NATS callback (it ran out of time, or a request failed), with the
// sequencer closed, and then opens it. It tries again, from where it
// stopped, until finishTimeout has passed or the subscriber closes: the
// gate keeps order however long it stays closed.
func (s *Subscriber) finishTakeover(t *takeover) {
	ctx, cancel := context.WithTimeout(context.Background(), finishTimeout(s.binding.AckWait))
	defer cancel()
	go func() {
		select {
		case <-s.closing:
			cancel()
		case <-ctx.Done():
		}
	}()
	for {
		attempt, cancelAttempt := context.WithTimeout(ctx, finishAttemptTimeout)
		err := s.readHeld(attempt, t)
		cancelAttempt()
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			if !s.isClosing() {
				s.logger.Warn("pinned: cannot read what the previous pinned client held; per-user order is not kept for the rest of it", "durable", s.binding.Durable, "stream_seq", t.from, "error", err)
			}
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(finishRetryWait):
		}
	}
	s.expectHeld(t)
}

// finishAttemptTimeout bounds one of finishTakeover's tries (a reply lost
// would otherwise take all its time), and finishRetryWait is the pause
// after a try that failed.
const (
	finishAttemptTimeout = 2 * time.Second
	finishRetryWait      = 100 * time.Millisecond
)

// takeover is what a takeover has read so far.
type takeover struct {
	first uint64    // the message this process received, which started it
	start time.Time // when it started
	info  *jetstream.ConsumerInfo
	// stream, filter: read with GetMsg, from from (moving on as it is
	// read) up to to.
	stream    jetstream.Stream
	filter    string
	from, to  uint64
	found     []expected
	truncated bool
}

// readHeld goes on with t's read from where it stopped: the durable's ack
// floor and last delivered message, the stream, and then the messages
// still there from the ack floor on, up to the last delivered one (or t's
// first, if later), the end of the stream, or maxTakeoverMessages found.
func (s *Subscriber) readHeld(ctx context.Context, t *takeover) error {
	if t.info == nil {
		info, err := broker.ConsumerInfo(ctx, s.js, s.binding)
		if err != nil {
			return fmt.Errorf("the durable's ack floor: %w", err)
		}
		t.info = info
		t.from, t.to = info.AckFloor.Stream+1, max(t.first, info.Delivered.Stream+1)
		if t.filter = info.Config.FilterSubject; t.filter == "" {
			t.filter = ">"
		}
	}
	if t.stream == nil {
		stream, err := s.js.Stream(ctx, s.binding.Stream)
		if err != nil {
			return fmt.Errorf("stream %s: %w", s.binding.Stream, err)
		}
		t.stream = stream
	}
	for t.from < t.to {
		if len(t.found) == maxTakeoverMessages {
			t.truncated = true
			return nil
		}
		m, err := t.stream.GetMsg(ctx, t.from, jetstream.WithGetMsgSubject(t.filter))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return nil // nothing left from t.from on
		}
		if err != nil {
			return fmt.Errorf("stream %s at %d: %w", s.binding.Stream, t.from, err)
		}
		if m.Sequence >= t.to {
			return nil
		}
		if key := orderKey(m.Data); key != "" && m.Sequence != t.first {
			t.found = append(t.found, expected{key: key, seq: m.Sequence})
		}
		t.from = m.Sequence + 1
	}
	return nil
}

// expectHeld tells the sequencer to expect back what t found, opens it,
// logs the takeover, and starts rechecking what is expected.
func (s *Subscriber) expectHeld(t *takeover) {
	now := time.Now()
	// What the previous client held is back one ack wait after the
	// takeover at the latest (a lost pin was that long without acks).
	deadline := t.start.Add(s.binding.AckWait)
	s.mu.Lock()
	var expecting []expected
	for _, e := range t.found {
		if p := s.budget.parked; p != nil && p.seq == e.seq {
			continue
		}
		if s.seq.expect(e.key, e.seq, s.expectedDue(now, deadline), now) {
			e.deadline = deadline
			expecting = append(expecting, e)
		}
	}
	s.seq.closed-- // takeOver closed it
	s.mu.Unlock()
	if s.isClosing() {
		return
	}
	var ackFloor, delivered uint64
	if t.info != nil {
		ackFloor, delivered = t.info.AckFloor.Stream, t.info.Delivered.Stream
	}
	s.logger.Info("pinned: this process now holds the durable; the events of users with a message still held elsewhere wait for it",
		"durable", s.binding.Durable, "first_stream_seq", t.first, "ack_floor", ackFloor, "delivered", delivered,
		"expected_back", len(expecting), "scan_truncated", t.truncated, "took", time.Since(t.start).Round(time.Millisecond))
	if len(expecting) > 0 {
		go s.recheck(t.stream, expecting)
	}
}

// expected is a message a takeover expects back, until deadline.
type expected struct {
	key      string
	seq      uint64
	deadline time.Time
}

// expectedDue is when an expected message is due back, which decides how
// long its user's later events are held back at a time: one recheck on a
// durable that redelivers without limit; on one with a max deliver, where
// each trip spends a delivery, the whole deadline at once.
func (s *Subscriber) expectedDue(now, deadline time.Time) time.Time {
	if s.binding.MaxDeliver > 0 {
		return deadline
	}
	if due := now.Add(recheckEvery); due.Before(deadline) {
		return due
	}
	return deadline
}

// recheckEvery is how often a takeover's expected messages are re-read,
// and so how long a user's events are held back at a time behind one.
const recheckEvery = time.Second

// maxTakeoverMessages bounds what one takeover expects back: many times a
// durable's max ack pending.
const maxTakeoverMessages = 20000

// takeoverReadLimit, when above 0, replaces takeoverTimeout's bound: tests
// set it to see a read that does not finish in the callback.
var takeoverReadLimit atomic.Int64

// takeoverTimeout bounds a takeover's reading of the stream, which runs in
// the NATS callback (no pull meanwhile): well under the pin's TTL, so the
// new pinned client does not lose its pin reading.
func takeoverTimeout(ttl time.Duration) time.Duration {
	if d := time.Duration(takeoverReadLimit.Load()); d > 0 {
		return d
	}
	if ttl <= 0 {
		return 10 * time.Second
	}
	return min(max(ttl/3, time.Second), 10*time.Second)
}

// recheck re-reads each expected message every recheckEvery: while it is
// still in the stream (unacked) and its deadline not past, its user stays
// held back behind it for another recheckEvery; once it is gone (acked by
// the client that held it) or overdue, it is forgotten. One that comes
// back to this process is forgotten by the sequencer as it arrives.
func (s *Subscriber) recheck(stream jetstream.Stream, waiting []expected) {
	t := time.NewTicker(recheckEvery / 2)
	defer t.Stop()
	for len(waiting) > 0 {
		select {
		case <-s.closing:
			return
		case <-t.C:
		}
		now := time.Now()
		var keep, gone []expected
		for _, e := range waiting {
			ctx, cancel := context.WithTimeout(context.Background(), recheckEvery)
			_, err := stream.GetMsg(ctx, e.seq)
			cancel()
			switch {
			case errors.Is(err, jetstream.ErrMsgNotFound), now.After(e.deadline):
				gone = append(gone, e)
			default: // still there, or the broker cannot tell: keep waiting
				keep = append(keep, e)
			}
		}
		s.mu.Lock()
		for _, e := range gone {
			s.seq.forget(e.key, e.seq, now)
		}
		var still []expected
		for _, e := range keep {
			if s.seq.extend(e.key, e.seq, s.expectedDue(now, e.deadline), now) {
				still = append(still, e)
			}
		}
		s.mu.Unlock()
		waiting = still
	}
}

// unpin, when this process is the pinned client, lets the server pin a
// standby at once instead of after the pin's TTL. Called by Close once
// everything in flight is settled.
func (s *Subscriber) unpin() {
	s.mu.Lock()
	pin := s.pin
	s.mu.Unlock()
	if !s.binding.Pinned || pin == "" || !s.nc.IsConnected() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	info, err := broker.ConsumerInfo(ctx, s.js, s.binding)
	if err != nil {
		s.logger.Warn("pinned: could not read the durable to unpin; a standby takes over after the pin's TTL", "durable", s.binding.Durable, "ttl", s.binding.PinnedTTL, "error", err)
		return
	}
	for _, g := range info.PriorityGroups {
		if g.Group != s.binding.Group || g.PinnedClientID != pin {
			continue
		}
		stream, err := s.js.Stream(ctx, s.binding.Stream)
		if err == nil {
			err = stream.UnpinConsumer(ctx, s.binding.Durable, s.binding.Group)
		}
		if err != nil {
			s.logger.Warn("pinned: could not unpin; a standby takes over after the pin's TTL", "durable", s.binding.Durable, "ttl", s.binding.PinnedTTL, "error", err)
			return
		}
		s.logger.Info("pinned: unpinned, so a standby takes over now", "durable", s.binding.Durable)
	}
}
