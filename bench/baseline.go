package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/social/user-events-router/handlers"
	"github.com/social/user-events-router/router/broker"
	"github.com/social/user-events-router/schema"
	"github.com/social/user-events-router/store"
)

// Each baseline pipeline reads its own copy of the backlog: a stream of
// its own with the Auth Service's settings on a subject of its own (a
// WorkQueue stream allows one consumer per subject, and subjects of two
// streams may not overlap), and writes a table of its own shaped like the
// commands table. The variants differ only in how a batch is written.
type baselineVariant struct {
	// Name is how the report calls it ("multi-row", "copy").
	Name    string
	Stream  string
	Prefix  string // subject prefix in front of the Auth Service's subjects
	Table   string
	Durable string
	// Shape is the write, as the report's text prints it.
	Shape string
}

var (
	// multiRowBaseline writes each batch with one multi-row
	// insert-if-absent; the router's own statement shape, without its
	// ledger.
	multiRowBaseline = baselineVariant{
		Name: "multi-row", Stream: "BENCH_BASELINE", Prefix: "bench.baseline.",
		Table: "watermill_bench_baseline", Durable: "bench-baseline",
		Shape: "1 multi-row insert-if-absent → commit",
	}
	// copyBaseline writes each batch with COPY (PostgreSQL only): the
	// cheapest bulk write there is, the ceiling for any change to how the
	// router writes.
	copyBaseline = baselineVariant{
		Name: "copy", Stream: "BENCH_BASELINE_COPY", Prefix: "bench.baselinecopy.",
		Table: "watermill_bench_baseline_copy", Durable: "bench-baseline-copy",
		Shape: "COPY → commit (a batch meeting a duplicate: multi-row insert-if-absent in a new transaction)",
	}
)

const baselineBatch = 1000

// BaselineResult is what a hand-written pipeline achieved.
type BaselineResult struct {
	// Variant is "multi-row" or "copy".
	Variant      string  `json:"variant"`
	Events       int     `json:"events"`
	Seconds      float64 `json:"seconds"`
	EventsPerSec float64 `json:"events_per_s"`
	Batches      int     `json:"batches"`
	// WriteTransactions is how many transactions committed rows, counted
	// by the pipeline (a COPY that met a duplicate and rolled back is not
	// one; its fallback is).
	WriteTransactions int `json:"write_transactions"`
	// CopyFallbacks is how many batches met a duplicate in COPY and were
	// written again with the insert-if-absent.
	CopyFallbacks int         `json:"copy_fallbacks"`
	CPU           CPUUse      `json:"cpu"`
	DB            *DBPerEvent `json:"db,omitempty"`
	PerEvent      Cost        `json:"per_event"`
	Checks        []Check     `json:"checks"`
}

// rowBatch is one fetched batch: n × (uuid, payload, metadata) in args,
// and each row's user and the ledger state the router would store for it.
type rowBatch struct {
	n      int
	args   []any
	users  []string
	states []string
}

// without is the indexes of the rows whose user is not in held.
func (b rowBatch) without(held []string) []int {
	skip := make(map[string]bool, len(held))
	for _, u := range held {
		skip[u] = true
	}
	out := make([]int, 0, b.n)
	for i, u := range b.users {
		if !skip[u] {
			out = append(out, i)
		}
	}
	return out
}

// batchWriter writes one fetched batch. It returns how many transactions
// committed rows.
type batchWriter interface {
	write(ctx context.Context, b rowBatch) (int, error)
}

