package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	wmsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
)

// Topics are the watermill-sql topics `serve` writes: it creates their
// tables at start, and ProbeWritable proves each of them writable.
func Topics() []string { return []string{CommandsTopic, PoisonTopic} }

// writtenTable is one table the router writes, with the statement that
// proves it can: ProbeWritable runs it in a transaction and rolls back.
type writtenTable struct {
	name  string
	probe func(db *DB) (wmsql.Query, error)
}

// writtenTables is the one list of the tables `serve` writes. Readiness and
// `check` probe every entry, so a table added to the write path (a state
// table, say) is added here, with an insert of the shape the router runs;
// a watermill-sql topic is added to Topics instead.
func (db *DB) writtenTables() []writtenTable {
	var tables []writtenTable
	for _, topic := range Topics() {
		tables = append(tables, topicTable(topic))
	}
	return append(tables, writtenTable{
		name: LedgerTable,
		probe: func(db *DB) (wmsql.Query, error) {
			// A user id no event can carry (not a UUID) matches no row.
			return wmsql.Query{
				Query: db.bind("INSERT INTO " + db.ledgerTableSQL() + " (user_id, state, updated_at) VALUES (?, ?, CURRENT_TIMESTAMP)"),
				Args:  []any{"probe-" + uuid.NewString()[:30], "{}"},
			}, nil
		},
	})
}

// topicTable probes a watermill-sql messages table with the insert the
// commit path and the poison queue run (the schema adapter's), so what
// the probe proves is what the router needs: the table exists with its
// columns, the router's user may insert, and nothing (a read-only replica,
// a full disk, a trigger) refuses the row.
func topicTable(topic string) writtenTable {
	return writtenTable{
		name: messagesTableName(topic),
		probe: func(db *DB) (wmsql.Query, error) {
			// A fresh uuid can match no stored row; the payload is JSON
			// because the commands table's column is.
			msg := message.NewMessage(uuid.NewString(), []byte(`{}`))
			msg.Metadata.Set("probe", "readiness")
			return db.SchemaAdapter().InsertQuery(wmsql.InsertQueryParams{Topic: topic, Msgs: message.Messages{msg}})
		},
	}
}

// WrittenTables names the tables ProbeWritable probes, for reports.
func (db *DB) WrittenTables() []string {
	var names []string
	for _, t := range db.writtenTables() {
		names = append(names, t.name)
	}
	return names
}

// ProbeWritable proves the database can take the router's writes now: for
// each table it writes, in a transaction of its own, it inserts a probe row
// the way the router does and rolls back. A failing table's error names it
// (all failing tables are reported); a database that cannot start a
// transaction at all is reported once, without table names.
//
// It leaves no row behind, but it is a write: on PostgreSQL each probe
// takes one value of the table's offset sequence and a transaction id and
// leaves a dead tuple for vacuum; on MySQL/MariaDB it takes one
// AUTO_INCREMENT value; on SQLite it holds the write lock for the
// insert's duration and costs nothing else (the AUTOINCREMENT counter
// rolls back with it). Call it from something that bounds its rate.
func (db *DB) ProbeWritable(ctx context.Context) error {
	var errs []error
	for _, t := range db.writtenTables() {
		began, err := db.probe(ctx, t)
		if !began {
			return fmt.Errorf("%s database: %w", db.Dialect, err)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("table %s: %w", t.name, err))
		}
	}
	return errors.Join(errs...)
}

// probe runs t's probe; began is false when no transaction could start
// (the database, not the table, is the problem).
func (db *DB) probe(ctx context.Context, t writtenTable) (began bool, err error) {
	q, err := t.probe(db)
	if err != nil {
		return true, fmt.Errorf("build probe insert: %w", err)
	}
	tx, err := db.SQL.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("begin transaction: %w", err)
	}
	if _, err := tx.ExecContext(ctx, q.Query, q.Args...); err != nil {
		// A cancelled context has rolled the transaction back already.
		if rerr := tx.Rollback(); rerr != nil && !errors.Is(rerr, sql.ErrTxDone) {
			err = errors.Join(err, rerr)
		}
		return true, fmt.Errorf("probe insert: %w", err)
	}
	if err := tx.Rollback(); err != nil {
		return true, fmt.Errorf("roll back probe insert: %w", err)
	}
	return true, nil
}

// AbsentTables names the tables the router writes that do not exist (yet):
// `serve` creates them when it starts, so before its first start they are
// expected, and later they are a problem only for a router already
// running. It only reads the catalog.
func (db *DB) AbsentTables(ctx context.Context) ([]string, error) {
	var query string
	switch db.Dialect {
	case Postgres:
		// The table the search_path resolves, as the router's inserts do.
		query = `SELECT count(*) FROM (SELECT to_regclass($1) AS t) AS r WHERE r.t IS NOT NULL`
	case MySQL:
		query = `SELECT count(*) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = ?`
	default:
		query = `SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?`
	}
	var absent []string
	for _, t := range db.writtenTables() {
		arg := t.name
		if db.Dialect == Postgres {
			arg = quoteStandard(t.name)
		}
		var n int
		if err := db.SQL.QueryRowContext(ctx, query, arg).Scan(&n); err != nil {
			return nil, fmt.Errorf("look up table %s: %w", t.name, err)
		}
		if n == 0 {
			absent = append(absent, t.name)
		}
	}
	return absent, nil
}
