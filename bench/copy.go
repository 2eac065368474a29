package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/social/user-events-router/store"
)

// pgUniqueViolation is PostgreSQL's SQLSTATE for a duplicate key.
const pgUniqueViolation = "23505"

// copyWriter writes each batch with COPY in one transaction. COPY has no
// "if absent": a batch that meets a uuid already in the table fails whole,
// and is then written again with the multi-row insert-if-absent in a new
// transaction. The backlog holds no duplicates, so in a run that should
// never happen (copy_fallbacks says whether it did); it is there so that
// the variant stays idempotent like the others.
type copyWriter struct {
	// conn is one connection of the pool held for the drain: COPY runs on
	// its *pgx.Conn (through (*sql.Conn).Raw), the fallback on it through
	// database/sql.
	conn     *sql.Conn
	table    string
	fallback *batchInsert
	// fallbacks counts the batches written by the fallback.
	fallbacks int
}

func newCopyWriter(ctx context.Context, db *store.DB, table string) (*copyWriter, error) {
	if db.Dialect != store.Postgres {
		return nil, fmt.Errorf("COPY: PostgreSQL only, not %s", db.Dialect)
	}
	conn, err := db.SQL.Conn(ctx)
	if err != nil {
		return nil, err
	}
	return &copyWriter{conn: conn, table: table, fallback: newBatchInsert(db.Dialect, table)}, nil
}

// write copies the rows in one transaction, or inserts them if absent in
// one when COPY met a duplicate; it returns the transactions that
// committed rows (1).
func (w *copyWriter) write(ctx context.Context, b rowBatch) (int, error) {
	rows, args := b.n, b.args
	err := w.conn.Raw(func(driverConn any) error {
		c, ok := driverConn.(*stdlib.Conn)
		if !ok {
			return fmt.Errorf("COPY needs pgx's database/sql driver, the connection is a %T", driverConn)
		}
		return copyRows(ctx, c.Conn(), w.table, rows, args)
	})
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == pgUniqueViolation {
		w.fallbacks++
		if err := w.fallback.exec(ctx, w.conn, rows, args); err != nil {
			return 0, fmt.Errorf("insert-if-absent after COPY met a duplicate: %w", err)
		}
		return 1, nil
	}
	if err != nil {
		return 0, fmt.Errorf("COPY: %w", err)
	}
	return 1, nil
}

// copyColumns are the columns COPY fills; the others take their defaults.
var copyColumns = []string{"uuid", "payload", "metadata", "transaction_id"}

// copyRows copies rows × (uuid, payload, metadata) into table in one
// transaction. transaction_id (NOT NULL, no default) gets the
// transaction's own id, read once, as the multi-row insert's
// pg_current_xact_id() gives every row.
func copyRows(ctx context.Context, conn *pgx.Conn, table string, rows int, args []any) error {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(ctx) }() // a no-op once committed
	var xid uint64
	if err := tx.QueryRow(ctx, "SELECT pg_current_xact_id()").Scan(&xid); err != nil {
		return fmt.Errorf("transaction id: %w", err)
	}
	n, err := tx.CopyFrom(ctx, pgx.Identifier{table}, copyColumns, pgx.CopyFromSlice(rows, func(i int) ([]any, error) {
		return []any{args[3*i], args[3*i+1], args[3*i+2], xid}, nil
	}))
	if err != nil {
		return err
	}
	if n != int64(rows) {
		return fmt.Errorf("copied %d of %d rows", n, rows)
	}
	return tx.Commit(ctx)
}
