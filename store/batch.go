package store

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	wmsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
)

// ErrCommitterClosed is returned by GroupCommitter.Publish after Close.
var ErrCommitterClosed = errors.New("store: group committer is closed")

// GroupOptions tunes a GroupCommitter. Store has no defaults for the
// batch, the wait or the workers: the router's are configs.Defaults'
// COMMIT_BATCH_MAX, COMMIT_BATCH_WAIT and COMMIT_WORKERS.
type GroupOptions struct {
	// MaxBatch is the most messages one transaction commits.
	MaxBatch int
	// MaxWait is how long a worker holding fewer than MaxBatch messages
	// waits for more before committing. Zero commits at once whatever has
	// queued up (batches still form while a commit is running).
	MaxWait time.Duration
	// Workers is how many transactions may be open at once.
	Workers int
	// Timeout bounds one transaction; 0 means 10s.
	Timeout time.Duration
	// Committed, if set, is called after each successful transaction with
	// the number of messages it held.
	Committed func(messages int)
	// Logger, if set, is told of each batch that failed and is committed
	// again a call at a time: one bad call does that now and then; a batch
	// after batch says the batched write itself fails (a COPY the table
	// refuses, say), and the router drains a call at a time.
	Logger *slog.Logger
}

// defaultGroupTimeout bounds a transaction when GroupOptions.Timeout is 0.
const defaultGroupTimeout = 10 * time.Second

// GroupCommitter is a message.Publisher that commits the messages of
// concurrent Publish calls together: one transaction, one multi-row
// insert-if-absent per topic (the schema adapter's watermill-sql insert;
// on PostgreSQL, COPY for 16 rows or more, and the transaction sent as two
// pipelines: commitpg.go).
// Each Publish returns only after the transaction holding its messages has
// committed, so a caller that acks after Publish still acks after the
// commit. One transaction per message is what limits a router to about a
// thousand events a second; a transaction of hundreds costs about the same.
//
// Within one call the messages are inserted in the order given; calls are
// inserted in the order they reached the queue. When a batch fails, each
// call in it is retried on its own, so one bad message fails only its own
// call. Publish is safe for concurrent use.
type GroupCommitter struct {
	db      *DB
	adapter wmsql.SchemaAdapter
	opts    GroupOptions

	queue   chan *commitRequest
	closing chan struct{}
	once    sync.Once
	mu      sync.RWMutex // held for reading while a Publish enqueues
	workers sync.WaitGroup
	// copyFallbacks counts the transactions whose COPY met a stored
	// message and that were committed again with the insert.
	copyFallbacks atomic.Int64
	// copyTypes are the column types COPY encodes for (PostgreSQL).
	copyTypes copyColumnTypes
}

type commitRequest struct {
	ctx   context.Context // the caller's: when it ends, the caller has gone
	topic string
	msgs  []*message.Message
	// key and state, when state is set, make the messages depend on the
	// key's stored state (CommitState); msgs is then empty.
	key   string
	state StateFunc
	done  chan error
}

// GroupCommitter starts a GroupCommitter on db. Close stops it.
func (db *DB) GroupCommitter(opts GroupOptions) (*GroupCommitter, error) {
	if opts.MaxBatch < 1 {
		return nil, fmt.Errorf("store: group commit batch must hold at least one message, got %d", opts.MaxBatch)
	}
	if opts.Workers < 1 {
		return nil, fmt.Errorf("store: group commit needs at least one worker, got %d", opts.Workers)
	}
	if opts.MaxWait < 0 {
		return nil, fmt.Errorf("store: negative group commit wait %s", opts.MaxWait)
	}
	if opts.Timeout <= 0 {
		opts.Timeout = defaultGroupTimeout
	}
	g := &GroupCommitter{
		db: db, adapter: db.SchemaAdapter(), opts: opts,
		queue:   make(chan *commitRequest, opts.MaxBatch*opts.Workers),
		closing: make(chan struct{}),
	}
	for range opts.Workers {
		g.workers.Add(1)
		go g.work()
	}
	return g, nil
}

// Publish implements message.Publisher: it returns once msgs are committed
// to topic's table (or are already there), or with the error that kept
// them out. If the first message's context ends first, Publish returns its
// error; the messages may still be committed later, which is harmless
// because inserts of a stored uuid are no-ops.
func (g *GroupCommitter) Publish(topic string, msgs ...*message.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	return g.submit(&commitRequest{ctx: msgs[0].Context(), topic: topic, msgs: msgs})
}

// CommitState commits to topic the messages fn decides from key's state in
// the ledger, together with key's next state, in one transaction that holds
// key's row locked: concurrent calls for one key, from this process or
// another, see each other's states in commit order. It returns once both
// are committed, or with the error that kept them out; when ctx ends first
// they may still be committed later (fn then decides again from the state it
// finds, so nothing is written twice).
func (g *GroupCommitter) CommitState(ctx context.Context, topic, key string, fn StateFunc) error {
	if key == "" || fn == nil {
		return errors.New("store: CommitState needs a key and a state function")
	}
	return g.submit(&commitRequest{ctx: ctx, topic: topic, key: key, state: fn})
}

