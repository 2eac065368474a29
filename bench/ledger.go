package main

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/social/user-events-router/handlers"
	"github.com/social/user-events-router/schema"
	"github.com/social/user-events-router/store"
)

// ledgerBaseline does in each transaction what the router must: besides
// the batch's commands, it reads and locks the batch's users' ledger rows
// and writes the new ones, with the state the router's own ledger code
// gives a user's first event. The other baselines write the commands only;
// this one prices the rest of the router's work, its per-message design
// apart. On PostgreSQL both tables get COPY, as the router's transactions
// of 16 rows or more do; elsewhere multi-row inserts.
var ledgerBaseline = baselineVariant{
	Name: "ledger", Stream: "BENCH_BASELINE_LEDGER", Prefix: "bench.baselineledger.",
	Table: "watermill_bench_baseline_ledger", Durable: "bench-baseline-ledger",
	Shape: "lock the users' ledger rows → new ledger rows + commands → commit (COPY on PostgreSQL, multi-row inserts elsewhere)",
}

// ledgerTableOf is the ledger table the ledger baseline writes beside its
// commands table.
func ledgerTableOf(table string) string { return table + "_users" }

// firstState is the ledger state the router stores for a user whose first
// event ev is, delivered from the stream at seq.
func firstState(ev schema.UserEvent, kind schema.Kind, seq uint64) string {
	var l handlers.Ledger
	l.Decide(handlers.Arrival{Kind: kind, At: ev.Timestamp, Hash: handlers.ContentHash(ev), Ident: handlers.IdentityHash(ev),
		Path: handlers.PathNATS, StreamSeq: seq})
	return string(l.Bytes())
}

// createLedgerTable copies the router's ledger table's definition.
func createLedgerTable(ctx context.Context, d *benchDB, table string) error {
	var query string
	switch d.Dialect {
	case store.Postgres:
		query = "CREATE TABLE " + table + " (LIKE " + store.LedgerTable + " INCLUDING ALL)"
	case store.MySQL:
		query = "CREATE TABLE " + table + " LIKE " + store.LedgerTable
	default:
		var ddl string
		if err := d.DB.SQL.QueryRowContext(ctx, "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", store.LedgerTable).Scan(&ddl); err != nil {
			return fmt.Errorf("read %s's definition: %w", store.LedgerTable, err)
		}
		query = strings.Replace(ddl, `"`+store.LedgerTable+`"`, `"`+table+`"`, 1)
	}
	_, err := d.DB.SQL.ExecContext(ctx, query)
	return err
}

// ledgerWriter writes a batch as ledgerBaseline says. A user the ledger
// holds already is carried: its event writes nothing (every benchmark
// event is a user's first, so that happens only when a batch is written
// twice).
type ledgerWriter struct {
	db      *store.DB
	conn    *sql.Conn // PostgreSQL: COPY runs on its *pgx.Conn
	table   string
	ledger  string
	insert  *batchInsert
	ledgerQ map[int]string
}

func newLedgerWriter(ctx context.Context, db *store.DB, table string) (*ledgerWriter, error) {
	w := &ledgerWriter{db: db, table: table, ledger: ledgerTableOf(table), insert: newBatchInsert(db.Dialect, table), ledgerQ: map[int]string{}}
	if db.Dialect == store.Postgres {
		conn, err := db.SQL.Conn(ctx)
		if err != nil {
			return nil, err
		}
		w.conn = conn
	}
	return w, nil
}

func (w *ledgerWriter) close() {
	if w.conn != nil {
		_ = w.conn.Close()
	}
}

func (w *ledgerWriter) write(ctx context.Context, b rowBatch) (int, error) {
	if w.conn != nil {
		return 1, w.conn.Raw(func(driverConn any) error {
			c, ok := driverConn.(*stdlib.Conn)
			if !ok {
				return fmt.Errorf("COPY needs pgx's database/sql driver, the connection is a %T", driverConn)
			}
			return w.copyBatch(ctx, c.Conn(), b)
		})
	}
	return 1, w.insertBatch(ctx, b)
}

