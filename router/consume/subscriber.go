package consume

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/social/user-events-router/handlers"
	"github.com/social/user-events-router/router/broker"
)

// flight is one JetStream message from its arrival until it is settled.
type flight struct {
	received  time.Time
	jm        jetstream.Msg
	msg       *message.Message
	key       string // user id, for per-user order
	seq       uint64 // stream sequence
	delivered uint64 // delivery count
	last      bool   // the durable will not deliver it again
	size      int64  // what it counts against the byte budget
}

// Subscriber is the router's JetStream subscriber, a message.Subscriber
// for one Watermill handler. It consumes the push durable through nats.go's
// jetstream package (PushConsumer.Consume), or, where the client's default
// pending limits could drop what the durable lets the broker push, through
// the one legacy subscription in legacysub.go. It differs from
// watermill-nats's, which holds each subscription until the handler has
// acked its message (so a process handles only as many messages as it has
// subscriptions):
//
//   - many messages are in flight at once, up to maxInFlight (and the
//     durable's MaxAckPending), so the handlers' commits can be grouped
//     into few transactions;
//   - their bytes are bounded too, by MaxInFlightBytes (see budget): a
//     message that does not fit waits, parked, until it does — alone if
//     it is larger than the whole budget. The broker keeps pushing up to
//     the durable's MaxAckPending meanwhile; what it pushes is handed back
//     to it with a delay (NAK) as it arrives when the durable redelivers
//     without limit, which costs the message nothing but a trip. On a
//     durable with a MaxDeliver, a trip would spend one of its deliveries,
//     so the subscriber waits instead and the NATS client holds what was
//     pushed: then memory is bounded by what the durable's MaxAckPending
//     lets the broker push (see broker.MemoryBound);
//   - one user's messages are handed out one at a time, in stream order
//     (see sequencer);
//   - it owns the acks, through Middleware: a message is acked only after
//     its handler returned without error — after the commit — and NAKed
//     with the backoff delay otherwise;
//   - Close is graceful: it stops receiving, lets the messages in flight
//     finish and be settled, hands the ones still waiting back to the
//     broker, and only then closes the output channel. The messages'
//     contexts are not cancelled by shutdown; the handler chain's own
//     per-attempt timeout bounds them.
type Subscriber struct {
	nc      *nats.Conn
	js      jetstream.JetStream
	binding broker.Binding
	backoff Backoff
	timeout time.Duration // for Close
	logger  *slog.Logger
	onAck   func(time.Duration)

	slots   chan struct{} // one per message received and not yet settled
	workers *workers      // run the handlers (see workers)
	// handBackForRoom: hand back what the budget has no room for, instead
	// of waiting for room (see Subscriber).
	handBackForRoom bool
	room            chan struct{} // signalled when bytes are released

	mu       sync.Mutex
	seq      *sequencer
	budget   *budget
	consume  jetstream.ConsumeContext // nil until subscribed
	pin      string                   // the pin id of the messages last received (see newlyPinned); under mu
	api      string                   // what consume is: apiJetStream or apiLegacy
	out      chan *message.Message
	closing  chan struct{}
	senders  sync.WaitGroup // hand-outs not yet sent
	closed   chan struct{}
	once     sync.Once
	subbed   bool
	inflight int
	idle     chan struct{} // closed once inflight is 0 while closing
}

// SubscriberOptions configures a Subscriber.
type SubscriberOptions struct {
	Conn    *nats.Conn
	Binding broker.Binding
	// MaxInFlight bounds the messages received and not yet settled.
	MaxInFlight int
	// MaxInFlightBytes bounds their bytes (see budget).
	MaxInFlightBytes int64
	Backoff          Backoff
	// CloseTimeout bounds how long Close waits for messages in flight.
	CloseTimeout time.Duration
	Logger       *slog.Logger
	// OnAck, if set, is told how long each acked message was in the
	// process, from its receipt to its ack.
	OnAck func(time.Duration)
}