// size is what a request counts against MaxBatch: its messages, or one for
// a CommitState call (which decides at most a few).
func (r *commitRequest) size() int {
	if r.state != nil {
		return 1
	}
	return len(r.msgs)
}

func (g *GroupCommitter) submit(req *commitRequest) error {
	ctx := req.ctx
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("waiting to commit: %w", err)
	}
	req.done = make(chan error, 1)
	g.mu.RLock()
	select {
	case <-g.closing:
		g.mu.RUnlock()
		return ErrCommitterClosed
	default:
	}
	select {
	case g.queue <- req:
		g.mu.RUnlock()
	case <-ctx.Done():
		g.mu.RUnlock()
		return fmt.Errorf("waiting to commit: %w", ctx.Err())
	}
	select {
	case err := <-req.done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("waiting for commit: %w", ctx.Err())
	}
}

// Close stops accepting messages, commits those already queued and returns
// when the workers are done.
func (g *GroupCommitter) Close() error {
	g.once.Do(func() {
		close(g.closing)
		// No Publish is between its closing check and its enqueue once
		// the write lock is held, so closing the queue is safe.
		g.mu.Lock()
		close(g.queue)
		g.mu.Unlock()
	})
	g.workers.Wait()
	return nil
}

func (g *GroupCommitter) work() {
	defer g.workers.Done()
	for first := range g.queue {
		batch := []*commitRequest{first}
		rows := first.size()
		// Take what is queued already; then, if the batch is not full,
		// wait up to MaxWait (counted from now, not per arrival) for more.
		var deadline <-chan time.Time
		var timer *time.Timer
	gather:
		for rows < g.opts.MaxBatch {
			select {
			case req, ok := <-g.queue:
				if !ok {
					break gather
				}
				batch = append(batch, req)
				rows += req.size()
				continue
			default:
			}
			if g.opts.MaxWait == 0 {
				break
			}
			if timer == nil {
				timer = time.NewTimer(g.opts.MaxWait)
				deadline = timer.C
			}
			select {
			case req, ok := <-g.queue:
				if !ok {
					break gather
				}
				batch = append(batch, req)
				rows += req.size()
			case <-deadline:
				break gather
			}
		}
		if timer != nil {
			timer.Stop()
		}
		g.commitBatch(batch, rows)
	}
}

// commitBatch commits batch in one transaction; if that fails and the batch
// holds more than one call, each call is committed on its own so that one
// call's bad message does not fail the others.
func (g *GroupCommitter) commitBatch(batch []*commitRequest, rows int) {
	err := g.commitRaced(batch)
	if err == nil {
		if g.opts.Committed != nil {
			g.opts.Committed(rows)
		}
		for _, req := range batch {
			req.done <- nil
		}
		return
	}
	var begin *beginError
	if len(batch) == 1 || errors.As(err, &begin) {
		// Nothing to isolate: one call, or no transaction to be had.
		for _, req := range batch {
			req.done <- err
		}
		return
	}
	if g.opts.Logger != nil {
		g.opts.Logger.Warn("a batch commit failed; committing each call on its own",
			"calls", len(batch), "messages", rows, "error", err)
	}
	for _, req := range batch {
		if cerr := req.ctx.Err(); cerr != nil {
			// Its caller has given up (and will retry): don't hold the
			// others up with it.
			req.done <- fmt.Errorf("%w (and the caller stopped waiting: %w)", err, cerr)
			continue
		}
		err := g.commitRaced([]*commitRequest{req})
		if err == nil && g.opts.Committed != nil {
			g.opts.Committed(req.size())
		}
		req.done <- err
	}
}

// maxLedgerRaces is how often a transaction is tried again after losing
// the race to insert a new user's ledger row; each try finds more rows
// stored, and locks them.
const maxLedgerRaces = 3

// commitRaced commits batch, trying again when another transaction inserted
// one of its new ledger rows first, and (PostgreSQL) with the
// insert-if-absent when a COPY met a message already stored.
func (g *GroupCommitter) commitRaced(batch []*commitRequest) error {
	allowCopy := true
	for try := 1; ; try++ {
		var err error
		if g.db.Dialect == Postgres {
			err = g.commitPostgres(batch, allowCopy)
			var dup *copyDuplicateError
			if errors.As(err, &dup) {
				g.copyFallbacks.Add(1)
				allowCopy = false
				err = g.commitPostgres(batch, false)
			}
		} else {
			err = g.commit(batch)
		}
		var race *ledgerRaceError
		if !errors.As(err, &race) || try == maxLedgerRaces {
			return err
		}
	}
}

