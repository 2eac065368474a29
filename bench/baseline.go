package main

import (
	"context"
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

// The baseline pipeline reads its own copy of the backlog: a second stream
// with the Auth Service's settings on a subject of its own (a WorkQueue
// stream allows one consumer per subject, and subjects of two streams may
// not overlap), and writes a table shaped like the commands table.
const (
	baselineStream  = "BENCH_BASELINE"
	baselinePrefix  = "bench.baseline."
	baselineTable   = "watermill_bench_baseline"
	baselineBatch   = 1000
	baselineDurable = "bench-baseline"
)

// BaselineResult is what the hand-written pipeline achieved.
type BaselineResult struct {
	Events       int         `json:"events"`
	Seconds      float64     `json:"seconds"`
	EventsPerSec float64     `json:"events_per_s"`
	Batches      int         `json:"batches"`
	CPU          CPUUse      `json:"cpu"`
	DB           *DBPerEvent `json:"db,omitempty"`
	Checks       []Check     `json:"checks"`
}

// runBaseline drains the events with no framework: fetch up to 1,000 from a
// pull consumer, decode and build each command with the router's own schema
// and handler code, write the batch with one multi-row insert-if-absent in
// one transaction, then ack each message.
func runBaseline(ctx context.Context, b *natsBroker, d *benchDB, evs []event, say func(string, ...any)) (*BaselineResult, error) {
	cfg := broker.AuthServiceStreamConfig(baselineStream)
	cfg.Subjects = []string{baselinePrefix + broker.StreamSubjects[0]}
	stream, err := b.js.CreateStream(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("baseline: create stream %s: %w", baselineStream, err)
	}
	defer func() { _ = b.js.DeleteStream(context.WithoutCancel(ctx), baselineStream) }()
	say("baseline: publishing %d events to %s", len(evs), baselineStream)
	if err := b.publishAll(ctx, baselinePrefix+createdSubject, evs); err != nil {
		return nil, fmt.Errorf("baseline: %w", err)
	}
	if err := createBaselineTable(ctx, d); err != nil {
		return nil, fmt.Errorf("baseline: create table: %w", err)
	}
	cons, err := stream.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable:       baselineDurable,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       30 * time.Second,
		MaxAckPending: 4 * baselineBatch,
	})
	if err != nil {
		return nil, fmt.Errorf("baseline: create consumer: %w", err)
	}
	registry := handlers.DefaultRegistry()
	insert := newBatchInsert(d.Dialect)
	// A connection pool of its own, closed at the end, so PostgreSQL has
	// reported its statistics when they are read.
	db, err := store.Open(ctx, d.RouterURL)
	if err != nil {
		return nil, fmt.Errorf("baseline: %w", err)
	}
	defer db.Close()
	before, beforeOK := d.counters(ctx)

	say("baseline: draining")
	cpu0 := sampleCPU(0)
	start := time.Now()
	res := &BaselineResult{Events: len(evs)}
	for done := 0; done < len(evs); {
		batch, err := cons.Fetch(min(baselineBatch, len(evs)-done), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return nil, fmt.Errorf("baseline: fetch: %w", err)
		}
		var msgs []jetstream.Msg
		var args []any
		for msg := range batch.Messages() {
			row, err := baselineRow(registry, msg)
			if err != nil {
				return nil, fmt.Errorf("baseline: %w", err)
			}
			msgs = append(msgs, msg)
			args = append(args, row...)
		}
		if err := batch.Error(); err != nil && len(msgs) == 0 {
			return nil, fmt.Errorf("baseline: fetch: %w", err)
		}
		if len(msgs) == 0 {
			continue
		}
		if err := insert.exec(ctx, db, len(msgs), args); err != nil {
			return nil, fmt.Errorf("baseline: insert: %w", err)
		}
		for _, msg := range msgs {
			if err := msg.Ack(); err != nil {
				return nil, fmt.Errorf("baseline: ack: %w", err)
			}
		}
		done += len(msgs)
		res.Batches++
	}
	res.Seconds = time.Since(start).Seconds()
	res.CPU = cpuBetween(cpu0, sampleCPU(0))
	res.EventsPerSec = float64(len(evs)) / res.Seconds
	_ = db.Close()
	if after, ok := d.countersAfterClose(ctx); ok && beforeOK {
		tx, _ := d.writeTransactions(ctx, baselineTable)
		res.DB = perEvent(before, after, len(evs), tx, d.Dialect)
	}

	rows, err1 := d.count(ctx, baselineTable)
	distinct, err2 := d.countDistinctUUID(ctx, baselineTable)
	left, err3 := b.waitStreamEmpty(ctx, baselineStream, 30*time.Second)
	res.Checks = []Check{
		checkEq("baseline rows = N", rows, len(evs), err1),
		checkEq("baseline distinct uuids = N", distinct, len(evs), err2),
		checkEq("baseline stream empty", int(left), 0, err3),
	}
	return res, nil
}

