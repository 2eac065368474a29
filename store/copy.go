package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// On PostgreSQL a commit transaction writes its new rows with COPY rather
// than with one multi-row INSERT per table. A multi-row INSERT of a few
// hundred rows is a statement of a thousand parameters and a text that
// changes with the row count: pgx encodes every parameter into its own
// buffer and prepares each new text once more (its statement cache holds
// 512), and PostgreSQL parses and plans it. COPY streams the rows in
// binary, in one buffer. COPY has no "if absent": a batch that meets a row
// already stored fails whole, and is committed again with the insert (see
// GroupCommitter.commitRaced). The ledger's decisions make that rare: a
// command's uuid is new unless the same messages are published twice.

// copyMinRows is the fewest rows a table gets by COPY: a COPY takes more
// round trips than one INSERT (the transaction id is read first), and a
// statement of a few rows is cheap to encode and one of few texts for pgx
// to prepare. At a steady 1,000 events a second, transactions hold one or
// two rows; while draining, hundreds.
const copyMinRows = 16

// pgUniqueViolation is PostgreSQL's SQLSTATE for a duplicate key.
const pgUniqueViolation = "23505"

// copyMessagesColumns are the columns of a watermill-sql messages table
// that COPY fills; "offset" and created_at take their defaults, as they do
// in watermill-sql's insert.
var copyMessagesColumns = []string{"uuid", "payload", "metadata", "transaction_id"}

// copyLedgerColumns are the ledger's columns that COPY fills; updated_at
// takes its default, CURRENT_TIMESTAMP, as the insert sets it.
var copyLedgerColumns = []string{"user_id", "state"}

// copyTx is one commit transaction's COPYs on PostgreSQL: the connection
// it runs on, and the transaction's id once read.
type copyTx struct {
	conn  *pgx.Conn
	types *copyColumnTypes
	xid   uint64
}

// copyMessages writes msgs into topic's messages table. transaction_id is
// the transaction's own id, which watermill-sql's insert sets with
// pg_current_xact_id() and its subscriber reads by. A uuid already stored
// fails it with a *copyDuplicateError.
func (c *copyTx) copyMessages(ctx context.Context, topic string, msgs []*message.Message) error {
	table, conn := messagesTableName(topic), c.conn
	if c.xid == 0 {
		if err := conn.QueryRow(ctx, "SELECT pg_current_xact_id()").Scan(&c.xid); err != nil {
			return fmt.Errorf("read the transaction id: %w", err)
		}
	}
	oids, err := c.types.get(ctx, conn, table, copyMessagesColumns)
	if err != nil {
		return err
	}
	e := newCopyEncoder(conn.TypeMap(), oids)
	defer e.release()
	for _, msg := range msgs {
		metadata, err := json.Marshal(msg.Metadata)
		if err != nil {
			return fmt.Errorf("marshal metadata of message %s: %w", msg.UUID, err)
		}
		e.row()
		e.text(msg.UUID)
		e.bytes(msg.Payload)
		e.bytes(metadata)
		e.uint64(c.xid)
	}
	n, err := e.copyIn(ctx, conn, table, copyMessagesColumns)
	if isUniqueViolation(err) {
		return &copyDuplicateError{err}
	}
	if err != nil {
		c.types.forget(table)
		return fmt.Errorf("copy %d messages into %s: %w", len(msgs), topic, err)
	}
	if n != int64(len(msgs)) {
		return fmt.Errorf("copy into %s wrote %d of %d messages", topic, n, len(msgs))
	}
	return nil
}

// copyLedger writes the new ledger rows of keys. A key already stored (a
// concurrent transaction inserted it first) fails it with a
// *ledgerRaceError, as the plain insert does.
func (c *copyTx) copyLedger(ctx context.Context, keys []string, states map[string][]byte) error {
	conn := c.conn
	oids, err := c.types.get(ctx, conn, LedgerTable, copyLedgerColumns)
	if err != nil {
		return err
	}
	e := newCopyEncoder(conn.TypeMap(), oids)
	defer e.release()
	for _, k := range keys {
		e.row()
		e.text(k)
		e.bytes(states[k])
	}
	n, err := e.copyIn(ctx, conn, LedgerTable, copyLedgerColumns)
	if err != nil {
		err = fmt.Errorf("write %d rows of %s: %w", len(keys), LedgerTable, err)
		if isUniqueViolation(err) {
			return &ledgerRaceError{err}
		}
		c.types.forget(LedgerTable)
		return err
	}
	if n != int64(len(keys)) {
		return fmt.Errorf("copy into %s wrote %d of %d rows", LedgerTable, n, len(keys))
	}
	return nil
}

func isUniqueViolation(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == pgUniqueViolation
}

// copyDuplicateError is a COPY that met a message already stored: the
// transaction is lost, and worth committing again with the insert that
// skips stored messages.
type copyDuplicateError struct{ err error }

func (e *copyDuplicateError) Error() string { return e.err.Error() }
func (e *copyDuplicateError) Unwrap() error { return e.err }