// runBaseline drains the events with no framework: fetch up to 1,000 from a
// pull consumer, decode and build each command with the router's own schema
// and handler code, write the batch in one transaction as the variant does,
// then ack each message.
func runBaseline(ctx context.Context, b *natsBroker, d *benchDB, evs []event, v baselineVariant, say func(string, ...any)) (*BaselineResult, error) {
	say = prefixed(say, "baseline "+v.Name+": ")
	wrap := func(err error) error { return fmt.Errorf("baseline %s: %w", v.Name, err) }
	cfg := broker.AuthServiceStreamConfig(v.Stream)
	cfg.Subjects = []string{v.Prefix + broker.StreamSubjects[0]}
	stream, err := b.js.CreateStream(ctx, cfg)
	if err != nil {
		return nil, wrap(fmt.Errorf("create stream %s: %w", v.Stream, err))
	}
	defer func() { _ = b.js.DeleteStream(context.WithoutCancel(ctx), v.Stream) }()
	say("publishing %d events to %s", len(evs), v.Stream)
	if err := b.publishAll(ctx, v.Prefix+createdSubject, evs); err != nil {
		return nil, wrap(err)
	}
	if err := createBaselineTable(ctx, d, v.Table); err != nil {
		return nil, wrap(fmt.Errorf("create table: %w", err))
	}
	if v.Name == ledgerBaseline.Name {
		if err := createLedgerTable(ctx, d, ledgerTableOf(v.Table)); err != nil {
			return nil, wrap(fmt.Errorf("create ledger table: %w", err))
		}
	}
	cons, err := stream.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable:       v.Durable,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       30 * time.Second,
		MaxAckPending: 4 * baselineBatch,
	})
	if err != nil {
		return nil, wrap(fmt.Errorf("create consumer: %w", err))
	}
	registry := handlers.DefaultRegistry()
	// A connection pool of its own, closed at the end, so PostgreSQL has
	// reported its statistics when they are read.
	db, err := store.Open(ctx, d.RouterURL)
	if err != nil {
		return nil, wrap(err)
	}
	defer db.Close()
	w, closeWriter, err := newBaselineWriter(ctx, db, v)
	if err != nil {
		return nil, wrap(err)
	}
	defer closeWriter()
	before, beforeOK := d.counters(ctx)

	say("draining")
	cpu0 := sampleCPU(0)
	start := time.Now()
	res := &BaselineResult{Variant: v.Name, Events: len(evs)}
	for done := 0; done < len(evs); {
		batch, err := cons.Fetch(min(baselineBatch, len(evs)-done), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return nil, wrap(fmt.Errorf("fetch: %w", err))
		}
		var msgs []jetstream.Msg
		var rb rowBatch
		for msg := range batch.Messages() {
			row, user, state, err := baselineRow(registry, v.Prefix, msg)
			if err != nil {
				return nil, wrap(err)
			}
			msgs = append(msgs, msg)
			rb.args = append(rb.args, row...)
			rb.users, rb.states = append(rb.users, user), append(rb.states, state)
		}
		rb.n = len(msgs)
		if err := batch.Error(); err != nil && len(msgs) == 0 {
			return nil, wrap(fmt.Errorf("fetch: %w", err))
		}
		if len(msgs) == 0 {
			continue
		}
		txs, err := w.write(ctx, rb)
		if err != nil {
			return nil, wrap(fmt.Errorf("write: %w", err))
		}
		for _, msg := range msgs {
			if err := msg.Ack(); err != nil {
				return nil, wrap(fmt.Errorf("ack: %w", err))
			}
		}
		done += len(msgs)
		res.Batches++
		res.WriteTransactions += txs
	}
	res.Seconds = time.Since(start).Seconds()
	res.CPU = cpuBetween(cpu0, sampleCPU(0))
	res.EventsPerSec = float64(len(evs)) / res.Seconds
	if cw, ok := w.(*copyWriter); ok {
		res.CopyFallbacks = cw.fallbacks
	}
	closeWriter()
	_ = db.Close()
	after, afterOK := d.countersAfterClose(ctx)
	writeTx, rowsSource := res.WriteTransactions, rowsFromPipeline
	if tx, ok := d.writeTransactions(ctx, v.Table); ok {
		writeTx, rowsSource = tx, rowsFromTransactionIDs
	}
	if afterOK && beforeOK {
		res.DB = perEvent(before, after, len(evs), writeTx, d.Dialect)
	}
	res.PerEvent = costOf(res.CPU, len(evs), res.EventsPerSec, false, d.Dialect, rowsPerTx(len(evs), writeTx), rowsSource)

	rows, err1 := d.count(ctx, v.Table)
	distinct, err2 := d.countDistinctUUID(ctx, v.Table)
	left, err3 := b.waitStreamEmpty(ctx, v.Stream, 30*time.Second)
	res.Checks = []Check{
		checkEq("baseline "+v.Name+" rows = N", rows, len(evs), err1),
		checkEq("baseline "+v.Name+" distinct uuids = N", distinct, len(evs), err2),
		checkEq("baseline "+v.Name+" stream empty", int(left), 0, err3),
	}
	if v.Name == ledgerBaseline.Name {
		users, err := d.count(ctx, ledgerTableOf(v.Table))
		res.Checks = append(res.Checks, checkEq("baseline "+v.Name+" ledger rows = N", users, len(evs), err))
	}
	return res, nil
}