// createBaselineTable copies the commands table's definition (columns,
// types, defaults, unique uuid), so both pipelines write the same rows.
func createBaselineTable(ctx context.Context, d *benchDB) error {
	var query string
	switch d.Dialect {
	case store.Postgres:
		query = "CREATE TABLE " + baselineTable + " (LIKE " + commandsTable + " INCLUDING ALL)"
	case store.MySQL:
		query = "CREATE TABLE " + baselineTable + " LIKE " + commandsTable
	default:
		return d.DB.InitSchema(ctx, strings.TrimPrefix(baselineTable, "watermill_"))
	}
	_, err := d.DB.SQL.ExecContext(ctx, query)
	return err
}

// baselineRow decodes one event and builds its command as the router's
// handlers do; it returns the row's uuid, payload and metadata.
func baselineRow(registry handlers.Registry, msg jetstream.Msg) ([]any, error) {
	subject := strings.TrimPrefix(msg.Subject(), baselinePrefix)
	ev, err := schema.DecodeEvent(subject, msg.Data())
	if err != nil {
		return nil, err
	}
	h, ok := registry[ev.Action]
	if !ok {
		return nil, fmt.Errorf("no handler for action %q", ev.Action)
	}
	meta, err := msg.Metadata()
	if err != nil {
		return nil, err
	}
	cmd := h.Build(ev, handlers.Delivery{
		Subject:         subject,
		Ingress:         schema.IngressNATS,
		StreamSequence:  meta.Sequence.Stream,
		DeliveryAttempt: meta.NumDelivered,
		CorrelationID:   handlers.ResolveCorrelationID(ev.RequestID, "", msg.Data()),
	})
	// Every benchmark event is a new user's first: the ledger would number
	// it 1 of generation 1. The baseline neither reads nor writes the
	// ledger, which the router does in each transaction.
	cmd.CommandID, cmd.Generation, cmd.UserSequence = handlers.CommandID(ev.ID, 1), 1, 1
	payload, err := json.Marshal(cmd)
	if err != nil {
		return nil, err
	}
	metadata, _ := json.Marshal(map[string]string{
		handlers.MetaCorrelationID: cmd.CorrelationID,
		handlers.MetaCommandType:   string(cmd.Type),
	})
	return []any{cmd.CommandID, string(payload), string(metadata)}, nil
}

// batchInsert is one hand-written multi-row insert-if-absent per dialect,
// with the statement text cached by row count.
type batchInsert struct {
	dialect store.Dialect
	queries map[int]string
}

func newBatchInsert(dialect store.Dialect) *batchInsert {
	return &batchInsert{dialect: dialect, queries: map[int]string{}}
}

func (b *batchInsert) query(rows int) string {
	if q, ok := b.queries[rows]; ok {
		return q
	}
	var sb strings.Builder
	switch b.dialect {
	case store.Postgres:
		sb.WriteString("INSERT INTO " + baselineTable + " (uuid, payload, metadata, transaction_id) VALUES ")
		for i := 0; i < rows; i++ {
			if i > 0 {
				sb.WriteByte(',')
			}
			n := 3*i + 1
			sb.WriteString("($" + strconv.Itoa(n) + ",$" + strconv.Itoa(n+1) + ",$" + strconv.Itoa(n+2) + ",pg_current_xact_id())")
		}
		sb.WriteString(" ON CONFLICT (uuid) DO NOTHING")
	case store.MySQL:
		sb.WriteString("INSERT INTO " + baselineTable + " (uuid, payload, metadata) VALUES ")
		sb.WriteString(strings.TrimSuffix(strings.Repeat("(?,?,?),", rows), ","))
		sb.WriteString(" ON DUPLICATE KEY UPDATE uuid = uuid")
	default:
		sb.WriteString(`INSERT INTO ` + baselineTable + ` ("uuid", "payload", "metadata") VALUES `)
		sb.WriteString(strings.TrimSuffix(strings.Repeat("(?,?,?),", rows), ","))
		sb.WriteString(` ON CONFLICT ("uuid") DO NOTHING`)
	}
	b.queries[rows] = sb.String()
	return b.queries[rows]
}

// exec writes the rows in one transaction.
func (b *batchInsert) exec(ctx context.Context, db *store.DB, rows int, args []any) error {
	tx, err := db.SQL.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, b.query(rows), args...); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}
