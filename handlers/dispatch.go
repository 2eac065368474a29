package handlers

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/social/user-events-router/schema"
)

// Committer commits the command an event yields together with the user's
// ledger, in one transaction that holds the user's ledger locked
// (store.GroupCommitter is the one the router uses).
type Committer interface {
	// CommitState commits to topic the messages fn decides from key's
	// stored state (nil when none), with the state fn returns.
	CommitState(ctx context.Context, topic, key string, fn func(state []byte) (next []byte, msgs []*message.Message, err error)) error
	// LoadState reads key's stored state without locking or writing it.
	LoadState(ctx context.Context, key string) ([]byte, error)
}

// Dispatcher decodes an incoming event, picks the handler of its action,
// asks the user's ledger whether the event is new, and commits the command
// it builds together with the ledger. It returns only after both are
// durably written (or the event is found already carried), so the caller
// may ack (NATS) or answer 200 (HTTP).
type Dispatcher struct {
	registry  Registry
	committer Committer
	topic     string
	hold      HoldOptions
}

// HoldOptions say when the dispatcher may hold a JetStream message back
// (VerdictHold): it is handed back with the transport's usual redelivery
// delay and decided again later.
type HoldOptions struct {
	// EarlierUnacked reports whether a message the stream holds before seq
	// may still be unacked — in flight elsewhere, or held by a process that
	// crashed, to be delivered again after the ack wait. Only then is there
	// anything to wait for. nil never holds.
	EarlierUnacked func(ctx context.Context, seq uint64) bool
	// MaxHolds bounds the deliveries a message may be held on (enough for
	// the redelivery delays to add up to the durable's ack wait).
	MaxHolds uint64
	// Delay, when set, is the one hold's delay instead of the usual
	// redelivery delay: for a durable with few deliveries (the monolith's
	// has 3), where the usual delays would use them up before the ack wait.
	Delay time.Duration
	// MaxDeliver is the durable's (-1 unlimited): a message is never held
	// on its last delivery.
	MaxDeliver int
}

// WithHold returns d holding messages as o says.
func (d *Dispatcher) WithHold(o HoldOptions) *Dispatcher {
	c := *d
	c.hold = o
	return &c
}

// NewDispatcher validates its dependencies; committer writes commands to
// topic.
func NewDispatcher(registry Registry, committer Committer, topic string) (*Dispatcher, error) {
	if len(registry) == 0 {
		return nil, errors.New("handlers: empty registry")
	}
	for action, h := range registry {
		if h.Name == "" || h.Build == nil || h.Action != action {
			return nil, fmt.Errorf("handlers: registration for action %q is incomplete or mismatched", action)
		}
		if _, ok := schema.LookupAction(action); !ok {
			return nil, fmt.Errorf("handlers: a handler for action %q, which schema.Actions does not list: add it there (the decoder would refuse every such event)", action)
		}
	}
	if committer == nil {
		return nil, errors.New("handlers: nil committer")
	}
	if topic == "" {
		return nil, errors.New("handlers: empty command topic")
	}
	return &Dispatcher{registry: registry, committer: committer, topic: topic}, nil
}

// Handle is a message.NoPublishHandlerFunc: it commits the command for msg
// (or finds the event already carried), or returns why it could not.
// Decoding failures are permanent (errors.Is schema.ErrInvalidEvent);
// commit failures are not. On success msg's metadata says what was decided
// (MetaVerdict, and MetaCommandID / MetaCommandType when a command was
// written).
func (d *Dispatcher) Handle(msg *message.Message) error {
	e, err := d.prepare(msg)
	if err != nil {
		return err
	}
	return d.commit(msg, e)
}

// commit decides e against its user's ledger and commits what it yields.
func (d *Dispatcher) commit(msg *message.Message, e prepared) error {
	// The state function may run on the committer's worker after this
	// attempt gave up (and the next one reset msg's context): it reads
	// nothing of msg. What it reads and decides is one allocation (with
	// the method value that refers to it).
	c := &commitCall{e: e, ctx: msg.Context()}
	if err := d.committer.CommitState(c.ctx, d.topic, e.ev.ID, c.decide); err != nil {
		return fmt.Errorf("commit command: %w", err)
	}
	if c.verdict.Why == VerdictHold {
		// Nothing was written. Hold only if an earlier message may really
		// still come; otherwise decide now, as if it could not be held.
		if d.hold.EarlierUnacked(msg.Context(), e.arrival.StreamSeq) {
			record(msg, c.verdict, c.cmd)
			return &HoldError{Delay: d.hold.Delay, Why: "a registration newer than the user's newest event, while an earlier message is unacked: a deletion may be on its way back"}
		}
		e.arrival.MayHold = false
		return d.commit(msg, e)
	}
	record(msg, c.verdict, c.cmd)
	return nil
}

// commitCall is one CommitState call of commit: the event, and what its
// state function decided.
type commitCall struct {
	e       prepared
	ctx     context.Context
	verdict Verdict
	cmd     schema.Command
}

// decide is the call's state function.
func (c *commitCall) decide(state []byte) ([]byte, []*message.Message, error) {
	l, err := ParseLedger(state)
	if err != nil {
		return nil, nil, err
	}
	c.verdict = l.Decide(c.e.arrival)
	if !c.verdict.Write {
		return l.Bytes(), nil, nil
	}
	c.cmd = c.e.command(c.verdict)
	out, err := commandMessage(c.cmd)
	if err != nil {
		return nil, nil, err
	}
	out.SetContext(c.ctx)
	return l.Bytes(), []*message.Message{out}, nil
}