// commit commits batch in one transaction through database/sql (MySQL,
// SQLite; PostgreSQL's is commitPostgres).
func (g *GroupCommitter) commit(batch []*commitRequest) (err error) {
	ctx, cancel := context.WithTimeout(context.Background(), g.opts.Timeout)
	defer cancel()
	tx, err := g.db.SQL.BeginTx(ctx, g.db.beginOptions())
	if err != nil {
		return &beginError{err}
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	msgsOf, err := g.decide(ctx, tx, batch)
	if err != nil {
		return err
	}
	topics, byTopic := byTopicOf(batch, msgsOf)
	for _, topic := range topics {
		// watermill-sql's Publisher would run this same insert, but under
		// the first message's context: one caller's timeout would fail
		// everyone's commit. The transaction's own context bounds it here.
		q, err := g.adapter.InsertQuery(wmsql.InsertQueryParams{Topic: topic, Msgs: byTopic[topic]})
		if err != nil {
			return fmt.Errorf("build insert into %s: %w", topic, err)
		}
		if _, err := tx.ExecContext(ctx, q.Query, q.Args...); err != nil {
			return fmt.Errorf("insert %d messages into %s: %w", len(byTopic[topic]), topic, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit %d messages: %w", len(batch), err)
	}
	return nil
}

// byTopicOf groups the messages decided for batch by topic: rows go in
// queue order, one insert per topic (in practice there is one).
func byTopicOf(batch []*commitRequest, msgsOf [][]*message.Message) ([]string, map[string][]*message.Message) {
	var topics []string
	byTopic := map[string][]*message.Message{}
	for i, req := range batch {
		if len(msgsOf[i]) == 0 {
			continue
		}
		if _, ok := byTopic[req.topic]; !ok {
			topics = append(topics, req.topic)
		}
		byTopic[req.topic] = append(byTopic[req.topic], msgsOf[i]...)
	}
	return topics, byTopic
}

// keysOf are the keys batch's CommitState calls depend on, sorted: rows
// are locked in key order, so two transactions wanting some of the same
// keys cannot deadlock on them.
func keysOf(batch []*commitRequest) []string {
	var keys []string
	for _, req := range batch {
		if req.state != nil && !slices.Contains(keys, req.key) {
			keys = append(keys, req.key)
		}
	}
	slices.Sort(keys)
	return keys
}

// decide returns the messages of each request of batch: a Publish call's
// own, or those a CommitState call's function decides from its key's
// state. The keys' rows are locked for the rest of tx and their new states
// written in it. Requests for one key see each other's states in queue
// order.
func (g *GroupCommitter) decide(ctx context.Context, tx *sql.Tx, batch []*commitRequest) ([][]*message.Message, error) {
	keys := keysOf(batch)
	states := map[string][]byte{}
	if len(keys) > 0 {
		var err error
		if states, err = g.db.lockStates(ctx, tx, keys); err != nil {
			return nil, err
		}
	}
	msgsOf, inserted, updated, err := runStates(batch, states)
	if err != nil {
		return nil, err
	}
	if err := g.db.writeStates(ctx, tx, states, inserted, updated); err != nil {
		return nil, err
	}
	return msgsOf, nil
}

// runStates runs batch's state functions on the stored states (changed in
// place to the next ones) and returns the messages of each request, and
// the keys whose state is new (inserted) or changed (updated), each
// sorted.
func runStates(batch []*commitRequest, states map[string][]byte) (msgsOf [][]*message.Message, inserted, updated []string, err error) {
	msgsOf = make([][]*message.Message, len(batch))
	stored := make(map[string]bool, len(states))
	for k := range states {
		stored[k] = true
	}
	changed := map[string]bool{}
	for i, req := range batch {
		msgsOf[i] = req.msgs
		if req.state == nil {
			continue
		}
		next, msgs, err := runState(req.state, states[req.key])
		if err != nil {
			return nil, nil, nil, fmt.Errorf("decide %s: %w", req.key, err)
		}
		if !bytes.Equal(next, states[req.key]) {
			states[req.key] = next
			changed[req.key] = true
		}
		msgsOf[i] = msgs
	}
	for k := range changed {
		if stored[k] {
			updated = append(updated, k)
		} else {
			inserted = append(inserted, k)
		}
	}
	slices.Sort(inserted)
	slices.Sort(updated)
	return msgsOf, inserted, updated, nil
}

// beginError is a failure to start a transaction: the database is not
// there, whatever the messages.
type beginError struct{ err error }

func (e *beginError) Error() string { return "begin transaction: " + e.err.Error() }
func (e *beginError) Unwrap() error { return e.err }

// LoadState reads key's stored state without locking or writing it (see
// DB.LoadState).
func (g *GroupCommitter) LoadState(ctx context.Context, key string) ([]byte, error) {
	return g.db.LoadState(ctx, key)
}

// runState runs fn, turning a panic into an error: fn runs on a committer
// worker, where a panic would take the process down.
func runState(fn StateFunc, state []byte) (next []byte, msgs []*message.Message, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("state function panicked: %v", p)
		}
	}()
	return fn(state)
}