// baselineVariants are the baselines -baseline runs on dialect, in order:
// the multi-row one everywhere, then COPY on PostgreSQL (MySQL/MariaDB and
// SQLite have no COPY), then the one that writes the ledger too.
func baselineVariants(dialect store.Dialect) []baselineVariant {
	if dialect == store.Postgres {
		return []baselineVariant{multiRowBaseline, copyBaseline, ledgerBaseline}
	}
	return []baselineVariant{multiRowBaseline, ledgerBaseline}
}

// newBaselineWriter is the variant's batch writer on db, and what closes it.
func newBaselineWriter(ctx context.Context, db *store.DB, v baselineVariant) (batchWriter, func(), error) {
	insert := newBatchInsert(db.Dialect, v.Table)
	if v.Name == ledgerBaseline.Name {
		w, err := newLedgerWriter(ctx, db, v.Table)
		if err != nil {
			return nil, nil, err
		}
		return w, w.close, nil
	}
	if v.Name != copyBaseline.Name {
		return sqlDBWriter{db: db.SQL, insert: insert}, func() {}, nil
	}
	w, err := newCopyWriter(ctx, db, v.Table)
	if err != nil {
		return nil, nil, err
	}
	return w, func() { _ = w.conn.Close() }, nil
}

// sqlDBWriter writes each batch with the multi-row insert-if-absent.
type sqlDBWriter struct {
	db     *sql.DB
	insert *batchInsert
}

func (w sqlDBWriter) write(ctx context.Context, b rowBatch) (int, error) {
	return 1, w.insert.exec(ctx, w.db, b.n, b.args)
}

// prefixed puts prefix in front of every progress line.
func prefixed(say func(string, ...any), prefix string) func(string, ...any) {
	return func(format string, args ...any) { say(prefix+format, args...) }
}

// createBaselineTable copies the commands table's definition (columns,
// types, defaults, unique uuid), so both pipelines write the same rows.
func createBaselineTable(ctx context.Context, d *benchDB, table string) error {
	var query string
	switch d.Dialect {
	case store.Postgres:
		query = "CREATE TABLE " + table + " (LIKE " + commandsTable + " INCLUDING ALL)"
	case store.MySQL:
		query = "CREATE TABLE " + table + " LIKE " + commandsTable
	default:
		return d.DB.InitSchema(ctx, strings.TrimPrefix(table, "watermill_"))
	}
	_, err := d.DB.SQL.ExecContext(ctx, query)
	return err
}

