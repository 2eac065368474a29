package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"
)

// PruneReport says what PruneCommands did, or would do.
type PruneReport struct {
	// Pruned is how many commands were deleted (with DryRun: would be).
	Pruned int64
	// Groups are the consumer groups that have read the commands table, and
	// Waiting the required ones that have read nothing yet: while one is
	// waiting, nothing is pruned.
	Groups  []string
	Waiting []string
}

// PruneOptions bound PruneCommands.
type PruneOptions struct {
	// OlderThan: only commands written longer ago than this are pruned.
	OlderThan time.Duration
	// Required consumer groups must have read a command before it goes,
	// even if they have no offset yet (a consumer not started yet).
	Required []string
	// Batch is the most rows one DELETE removes (default 1000), so that a
	// large backlog is pruned in short transactions.
	Batch int
	// DryRun counts what would go and deletes nothing.
	DryRun bool
}

// PruneCommands deletes commands that every consumer group has passed — each
// group with an offset in watermill's offsets table, and every Required
// group — and that are older than OlderThan. A command a group has not read
// is never deleted: on PostgreSQL, where watermill-sql reads by transaction
// id, "passed" is by (transaction id, offset) as it reads; elsewhere by
// offset. The ledger (LedgerTable) is never pruned, so deduplication does
// not depend on what retention removes.
func (db *DB) PruneCommands(ctx context.Context, o PruneOptions) (PruneReport, error) {
	if o.Batch <= 0 {
		o.Batch = 1000
	}
	var rep PruneReport
	bound, groups, err := db.readBound(ctx)
	if err != nil {
		return rep, err
	}
	rep.Groups = groups
	for _, g := range o.Required {
		if !slices.Contains(groups, g) {
			rep.Waiting = append(rep.Waiting, g)
		}
	}
	if len(groups) == 0 || len(rep.Waiting) > 0 {
		return rep, nil
	}
	pred, args := db.prunePredicate(bound, o.OlderThan)
	table := quoteIdent(db.Dialect, messagesTableName(CommandsTopic))
	if o.DryRun {
		err := db.SQL.QueryRowContext(ctx, db.bind("SELECT count(*) FROM "+table+" WHERE "+pred), args...).Scan(&rep.Pruned)
		if err != nil {
			return rep, fmt.Errorf("count prunable commands: %w", err)
		}
		return rep, nil
	}
	var del string
	off := quoteIdent(db.Dialect, "offset")
	if db.Dialect == MySQL {
		del = "DELETE FROM " + table + " WHERE " + pred + " ORDER BY " + off + " LIMIT " + strconv.Itoa(o.Batch)
	} else {
		del = "DELETE FROM " + table + " WHERE " + off + " IN (SELECT " + off + " FROM " + table + " WHERE " + pred +
			" ORDER BY " + off + " LIMIT " + strconv.Itoa(o.Batch) + ")"
	}
	for {
		res, err := db.SQL.ExecContext(ctx, db.bind(del), args...)
		if err != nil {
			return rep, fmt.Errorf("prune commands: %w", err)
		}
		n, _ := res.RowsAffected()
		rep.Pruned += n
		if n < int64(o.Batch) {
			return rep, nil
		}
	}
}

// pruneBound is the position every consumer group has passed.
type pruneBound struct {
	offset int64
	txID   string // PostgreSQL only: the group's last transaction id
}

// readBound returns the least position any group has acked and the groups.
func (db *DB) readBound(ctx context.Context) (pruneBound, []string, error) {
	offsets := quoteIdent(db.Dialect, offsetsTableName(CommandsTopic))
	q := "SELECT consumer_group, offset_acked FROM " + offsets + " ORDER BY offset_acked"
	if db.Dialect == Postgres {
		q = "SELECT consumer_group, offset_acked, last_processed_transaction_id::text FROM " + offsets +
			" ORDER BY last_processed_transaction_id, offset_acked"
	}
	rows, err := db.SQL.QueryContext(ctx, q)
	if err != nil {
		return pruneBound{}, nil, fmt.Errorf("read consumer offsets: %w", err)
	}
	defer rows.Close()
	var b pruneBound
	var groups []string
	for rows.Next() {
		var g string
		var off sql.NullInt64
		var tx sql.NullString
		dest := []any{&g, &off}
		if db.Dialect == Postgres {
			dest = append(dest, &tx)
		}
		if err := rows.Scan(dest...); err != nil {
			return pruneBound{}, nil, fmt.Errorf("read consumer offsets: %w", err)
		}
		if !off.Valid {
			// A group that has been handed a message but acked none yet.
			off.Int64 = 0
		}
		if len(groups) == 0 {
			b = pruneBound{offset: off.Int64, txID: tx.String}
		}
		groups = append(groups, g)
	}
	if err := rows.Err(); err != nil {
		return pruneBound{}, nil, fmt.Errorf("read consumer offsets: %w", err)
	}
	if db.Dialect == Postgres && len(groups) > 0 && b.txID == "" {
		return pruneBound{}, nil, errors.New("read consumer offsets: a group has no transaction id")
	}
	return b, groups, nil
}

// prunePredicate selects the commands at or before b and older than age.
func (db *DB) prunePredicate(b pruneBound, age time.Duration) (string, []any) {
	off := quoteIdent(db.Dialect, "offset")
	secs := int64(age / time.Second)
	switch db.Dialect {
	case Postgres:
		return `(transaction_id < ?::xid8 OR (transaction_id = ?::xid8 AND ` + off + ` <= ?))` +
				` AND created_at <= LOCALTIMESTAMP - make_interval(secs => ?)`,
			[]any{b.txID, b.txID, b.offset, secs}
	case MySQL:
		return off + ` <= ? AND created_at <= CURRENT_TIMESTAMP - INTERVAL ? SECOND`, []any{b.offset, secs}
	default:
		return off + ` <= ? AND created_at <= strftime('%Y-%m-%d %H:%M:%f', 'now', ?)`,
			[]any{b.offset, "-" + strconv.FormatInt(secs, 10) + " seconds"}
	}
}

// quoteIdent quotes an identifier for d.
func quoteIdent(d Dialect, name string) string {
	if d == MySQL {
		return "`" + name + "`"
	}
	return quoteStandard(name)
}