// NewSubscriber checks o and returns a Subscriber that has not subscribed yet.
func NewSubscriber(o SubscriberOptions) (*Subscriber, error) {
	if o.Conn == nil || o.Logger == nil {
		return nil, errors.New("router: subscriber needs a NATS connection and a logger")
	}
	if o.MaxInFlight < 1 {
		return nil, fmt.Errorf("router: max in flight must be at least 1, got %d", o.MaxInFlight)
	}
	if o.MaxInFlightBytes < 1 {
		return nil, fmt.Errorf("router: max in flight bytes must be at least 1, got %d", o.MaxInFlightBytes)
	}
	js, err := jetstream.New(o.Conn)
	if err != nil {
		return nil, err
	}
	// A message held back for order comes back one first-NAK delay after
	// the one it waits for; an outstanding one is forgotten an ack wait
	// after it was due.
	margin := max(o.Backoff.First, 10*time.Millisecond)
	grace := o.Binding.AckWait
	if grace <= 0 {
		grace = 30 * time.Second
	}
	return &Subscriber{
		nc: o.Conn, js: js, binding: o.Binding, backoff: o.Backoff, timeout: o.CloseTimeout, logger: o.Logger, onAck: o.OnAck,
		slots:   make(chan struct{}, o.MaxInFlight),
		workers: newWorkers(o.MaxInFlight),
		// A pull durable gets no more than it pulls: waiting costs nothing.
		handBackForRoom: o.Binding.MaxDeliver <= 0 && !o.Binding.Pull,
		room:            make(chan struct{}, 1),
		seq:             newSequencer(margin, grace),
		// A wave of messages handed back for room comes back one
		// first-NAK delay after the one before.
		budget:  newBudget(o.MaxInFlightBytes, margin, max(o.Backoff.Max, margin)),
		out:     make(chan *message.Message),
		closing: make(chan struct{}),
		closed:  make(chan struct{}),
		idle:    make(chan struct{}),
	}, nil
}

// InFlight is how many messages are received and not yet acked or nacked.
func (s *Subscriber) InFlight() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inflight
}

// InFlightBytes is the bytes of those messages (see budget).
func (s *Subscriber) InFlightBytes() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.budget.held
	if s.budget.parked != nil {
		n += s.budget.parked.size
	}
	return n
}

// The ways the subscriber consumes its durable (Subscriber.api).
const (
	apiJetStream = "jetstream" // PushConsumer.Consume
	apiLegacy    = "legacy"    // subscribeLegacy, for its pending limits
	apiPull      = "pull"      // Consumer.Consume, on a pull durable (see pinned.go)
)

// Subscribe implements message.Subscriber. topic is the durable's filter
// subject; the subscription is bound to the durable (in its deliver group,
// if it has one). It may be called once.
func (s *Subscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.subbed {
		return nil, errors.New("router: subscriber already subscribed")
	}
	select {
	case <-s.closing:
		return nil, errors.New("router: subscriber closed")
	default:
	}
	// The durable's MaxAckPending bounds what the broker pushes; the
	// client must not drop any of it as a slow consumer. Where its default
	// pending limits might, only the legacy API can lift them.
	api, why := apiJetStream, broker.PendingLimitsNeeded(s.binding.Limits)
	var cc jetstream.ConsumeContext
	var err error
	switch {
	case s.binding.Pull:
		api = apiPull
		cc, err = s.consumePull(ctx, topic)
	case why != "":
		api = apiLegacy
		cc, err = subscribeLegacy(s.nc, s.binding, topic, s.receive, broker.ClientPendingBytes(s.binding.Limits, s.budget.limit))
	default:
		cc, err = s.consumeDurable(ctx, topic)
	}
	if err != nil {
		return nil, fmt.Errorf("subscribe to durable %s of stream %s: %w", s.binding.Durable, s.binding.Stream, err)
	}
	s.consume, s.api, s.subbed = cc, api, true
	switch {
	case api == apiPull:
		s.logger.Info("consuming the pull durable through nats.go's jetstream package",
			"durable", s.binding.Durable, "kind", s.binding.Kind(), "pinned_ttl", s.binding.PinnedTTL)
	case why != "":
		s.logger.Info("consuming the durable through nats.go's legacy JetStream API, which alone lifts the client's pending limits",
			"durable", s.binding.Durable, "deliver_group", s.binding.Queue, "reason", why)
	default:
		s.logger.Info("consuming the durable through nats.go's jetstream package",
			"durable", s.binding.Durable, "deliver_group", s.binding.Queue)
	}
	return s.out, nil
}