// baselineRow decodes one event and builds its command as the router's
// handlers do, the variant's subject prefix taken off; it returns the row's
// uuid, payload and metadata, and the user and the ledger state the router
// would store for the user's first event.
func baselineRow(registry handlers.Registry, prefix string, msg jetstream.Msg) (row []any, user, state string, err error) {
	subject := strings.TrimPrefix(msg.Subject(), prefix)
	ev, err := schema.DecodeEvent(subject, msg.Data())
	if err != nil {
		return nil, "", "", err
	}
	h, ok := registry[ev.Action]
	if !ok {
		return nil, "", "", fmt.Errorf("no handler for action %q", ev.Action)
	}
	meta, err := msg.Metadata()
	if err != nil {
		return nil, "", "", err
	}
	cmd := h.Build(ev, handlers.Delivery{
		Subject:         subject,
		Ingress:         schema.IngressNATS,
		StreamSequence:  meta.Sequence.Stream,
		DeliveryAttempt: meta.NumDelivered,
		CorrelationID:   handlers.ResolveCorrelationID(ev.RequestID, "", msg.Data()),
	})
	// Every benchmark event is a new user's first: the ledger would number
	// it 1 of generation 1. Only the ledger baseline reads and writes the
	// ledger, which the router does in each transaction.
	cmd.CommandID, cmd.Generation, cmd.UserSequence = handlers.CommandID(ev.ID, 1), 1, 1
	payload, err := json.Marshal(cmd)
	if err != nil {
		return nil, "", "", err
	}
	metadata, _ := json.Marshal(map[string]string{
		handlers.MetaCorrelationID: cmd.CorrelationID,
		handlers.MetaCommandType:   string(cmd.Type),
	})
	action, _ := schema.LookupAction(ev.Action)
	return []any{cmd.CommandID, string(payload), string(metadata)}, ev.ID, firstState(ev, action.Kind, meta.Sequence.Stream), nil
}

// batchInsert is one hand-written multi-row insert-if-absent per dialect
// into table, with the statement text cached by row count.
type batchInsert struct {
	dialect store.Dialect
	table   string
	queries map[int]string
}

func newBatchInsert(dialect store.Dialect, table string) *batchInsert {
	return &batchInsert{dialect: dialect, table: table, queries: map[int]string{}}
}

func (b *batchInsert) query(rows int) string {
	if q, ok := b.queries[rows]; ok {
		return q
	}
	var sb strings.Builder
	switch b.dialect {
	case store.Postgres:
		sb.WriteString("INSERT INTO " + b.table + " (uuid, payload, metadata, transaction_id) VALUES ")
		for i := 0; i < rows; i++ {
			if i > 0 {
				sb.WriteByte(',')
			}
			n := 3*i + 1
			sb.WriteString("($" + strconv.Itoa(n) + ",$" + strconv.Itoa(n+1) + ",$" + strconv.Itoa(n+2) + ",pg_current_xact_id())")
		}
		sb.WriteString(" ON CONFLICT (uuid) DO NOTHING")
	case store.MySQL:
		sb.WriteString("INSERT INTO " + b.table + " (uuid, payload, metadata) VALUES ")
		sb.WriteString(strings.TrimSuffix(strings.Repeat("(?,?,?),", rows), ","))
		sb.WriteString(" ON DUPLICATE KEY UPDATE uuid = uuid")
	default:
		sb.WriteString(`INSERT INTO ` + b.table + ` ("uuid", "payload", "metadata") VALUES `)
		sb.WriteString(strings.TrimSuffix(strings.Repeat("(?,?,?),", rows), ","))
		sb.WriteString(` ON CONFLICT ("uuid") DO NOTHING`)
	}
	b.queries[rows] = sb.String()
	return b.queries[rows]
}

// txBeginner is a pool (*sql.DB) or one connection of it (*sql.Conn).
type txBeginner interface {
	BeginTx(ctx context.Context, opts *sql.TxOptions) (*sql.Tx, error)
}

// exec writes the rows in one transaction.
func (b *batchInsert) exec(ctx context.Context, db txBeginner, rows int, args []any) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, b.query(rows), args...); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}
