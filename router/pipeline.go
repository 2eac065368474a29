package router

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/social/user-events-router/handlers"
	"github.com/social/user-events-router/middleware"
	"github.com/social/user-events-router/schema"
	"github.com/social/user-events-router/store"
)

// Pipeline runs one message through exactly the middleware and handler the
// Watermill router uses, for the paths that do not come from NATS: the HTTP
// fallback and poison replay.
type Pipeline struct {
	handle  message.HandlerFunc
	preview func(*message.Message) (schema.Command, handlers.Verdict, error)
}

// NewPipeline wraps the dispatcher in chain (outermost first).
func NewPipeline(d *handlers.Dispatcher, chain []message.HandlerMiddleware) (*Pipeline, error) {
	if d == nil {
		return nil, errors.New("router: nil dispatcher")
	}
	return &Pipeline{
		handle:  middleware.Wrap(func(m *message.Message) ([]*message.Message, error) { return nil, d.Handle(m) }, chain),
		preview: d.Preview,
	}, nil
}

// Outcome is what became of one message.
type Outcome struct {
	// Err is set when the message was neither committed nor poisoned (a
	// transient failure): the caller must not report success.
	Err error
	// Poisoned is set when the message went to the poison queue.
	Poisoned      bool
	Class         string
	Reason        string
	PoisonID      string
	CorrelationID string
}

// Run handles msg and reports the outcome. It returns only after the command
// or the poison entry is committed (or neither, with Err set).
func (p *Pipeline) Run(ctx context.Context, msg *message.Message) Outcome {
	msg.SetContext(ctx)
	_, err := p.handle(msg)
	o := Outcome{Err: err, CorrelationID: handlers.CorrelationID(msg.Metadata)}
	if err == nil && handlers.PoisonClass(msg.Metadata) != "" {
		o.Poisoned = true
		o.Class = handlers.PoisonClass(msg.Metadata)
		o.Reason = handlers.PoisonReason(msg.Metadata)
		o.PoisonID = handlers.PoisonID(msg.Metadata)
	}
	return o
}

// Replayer runs poison entries through the pipeline again.
type Replayer struct {
	db       *store.DB
	pipeline *Pipeline
}

// NewReplayer validates its dependencies.
func NewReplayer(db *store.DB, p *Pipeline) (*Replayer, error) {
	if db == nil || p == nil {
		return nil, errors.New("router: replayer needs a database and a pipeline")
	}
	return &Replayer{db: db, pipeline: p}, nil
}

// Replay outcomes.
const (
	ReplayCommitted    = "committed"     // the command is committed; the entry is deleted
	ReplayStillFailing = "still_failing" // the entry stays, with the new reason
	ReplayRetryLater   = "retry_later"   // a transient failure; the entry stays unchanged
	ReplayWouldCommit  = "would_commit"  // dry run: the entry would yield a command
	ReplayWouldFail    = "would_fail"    // dry run: the entry would fail again
)

// ReplayResult reports one replayed entry.
type ReplayResult struct {
	ID          string `json:"id"`
	Result      string `json:"result"`
	Reason      string `json:"reason,omitempty"`
	CommandID   string `json:"command_id,omitempty"`
	CommandType string `json:"command_type,omitempty"`
}

// Replay runs the entry id (or unique id prefix) through the same handlers.
// Success deletes the entry; a command that already exists is not written
// twice (its id is deterministic), so replaying twice is harmless. With
// dryRun nothing is written.
func (r *Replayer) Replay(ctx context.Context, id string, dryRun bool) (ReplayResult, error) {
	e, err := r.db.GetPoison(ctx, id)
	if err != nil {
		return ReplayResult{}, err
	}
	res := ReplayResult{ID: e.ID}
	msg := replayMessage(e)
	if dryRun {
		msg.SetContext(ctx)
		cmd, v, err := r.pipeline.preview(msg)
		switch {
		case err != nil && !handlers.IsPermanent(err):
			res.Result, res.Reason = ReplayRetryLater, err.Error()
		case err != nil:
			res.Result, res.Reason = ReplayWouldFail, err.Error()
		case !v.Write:
			res.Result, res.Reason = ReplayWouldCommit, alreadyCarried(v.Why)
		default:
			res.Result, res.CommandID, res.CommandType = ReplayWouldCommit, cmd.CommandID, string(cmd.Type)
		}
		return res, nil
	}
	o := r.pipeline.Run(ctx, msg)
	switch {
	case o.Err != nil:
		res.Result, res.Reason = ReplayRetryLater, o.Err.Error()
	case o.Poisoned:
		res.Result, res.Reason = ReplayStillFailing, o.Reason
	default:
		if err := r.db.DeletePoison(ctx, e.ID); err != nil && !errors.Is(err, store.ErrPoisonNotFound) {
			return res, fmt.Errorf("replayed %s but could not delete the entry: %w", e.ID, err)
		}
		res.Result = ReplayCommitted
		res.CommandID = handlers.CommandIDOf(msg.Metadata)
		res.CommandType = handlers.CommandType(msg.Metadata)
		if why := handlers.VerdictOf(msg.Metadata); why != handlers.VerdictNew {
			res.Reason = alreadyCarried(why)
		}
	}
	return res, nil
}

// alreadyCarried explains a replay that writes no command because the
// ledger finds the event carried (or superseded) already.
func alreadyCarried(why string) string {
	return "no new command: the event is already carried (" + why + ")"
}

// ReplayMatching replays every entry that matches f, in the order they
// were stored, a batch of ids at a time (the queue is never read whole),
// and calls each with each result; an error from each stops it. Entries
// that arrive meanwhile are left for later; one that fails again is not
// tried twice. An entry that cannot be read is reported as a result with
// the error, not returned.
func (r *Replayer) ReplayMatching(ctx context.Context, f store.PoisonFilter, dryRun bool, each func(ReplayResult, error) error) error {
	return r.db.EachPoison(ctx, f, func(batch []store.PoisonEntry) error {
		for _, e := range batch {
			if err := ctx.Err(); err != nil {
				return err
			}
			res, err := r.Replay(ctx, e.ID, dryRun)
			if err != nil {
				res.ID = e.ID
			}
			if err := each(res, err); err != nil {
				return err
			}
		}
		return nil
	})
}

// replayMessage rebuilds the message of a poison entry: original bytes,
// subject and correlation id, with ingress "replay" (the command records
// it; the entry keeps its own), and the entry's id, so that every log line
// about the replay names it.
func replayMessage(e store.PoisonEntry) *message.Message {
	msg := message.NewMessage(e.ID, e.Payload)
	handlers.SetSubject(msg.Metadata, e.Subject)
	handlers.SetIngress(msg.Metadata, schema.IngressReplay)
	handlers.SetPoisonID(msg.Metadata, e.ID)
	if e.CorrelationID != "" {
		handlers.SetCorrelationID(msg.Metadata, e.CorrelationID)
	}
	if e.StreamSeq > 0 {
		// The ledger tells a replay of a JetStream message from a new event
		// by its stream sequence.
		handlers.SetStreamSeq(msg.Metadata, e.StreamSeq)
	}
	handlers.SetReplayedAt(msg.Metadata, time.Now())
	return msg
}
