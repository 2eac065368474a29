package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/ThreeDotsLabs/watermill/message"
)

// LedgerTable keeps, per user, what the router has already carried for that
// user (handlers.Ledger, stored as opaque text). It is what tells a new
// event from a copy of one already carried, so it is written in the same
// transaction as the commands it decides, and it is never pruned: the
// commands table may be, and deduplication must not depend on rows that
// retention removes. It holds no personal data: a user id, counters,
// timestamps and hashes.
const LedgerTable = "user_events_ledger"

// StateFunc decides, from the stored state of one key (nil when there is
// none), the key's next state and the messages to commit with it. It runs
// inside the transaction that commits both, with the key's row locked, and
// it must be pure: when a batch fails it runs again on its own. Returning
// next equal to state writes nothing for the key.
type StateFunc = func(state []byte) (next []byte, msgs []*message.Message, err error)

// ledgerTableSQL is the quoted ledger table name.
func (db *DB) ledgerTableSQL() string {
	if db.Dialect == MySQL {
		return "`" + LedgerTable + "`"
	}
	return `"` + LedgerTable + `"`
}

// initLedger creates the ledger table if absent.
func (db *DB) initLedger(ctx context.Context) error {
	// VARCHAR(36) fits the canonical user id; TEXT holds the state on all
	// three backends.
	ddl := "CREATE TABLE IF NOT EXISTS " + db.ledgerTableSQL() + ` (
		user_id VARCHAR(36) NOT NULL PRIMARY KEY,
		state TEXT NOT NULL,
		updated_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
	)`
	_, err := db.SQL.ExecContext(ctx, ddl)
	if err != nil {
		// Two processes creating it at once: PostgreSQL lets the loser
		// fail on its catalog instead of seeing the table. Once more finds it.
		_, err = db.SQL.ExecContext(ctx, ddl)
	}
	if err != nil {
		return fmt.Errorf("create %s: %w", LedgerTable, err)
	}
	return nil
}

// LoadState reads the stored state of key without locking it (nil when
// there is none): for previews such as a dry-run replay, which write
// nothing.
func (db *DB) LoadState(ctx context.Context, key string) ([]byte, error) {
	var state string
	err := db.SQL.QueryRowContext(ctx, db.bind("SELECT state FROM "+db.ledgerTableSQL()+" WHERE user_id = ?"), key).Scan(&state)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("read %s of %s: %w", LedgerTable, key, err)
	}
	return []byte(state), nil
}

// beginOptions are the options of a commit transaction. MySQL runs it at
// READ COMMITTED: at its default REPEATABLE READ, locking reads of users
// not yet in the ledger take gap locks, and two transactions inserting
// neighbouring new users would deadlock on every batch.
func (db *DB) beginOptions() *sql.TxOptions {
	if db.Dialect == MySQL {
		return &sql.TxOptions{Isolation: sql.LevelReadCommitted}
	}
	return nil
}

// lockStates reads the stored states of keys and locks their rows until tx
// ends (MySQL; SQLite's transaction holds the write lock already;
// PostgreSQL's commit, commitPostgres, has its own). Rows are locked in
// key order, so two transactions wanting some of the same keys cannot
// deadlock on them. Keys absent from the ledger are absent from the
// result; a concurrent transaction inserting one of them first makes this
// one's insert fail, and the batch is retried.
func (db *DB) lockStates(ctx context.Context, tx *sql.Tx, keys []string) (map[string][]byte, error) {
	q := "SELECT user_id, state FROM " + db.ledgerTableSQL() + " WHERE user_id IN (" + placeholders(len(keys)) + ") ORDER BY user_id"
	if db.Dialect != SQLite {
		q += " FOR UPDATE"
	}
	args := make([]any, len(keys))
	for i, k := range keys {
		args[i] = k
	}
	rows, err := tx.QueryContext(ctx, db.bind(q), args...)
	if err != nil {
		return nil, fmt.Errorf("lock %d rows of %s: %w", len(keys), LedgerTable, err)
	}
	defer rows.Close()
	states := make(map[string][]byte, len(keys))
	for rows.Next() {
		var k, s string
		if err := rows.Scan(&k, &s); err != nil {
			return nil, fmt.Errorf("read %s: %w", LedgerTable, err)
		}
		states[k] = []byte(s)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", LedgerTable, err)
	}
	return states, nil
}

// writeStates stores the states of the keys in inserted (new rows: a plain
// insert, so that a concurrent insert of the same key fails this
// transaction rather than being overwritten) and updated (rows locked by
// lockStates).
func (db *DB) writeStates(ctx context.Context, tx *sql.Tx, states map[string][]byte, inserted, updated []string) error {
	table := db.ledgerTableSQL()
	for _, part := range []struct {
		keys   []string
		prefix string
		suffix string
	}{
		{inserted, "INSERT INTO " + table + " (user_id, state, updated_at) VALUES ", ""},
		{updated, "INSERT INTO " + table + " (user_id, state, updated_at) VALUES ", db.upsertSuffix()},
	} {
		if len(part.keys) == 0 {
			continue
		}
		slices.Sort(part.keys)
		var b strings.Builder
		b.WriteString(part.prefix)
		args := make([]any, 0, 2*len(part.keys))
		for i, k := range part.keys {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString("(?, ?, CURRENT_TIMESTAMP)")
			args = append(args, k, string(states[k]))
		}
		b.WriteString(part.suffix)
		if _, err := tx.ExecContext(ctx, db.bind(b.String()), args...); err != nil {
			err = fmt.Errorf("write %d rows of %s: %w", len(part.keys), LedgerTable, err)
			if part.suffix == "" {
				// Most likely a concurrent transaction inserted one of them.
				return &ledgerRaceError{err}
			}
			return err
		}
	}
	return nil
}

func (db *DB) upsertSuffix() string {
	if db.Dialect == MySQL {
		return " ON DUPLICATE KEY UPDATE state = VALUES(state), updated_at = VALUES(updated_at)"
	}
	return " ON CONFLICT (user_id) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at"
}

func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
}

// ledgerRaceError is a failed insert of new ledger rows: another
// transaction probably inserted one of them first, and the whole
// transaction is worth trying again (GroupCommitter.commitRaced).
type ledgerRaceError struct{ err error }

func (e *ledgerRaceError) Error() string { return e.err.Error() }
func (e *ledgerRaceError) Unwrap() error { return e.err }

// Bind rewrites ? placeholders for PostgreSQL ($1, $2, …), for queries
// written once for every dialect.
func (db *DB) Bind(query string) string { return db.bind(query) }