// consumeDurable consumes the push durable with PushConsumer.Consume,
// after the checks the legacy API's bind makes: topic is the durable's
// filter subject, and a durable without a deliver group has no other
// subscriber (which would get every message too). Consume subscribes in
// the durable's deliver group, if it has one.
func (s *Subscriber) consumeDurable(ctx context.Context, topic string) (jetstream.ConsumeContext, error) {
	c, err := s.js.PushConsumer(ctx, s.binding.Stream, s.binding.Durable)
	if err != nil {
		return nil, err
	}
	info := c.CachedInfo()
	switch cc := info.Config; {
	case cc.FilterSubject != "" && cc.FilterSubject != topic:
		return nil, fmt.Errorf("the durable filters %q, not %q", cc.FilterSubject, topic)
	case cc.DeliverGroup != s.binding.Queue:
		return nil, fmt.Errorf("the durable's deliver group is now %q, not %q", cc.DeliverGroup, s.binding.Queue)
	case cc.DeliverGroup == "" && info.PushBound:
		return nil, errors.New("the durable has no deliver group, and another subscriber already")
	}
	return c.Consume(s.receive, jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		// Missed heartbeats, a leadership change: the durable keeps its
		// state, and what is not acked comes back. (Called with the
		// consume context locked: it must not be stopped from here.)
		s.logger.Warn("jetstream consumer error", "durable", s.binding.Durable, "error", err)
	}))
}

// receive is the NATS callback: it runs for one message at a time.
func (s *Subscriber) receive(jm jetstream.Msg) {
	select {
	case s.slots <- struct{}{}:
	case <-s.closing:
		s.handBack(jm, 0, "shutting down")
		return
	}
	msg, _ := Unmarshaler{}.Unmarshal(jm) // never fails
	f := &flight{received: time.Now(), jm: jm, msg: msg, key: orderKey(jm.Data()), size: msgSize(jm)}
	msg.SetContext(context.WithValue(context.Background(), flightKey{}, f))
	if meta, err := jm.Metadata(); err == nil {
		f.seq, f.delivered = meta.Sequence.Stream, meta.NumDelivered
		f.last = s.binding.MaxDeliver > 0 && meta.NumDelivered >= uint64(s.binding.MaxDeliver)
	}
	if s.newlyPinned(jm) && f.seq > 0 {
		s.takeOver(f.seq)
	}

	s.mu.Lock()
	for {
		select {
		case <-s.closing:
			s.mu.Unlock()
			<-s.slots
			s.handBack(jm, 0, "shutting down")
			return
		default:
		}
		if s.budget.parked == nil && s.budget.fits(f.size) {
			break
		}
		if s.binding.Pull && !f.last && s.budget.parked == nil {
			// Kept, with its slot, until there is room (see settle); the
			// next one that does not fit waits here for room, and the
			// client pulls no more meanwhile.
			s.budget.parked = f
			s.inflight++
			s.mu.Unlock()
			return
		}
		if s.handBackForRoom && !f.last {
			if s.budget.parked == nil {
				// Kept, with its slot, until the messages held make
				// room for it (see settle).
				s.budget.parked = f
				s.inflight++
				s.mu.Unlock()
				return
			}
			now := time.Now()
			delay := s.seq.away(f, s.budget.handBack(f.size, now), now)
			s.mu.Unlock()
			<-s.slots
			s.handBack(jm, delay, "over MAX_IN_FLIGHT_BYTES: no room for it yet")
			return
		}
		// Wait for room (or, for a last delivery, which must not be
		// handed back, for the parked message to go first); settle
		// signals room as it releases bytes.
		s.mu.Unlock()
		select {
		case <-s.room:
		case <-s.closing:
		}
		s.mu.Lock()
	}
	s.arrive(f) // unlocks s.mu
}

// arrive passes f, received and with room in the budget, to the sequencer:
// it is handed out, waits behind its user's message in flight, or is held
// back. s.mu is held, and arrive unlocks it; f holds a slot.
func (s *Subscriber) arrive(f *flight) {
	v, delay := s.seq.arrive(f, time.Now())
	switch v {
	case holdBack:
		s.mu.Unlock()
		<-s.slots
		s.handBack(f.jm, delay, "an earlier event of the same user is being redelivered")
		return
	case wait:
		s.budget.admit(f)
		s.inflight++
		s.mu.Unlock()
		return
	}
	s.budget.admit(f)
	s.inflight++
	s.senders.Add(1)
	s.mu.Unlock()
	s.handOut(f)
}

// handOut gives f to the Watermill router, whose goroutine for the message
// runs the handler chain on one of a fixed set of workers (see Middleware
// and workers). The caller has added to s.senders, which counts hand-outs
// not yet sent: Close may close the output channel only once there are
// none.
func (s *Subscriber) handOut(f *flight) {
	select {
	case s.out <- f.msg:
		s.senders.Done()
	case <-s.closing:
		s.senders.Done()
		// The router stopped reading: hand it back at once.
		s.settle(f, false, 0)
	}
}