// copyBatch: lock read, then COPY of the new ledger rows and commands, in
// one transaction.
func (w *ledgerWriter) copyBatch(ctx context.Context, conn *pgx.Conn, b rowBatch) error {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(ctx) }() // a no-op once committed
	rows, err := tx.Query(ctx, "SELECT user_id FROM "+w.ledger+" WHERE user_id = ANY($1) ORDER BY user_id FOR UPDATE", b.users)
	if err != nil {
		return fmt.Errorf("lock ledger rows: %w", err)
	}
	held, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("lock ledger rows: %w", err)
	}
	fresh := b.without(held)
	if len(fresh) == 0 {
		return tx.Commit(ctx)
	}
	var xid uint64
	if err := tx.QueryRow(ctx, "SELECT pg_current_xact_id()").Scan(&xid); err != nil {
		return fmt.Errorf("transaction id: %w", err)
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{w.ledger}, []string{"user_id", "state"}, pgx.CopyFromSlice(len(fresh), func(i int) ([]any, error) {
		return []any{b.users[fresh[i]], b.states[fresh[i]]}, nil
	})); err != nil {
		return fmt.Errorf("COPY ledger rows: %w", err)
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{w.table}, copyColumns, pgx.CopyFromSlice(len(fresh), func(i int) ([]any, error) {
		j := fresh[i]
		return []any{b.args[3*j], b.args[3*j+1], b.args[3*j+2], xid}, nil
	})); err != nil {
		return fmt.Errorf("COPY commands: %w", err)
	}
	return tx.Commit(ctx)
}

// insertBatch: lock read (SQLite's write transaction holds the lock), then
// multi-row inserts of the new ledger rows and commands, in one
// transaction; MySQL at READ COMMITTED, as the router runs it.
func (w *ledgerWriter) insertBatch(ctx context.Context, b rowBatch) error {
	var opts *sql.TxOptions
	if w.db.Dialect == store.MySQL {
		opts = &sql.TxOptions{Isolation: sql.LevelReadCommitted}
	}
	tx, err := w.db.SQL.BeginTx(ctx, opts)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }() // a no-op once committed
	q := "SELECT user_id FROM " + w.ledger + " WHERE user_id IN (" + strings.TrimSuffix(strings.Repeat("?,", len(b.users)), ",") + ") ORDER BY user_id"
	if w.db.Dialect == store.MySQL {
		q += " FOR UPDATE"
	}
	args := make([]any, len(b.users))
	for i, u := range b.users {
		args[i] = u
	}
	rows, err := tx.QueryContext(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("lock ledger rows: %w", err)
	}
	var held []string
	for rows.Next() {
		var u string
		if err := rows.Scan(&u); err != nil {
			rows.Close()
			return err
		}
		held = append(held, u)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("lock ledger rows: %w", err)
	}
	fresh := b.without(held)
	if len(fresh) == 0 {
		return tx.Commit()
	}
	ledgerArgs := make([]any, 0, 2*len(fresh))
	cmdArgs := make([]any, 0, 3*len(fresh))
	for _, j := range fresh {
		ledgerArgs = append(ledgerArgs, b.users[j], b.states[j])
		cmdArgs = append(cmdArgs, b.args[3*j:3*j+3]...)
	}
	if _, err := tx.ExecContext(ctx, w.ledgerInsert(len(fresh)), ledgerArgs...); err != nil {
		return fmt.Errorf("insert ledger rows: %w", err)
	}
	if _, err := tx.ExecContext(ctx, w.insert.query(len(fresh)), cmdArgs...); err != nil {
		return fmt.Errorf("insert commands: %w", err)
	}
	return tx.Commit()
}

func (w *ledgerWriter) ledgerInsert(rows int) string {
	if q, ok := w.ledgerQ[rows]; ok {
		return q
	}
	q := "INSERT INTO " + w.ledger + " (user_id, state, updated_at) VALUES " +
		strings.TrimSuffix(strings.Repeat("(?, ?, CURRENT_TIMESTAMP),", rows), ",")
	w.ledgerQ[rows] = q
	return q
}