// Preview decodes msg and says what Handle would do with it now, writing
// nothing: the command it would commit (zero when the ledger finds the
// event already carried) and the verdict. For dry runs.
func (d *Dispatcher) Preview(msg *message.Message) (schema.Command, Verdict, error) {
	e, err := d.prepare(msg)
	if err != nil {
		return schema.Command{}, Verdict{}, err
	}
	state, err := d.committer.LoadState(msg.Context(), e.ev.ID)
	if err != nil {
		return schema.Command{}, Verdict{}, err
	}
	l, err := ParseLedger(state)
	if err != nil {
		return schema.Command{}, Verdict{}, err
	}
	v := l.Decide(e.arrival)
	if !v.Write {
		return schema.Command{}, v, nil
	}
	return e.command(v), v, nil
}

// prepared is one decoded event with the command it yields if the ledger
// finds it new. The handler builds it here, on the caller's goroutine, so
// that a panicking handler is recovered by the middleware like any other.
type prepared struct {
	ev      schema.UserEvent
	cmd     schema.Command
	arrival Arrival
}

// command is the event's command with the ledger's order.
func (p prepared) command(v Verdict) schema.Command {
	cmd := p.cmd
	cmd.CommandID = CommandID(p.ev.ID, v.Sequence)
	cmd.Generation = v.Generation
	cmd.UserSequence = v.Sequence
	return cmd
}

// prepare takes msg's decoded event (Admit decoded it, once for all
// attempts) and picks its handler. It also records what was decoded and
// the handler name in msg's metadata for logs; the correlation id is
// Admit's, and only read here.
func (d *Dispatcher) prepare(msg *message.Message) (prepared, error) {
	subject := Subject(msg.Metadata)
	a := admit(msg)
	if a.err != nil {
		return prepared{}, fmt.Errorf("decode %s: %w", orHTTP(subject), a.err)
	}
	ev := a.ev
	SetAction(msg.Metadata, ev.Action)
	SetUserID(msg.Metadata, ev.ID)
	if len(ev.Dropped) > 0 {
		dropped := make([]string, len(ev.Dropped))
		for i, p := range ev.Dropped {
			dropped[i] = p.String()
		}
		SetDropped(msg.Metadata, dropped)
	}
	SetOccurredAt(msg.Metadata, ev.Timestamp)
	h, ok := d.registry[ev.Action]
	action, listed := schema.LookupAction(ev.Action)
	if !ok || !listed {
		return prepared{}, Permanent(fmt.Errorf("no handler for action %q", ev.Action))
	}
	SetHandler(msg.Metadata, h.Name)
	corr := CorrelationID(msg.Metadata)
	ingress := Ingress(msg.Metadata)
	if ingress == "" {
		ingress = schema.IngressNATS
	}
	seq, _ := StreamSeq(msg.Metadata)
	attempt, _ := DeliveryAttempt(msg.Metadata)
	return prepared{
		ev: ev,
		cmd: h.Build(ev, Delivery{
			Subject:         subjectOf(subject, ev.Action),
			Ingress:         ingress,
			StreamSequence:  seq,
			DeliveryAttempt: attempt,
			CorrelationID:   corr,
		}),
		arrival: Arrival{Kind: action.Kind, At: ev.Timestamp, Hash: ContentHash(ev), Ident: IdentityHash(ev), Path: pathOf(ingress, seq), StreamSeq: seq,
			MayHold: d.mayHold(ingress, attempt, seq)},
	}, nil
}

// mayHold: only a JetStream delivery can be held (HTTP must answer now),
// not on its last delivery, and on at most MaxHolds deliveries.
func (d *Dispatcher) mayHold(ingress string, attempt, seq uint64) bool {
	return d.hold.EarlierUnacked != nil && ingress == schema.IngressNATS && seq > 0 &&
		attempt >= 1 && attempt <= d.hold.MaxHolds &&
		(d.hold.MaxDeliver < 0 || attempt < uint64(d.hold.MaxDeliver))
}

// pathOf names the path an arrival took for the ledger: a replayed entry
// counts as the path it first came by (JetStream when it has a stream
// sequence).
func pathOf(ingress string, streamSeq uint64) string {
	switch {
	case ingress == schema.IngressHTTP:
		return PathHTTP
	case ingress == schema.IngressReplay && streamSeq == 0:
		return PathHTTP
	}
	return PathNATS
}

// commandMessage is the commands-table row of cmd.
func commandMessage(cmd schema.Command) (*message.Message, error) {
	payload, err := schema.MarshalCommand(cmd)
	if err != nil {
		return nil, Permanent(fmt.Errorf("encode command: %w", err))
	}
	out := message.NewMessage(cmd.CommandID, payload)
	SetCorrelationID(out.Metadata, cmd.CorrelationID)
	SetCommandType(out.Metadata, string(cmd.Type))
	return out, nil
}

// record notes on msg what became of it.
func record(msg *message.Message, v Verdict, cmd schema.Command) {
	SetVerdict(msg.Metadata, v.Why)
	if v.Write {
		SetCommandID(msg.Metadata, cmd.CommandID)
		SetCommandType(msg.Metadata, string(cmd.Type))
	}
}

// subjectOf names the subject an event belongs on; HTTP arrivals have none,
// so the command records the subject the Auth Service would have used.
func subjectOf(subject, action string) string {
	if subject != "" {
		// What the broker gave, as printable text: a subject may hold
		// control characters (NUL would break PostgreSQL's jsonb).
		return schema.PrintableText(subject, 256)
	}
	return "user.events." + action
}

// orHTTP names what is decoded in an error: the subject (outside input,
// escaped as printable text), or "event" for an HTTP arrival.
func orHTTP(subject string) string {
	if subject == "" {
		return "event"
	}
	return schema.PrintableText(subject, 256)
}