// flightKey is the context key under which a message carries its flight.
type flightKey struct{}

// Middleware settles each message as its handler returns: ack when it
// returned no error (the command is committed), NAK with the backoff delay
// otherwise, or when it panicked. It must be the outermost middleware —
// router.New adds it first — so that what it sees is what Watermill's own
// ack or nack will be. The handler runs on a worker (see workers), and the
// settling right after it, on the same worker: cheaper than one more
// goroutine per message waiting for Watermill's ack, and it lets the
// user's next message go without a hop.
func (s *Subscriber) Middleware(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) (out []*message.Message, err error) {
		f, ok := msg.Context().Value(flightKey{}).(*flight)
		if !ok {
			return h(msg) // not ours
		}
		settled := false
		defer func() {
			if r := recover(); r != nil {
				if !settled {
					s.settle(f, false, s.backoff.WaitTime(f.delivered))
				}
				panic(r)
			}
		}()
		// The settling runs on the worker too: its stack is grown already.
		s.workers.run(func() {
			out, err = h(msg)
			settled = true
			if err != nil {
				delay := s.backoff.WaitTime(f.delivered)
				if d := handlers.HoldDelay(err); d > 0 {
					delay = d
				}
				s.settle(f, false, delay)
				return
			}
			s.settle(f, true, 0)
		})
		return out, err
	}
}

// settle acks f (ok) or hands it back with delay, then lets the user's
// next message go.
func (s *Subscriber) settle(f *flight, ok bool, delay time.Duration) {
	if ok {
		// While running, the ack is sent without waiting for the broker's
		// confirmation: an ack lost on the way (the broker crashed) means
		// one redelivery, which the command id turns into a no-op, and
		// waiting would cost a round trip per message. When closing, it is
		// confirmed, so that the process exits only with its acks applied.
		var err error
		if s.isClosing() {
			ctx, cancel := context.WithTimeout(context.Background(), ackSyncTimeout)
			err = f.jm.DoubleAck(ctx)
			cancel()
		} else {
			err = f.jm.Ack()
		}
		if err != nil {
			// The broker redelivers after its ack wait; the command id
			// keeps the repeat from being stored twice.
			s.logger.Warn("ack failed; the message will be redelivered", "message_uuid", f.msg.UUID, "stream_seq", f.seq, "error", err)
		}
		if s.onAck != nil {
			s.onAck(time.Since(f.received))
		}
	} else {
		s.handBack(f.jm, delay, "handling failed")
	}
	now := time.Now()
	s.mu.Lock()
	next, holds := s.seq.finish(f, !ok, now.Add(delay), s.isClosing(), now)
	if next != nil {
		s.senders.Add(1)
	}
	s.mu.Unlock()
	// The messages held back are NAKed before they stop counting as in
	// flight, so that Close, which waits for none to be left, flushes
	// their NAKs too.
	for _, h := range holds {
		s.handBack(h.f.jm, h.delay, "an earlier event of the same user was handed back")
	}
	s.mu.Lock()
	s.inflight -= 1 + len(holds)
	s.budget.release(f)
	for _, h := range holds {
		s.budget.release(h.f)
	}
	// The bytes released may make room for the parked message. It
	// arrives now, as if just received: it was counted in flight, with
	// its slot, while parked.
	var unparked *flight
	uv, udelay := handOut, time.Duration(0)
	if !s.isClosing() {
		if unparked = s.budget.unpark(); unparked != nil {
			uv, udelay = s.seq.arrive(unparked, time.Now())
			if uv != holdBack {
				s.budget.admit(unparked)
			}
			if uv == handOut {
				s.senders.Add(1)
			}
		}
	}
	if s.inflight == 0 && s.isClosing() {
		s.closeIdle()
	}
	s.mu.Unlock()
	select {
	case s.room <- struct{}{}:
	default: // already signalled
	}
	for range 1 + len(holds) {
		<-s.slots
	}
	if next != nil {
		// Not in this goroutine: it may be a worker's, which the handler
		// call (and Watermill's goroutine for it) is waiting for, and
		// handOut waits until the router reads.
		go s.handOut(next)
	}
	switch {
	case unparked == nil:
	case uv == handOut:
		go s.handOut(unparked)
	case uv == holdBack:
		s.handBack(unparked.jm, udelay, "an earlier event of the same user is being redelivered")
		s.mu.Lock()
		s.inflight--
		if s.inflight == 0 && s.isClosing() {
			s.closeIdle()
		}
		s.mu.Unlock()
		<-s.slots
	}
}

func (s *Subscriber) isClosing() bool {
	select {
	case <-s.closing:
		return true
	default:
		return false
	}
}

// ackSyncTimeout bounds the wait for the broker to confirm an ack sent
// while closing (what the legacy API's AckSync waited by default).
const ackSyncTimeout = 5 * time.Second

// closingNakDelay is the least delay of a message handed back while the
// subscriber closes. At once is too soon on a push durable: the server
// learns that this subscription is gone asynchronously (its consumer loop
// reads the interest change from a channel, beside the redeliveries), and
// a redelivery it makes before then goes to nobody and comes back only
// after the ack wait. A standby, or the next start, gets it this much
// later instead.
const closingNakDelay = 500 * time.Millisecond

// handBack NAKs jm so the broker redelivers it after delay (at least
// closingNakDelay while closing).
func (s *Subscriber) handBack(jm jetstream.Msg, delay time.Duration, why string) {
	if s.isClosing() {
		delay = max(delay, closingNakDelay)
	}
	var err error
	if delay > 0 {
		err = jm.NakWithDelay(delay)
	} else {
		err = jm.Nak()
	}
	if err != nil {
		s.logger.Warn("nak not sent; the message will be redelivered after the ack wait", "subject", jm.Subject(), "reason", why, "error", err)
		return
	}
	s.logger.Debug("message handed back to the broker", "subject", jm.Subject(), "reason", why, "delay", delay)
}

// closeIdle closes idle once; s.mu must be held.
func (s *Subscriber) closeIdle() {
	select {
	case <-s.idle:
	default:
		close(s.idle)
	}
}

// Close implements message.Subscriber; see Subscriber for what it waits for.
func (s *Subscriber) Close() error {
	first := false
	s.once.Do(func() { first = true })
	if !first {
		<-s.closed
		return nil
	}
	defer close(s.closed)
	expired := time.NewTimer(s.timeout)
	defer expired.Stop()
	s.mu.Lock()
	close(s.closing)
	parked := s.budget.parked
	s.budget.parked = nil
	if s.inflight == 0 {
		s.closeIdle()
	}
	cc := s.consume
	s.mu.Unlock()
	if parked != nil {
		// Never handed out: straight back to the broker, before it stops
		// counting in flight (so the flush below sends its NAK too).
		s.handBack(parked.jm, 0, "shutting down")
		s.mu.Lock()
		s.inflight--
		if s.inflight == 0 {
			s.closeIdle()
		}
		s.mu.Unlock()
		<-s.slots
	}
	var errs []error
	timedOut := false
	if cc != nil {
		// Drain rather than stop: messages the client has buffered still
		// reach receive, which hands them straight back. Closed says when
		// receive has returned for the last of them, so that the flush
		// below sends their NAKs too. Not in a broker outage: the drain
		// would first wait for a round trip to the broker, and nothing
		// reaches it anyway.
		cc.Drain()
		if s.nc.IsConnected() {
			select {
			case <-cc.Closed():
			case <-expired.C:
				timedOut = true
				errs = append(errs, fmt.Errorf("router: subscription not drained after %s; what the client still holds comes back after the ack wait", s.timeout))
			}
		}
	}
	if !timedOut {
		select {
		case <-s.idle:
		case <-expired.C:
			timedOut = true
		}
	}
	if timedOut {
		select {
		case <-s.idle:
		default:
			errs = append(errs, fmt.Errorf("router: %d messages still in flight after %s; the broker will redeliver them", s.InFlight(), s.timeout))
		}
	}
	s.senders.Wait()
	close(s.out)
	s.workers.stop()
	// NAKs are not confirmed; make sure they have left before the caller
	// closes the connection.
	if err := s.nc.FlushTimeout(5 * time.Second); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
		errs = append(errs, fmt.Errorf("flush: %w", err))
	}
	if !timedOut {
		s.unpin() // everything is settled: a standby may take over now
	}
	return errors.Join(errs...)
}

// WaitClosed blocks until Close has finished, or timeout passes.
func (s *Subscriber) WaitClosed(timeout time.Duration) bool {
	select {
	case <-s.closed:
		return true
	case <-time.After(timeout):
		return false
	}
}
