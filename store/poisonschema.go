package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strings"

	"github.com/go-sql-driver/mysql"
)

// The poison queue is filtered, ordered and counted in SQL. Its fields live
// in the metadata JSON (watermill-sql's standard columns must stay as they
// are), so the poison table gets generated columns computed from that JSON,
// and indexes on them. Nothing writes these columns: the database derives
// them from metadata on every insert and update, so whatever writes the
// standard columns (PutPoison, a plain watermill-sql publisher) keeps them
// right, and a watermill-sql subscriber, which selects its columns by name,
// never sees them.
//
//   - PostgreSQL: STORED generated columns (PostgreSQL 12+). Expression
//     indexes alone would do for filters, but counts and GROUP BY would
//     still parse every row's JSON (0.18 s per 200,000 rows and query,
//     against 0.03 s from an index on a stored column).
//   - MySQL/MariaDB: VIRTUAL generated columns with secondary indexes; both
//     support them (MariaDB has no functional indexes).
//   - SQLite: VIRTUAL generated columns (3.31+), indexed.
//
// Indexed values are cut to maxIndexedChars characters (index entries have
// a size limit: 3072 bytes on InnoDB, ~2700 on PostgreSQL); filters compare
// the full value as well (see poisonQuery.equal).

// maxIndexedChars is how much of an outside value (subject, correlation id)
// an indexed column keeps.
const maxIndexedChars = 200

// poisonColumn is one generated column of the poison table.
type poisonColumn struct {
	name string
	// key is the metadata key it is computed from.
	key string
	// indexed columns get an index (column, poison_last_failure, offset),
	// which serves an equality filter together with the list's order.
	indexed bool
}

// Generated column names.
const (
	pcLastFailure   = "poison_last_failure"
	pcClass         = "poison_class"
	pcSubject       = "poison_subject"
	pcIngress       = "poison_ingress"
	pcCorrelationID = "poison_correlation_id"
	pcUserID        = "poison_user_id"
	pcReasonKind    = "poison_reason_kind"
	pcReason        = "poison_reason"
)

// poisonColumns are the poison table's generated columns. poison_subject is
// DisplaySubject; poison_last_failure is the list's order (the text of
// last_failure_at, "" when absent); poison_reason is for text search and has
// no index (no B-tree serves "contains").
var poisonColumns = []poisonColumn{
	{name: pcLastFailure, key: pmLastFailure},
	{name: pcClass, key: pmClass, indexed: true},
	{name: pcSubject, key: pmSubject, indexed: true},
	{name: pcIngress, key: pmIngress, indexed: true},
	{name: pcCorrelationID, key: pmCorrelationID, indexed: true},
	{name: pcUserID, key: pmUserID, indexed: true},
	{name: pcReasonKind, key: pmReasonKind, indexed: true},
	{name: pcReason, key: pmReason},
}

// poisonIndexName names the index of a column. PostgreSQL and SQLite index
// names share the schema's namespace, so the name carries the table's.
func poisonIndexName(column string) string {
	return messagesTableName(PoisonTopic) + "_" + strings.TrimPrefix(column, "poison_") + "_idx"
}

// poisonIndexes maps each index name to its columns. On PostgreSQL the
// table's primary key is watermill-sql's (transaction_id, offset), which
// cannot serve the bulk walks' "offset > ? ORDER BY offset" (each batch
// would scan the whole table: 200,000 entries took 36 s to delete), so
// offset gets an index of its own there; on MySQL and SQLite it is the
// primary key.
func (db *DB) poisonIndexes() map[string][]string {
	idx := map[string][]string{poisonIndexName(pcLastFailure): {pcLastFailure, "offset"}}
	if db.Dialect == Postgres {
		idx[poisonIndexName("offset")] = []string{"offset"}
	}
	for _, c := range poisonColumns {
		if c.indexed {
			idx[poisonIndexName(c.name)] = []string{c.name, pcLastFailure, "offset"}
		}
	}
	return idx
}

// metadataField is the SQL expression for a metadata key's value (NULL
// when absent).
func (db *DB) metadataField(key string) string {
	switch db.Dialect {
	case Postgres:
		// PostgreSQL refuses to turn any JSON holding "\u0000" into text,
		// even to read another key, and a generated column that fails
		// fails the insert. PutPoison never writes one; rows from before
		// it did may hold one, so the escape is made a space first.
		return `(replace(metadata::text, E'\\u0000', E'\\u0020')::json ->> '` + key + `')`
	case MySQL:
		return "JSON_UNQUOTE(JSON_EXTRACT(`metadata`, '$." + key + "'))"
	default:
		// json_extract fails on text that is not JSON; such a row is
		// not the router's, and must not make the table unwritable.
		return `(CASE WHEN json_valid("metadata") THEN json_extract("metadata", '$.` + key + `') END)`
	}
}

// cut is expr cut to n characters.
func (db *DB) cut(expr string, n int) string {
	if db.Dialect == SQLite {
		return fmt.Sprintf("substr(%s, 1, %d)", expr, n)
	}
	return fmt.Sprintf("LEFT(%s, %d)", expr, n)
}

// columnExpr is the generation expression of c.
func (db *DB) columnExpr(c poisonColumn) string {
	field := db.metadataField(c.key)
	switch c.name {
	case pcLastFailure:
		return "COALESCE(" + db.cut(field, 40) + ", '')"
	case pcReason:
		return field
	case pcSubject:
		wouldBe := "'" + subjectPrefix + "' || NULLIF(" + db.metadataField(pmAction) + ", '')"
		if db.Dialect == MySQL {
			wouldBe = "CONCAT('" + subjectPrefix + "', NULLIF(" + db.metadataField(pmAction) + ", ''))"
		}
		return db.cut("COALESCE(NULLIF("+field+", ''), "+wouldBe+", '"+NoSubject+"')", maxIndexedChars)
	}
	return db.cut(field, maxIndexedChars)
}

// columnDDL is the column definition for ALTER TABLE … ADD COLUMN.
func (db *DB) columnDDL(c poisonColumn) string {
	expr := db.columnExpr(c)
	switch db.Dialect {
	case Postgres:
		return fmt.Sprintf(`%s text GENERATED ALWAYS AS (%s) STORED`, db.quote(c.name), expr)
	case MySQL:
		typ := fmt.Sprintf("VARCHAR(%d)", maxIndexedChars)
		switch c.name {
		case pcLastFailure:
			typ = "VARCHAR(40)"
		case pcReason:
			typ = "TEXT"
		}
		return fmt.Sprintf("%s %s CHARACTER SET utf8mb4 COLLATE utf8mb4_bin GENERATED ALWAYS AS (%s) VIRTUAL", db.quote(c.name), typ, expr)
	default:
		return fmt.Sprintf(`%s TEXT GENERATED ALWAYS AS (%s) VIRTUAL`, db.quote(c.name), expr)
	}
}

func (db *DB) indexColumns(columns []string) string {
	quoted := make([]string, len(columns))
	for i, c := range columns {
		quoted[i] = db.quote(c)
	}
	return strings.Join(quoted, ", ")
}

// ensurePoisonColumns adds the generated columns and their indexes that the
// poison table lacks. When it has them all (every start but the first), it
// only reads the catalog: no DDL, no table lock. Adding them is safe on a
// table that holds entries and while other processes run InitSchema too:
// PostgreSQL and SQLite do it in one transaction, behind an advisory lock
// or the database's write lock; on MySQL, whose DDL is not transactional, a
// process that loses the race sees "duplicate column/key" and checks again.
func (db *DB) ensurePoisonColumns(ctx context.Context) error {
	cols, idx, err := db.missingPoisonSchema(ctx, db.SQL)
	if err != nil || len(cols)+len(idx) == 0 {
		return err
	}
	switch db.Dialect {
	case MySQL:
		return db.addPoisonSchemaMySQL(ctx, cols, idx)
	default:
		return db.addPoisonSchemaInTx(ctx)
	}
}

// ErrPoisonSchemaMissing is returned by CheckPoisonSchema when the poison
// table, or a column or index its queries need, does not exist yet.
var ErrPoisonSchemaMissing = errors.New("the poison table is not ready")

// CheckPoisonSchema reports, reading only the catalog, whether the poison
// table has everything its queries use; read-only tools call it instead of
// InitSchema, which would create or alter the table.
func (db *DB) CheckPoisonSchema(ctx context.Context) error {
	cols, idx, err := db.missingPoisonSchema(ctx, db.SQL)
	if err != nil {
		return err
	}
	if len(cols) == len(poisonColumns) {
		return fmt.Errorf("%w: table %s does not exist, or predates the poison_* columns; start the router (serve) once on this database, which creates or upgrades it",
			ErrPoisonSchemaMissing, messagesTableName(PoisonTopic))
	}
	if len(cols)+len(idx) > 0 {
		return fmt.Errorf("%w: table %s lacks %d column(s) and %d index(es) its queries use; start the router (serve) once on this database, which adds them",
			ErrPoisonSchemaMissing, messagesTableName(PoisonTopic), len(cols), len(idx))
	}
	return nil
}

type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// missingPoisonSchema lists the generated columns and indexes the poison
// table does not have yet.
func (db *DB) missingPoisonSchema(ctx context.Context, q querier) (columns []poisonColumn, indexes []string, err error) {
	table := messagesTableName(PoisonTopic)
	var colQuery, idxQuery string
	switch db.Dialect {
	case Postgres:
		colQuery = `SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = $1`
		idxQuery = `SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() AND tablename = $1`
	case MySQL:
		colQuery = `SELECT column_name FROM information_schema.columns WHERE table_schema = DATABASE() AND table_name = ?`
		idxQuery = `SELECT DISTINCT index_name FROM information_schema.statistics WHERE table_schema = DATABASE() AND table_name = ?`
	default:
		colQuery = `SELECT name FROM pragma_table_xinfo(?)`
		idxQuery = `SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name = ?`
	}
	haveCols, err := queryNames(ctx, q, colQuery, table)
	if err != nil {
		return nil, nil, fmt.Errorf("list columns of %s: %w", table, err)
	}
	haveIdx, err := queryNames(ctx, q, idxQuery, table)
	if err != nil {
		return nil, nil, fmt.Errorf("list indexes of %s: %w", table, err)
	}
	for _, c := range poisonColumns {
		if !slices.Contains(haveCols, c.name) {
			columns = append(columns, c)
		}
	}
	for name := range db.poisonIndexes() {
		if !slices.Contains(haveIdx, name) {
			indexes = append(indexes, name)
		}
	}
	slices.Sort(indexes)
	return columns, indexes, nil
}

func queryNames(ctx context.Context, q querier, query string, args ...any) ([]string, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var names []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return nil, err
		}
		names = append(names, name)
	}
	return names, rows.Err()
}

// poisonSchemaLock is the PostgreSQL advisory lock that serialises adding
// the poison table's columns.
func poisonSchemaLock() int64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte("user-events-router poison columns " + messagesTableName(PoisonTopic)))
	return int64(h.Sum64() >> 1)
}

// addPoisonSchemaInTx adds what is missing in one transaction (PostgreSQL,
// SQLite), checking again once it holds the lock.
func (db *DB) addPoisonSchemaInTx(ctx context.Context) error {
	tx, err := db.SQL.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("poison columns: begin: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it is a no-op
	if db.Dialect == Postgres {
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, poisonSchemaLock()); err != nil {
			return fmt.Errorf("poison columns: lock: %w", err)
		}
	}
	cols, idx, err := db.missingPoisonSchema(ctx, tx)
	if err != nil {
		return err
	}
	table := db.poisonTable()
	var ddl []string
	if db.Dialect == Postgres && len(cols) > 0 {
		// One statement, so the table is rewritten once.
		adds := make([]string, len(cols))
		for i, c := range cols {
			adds[i] = "ADD COLUMN IF NOT EXISTS " + db.columnDDL(c)
		}
		ddl = append(ddl, "ALTER TABLE "+table+" "+strings.Join(adds, ", "))
	} else {
		for _, c := range cols {
			ddl = append(ddl, "ALTER TABLE "+table+" ADD COLUMN "+db.columnDDL(c))
		}
	}
	all := db.poisonIndexes()
	for _, name := range idx {
		ddl = append(ddl, "CREATE INDEX IF NOT EXISTS "+db.quote(name)+" ON "+table+" ("+db.indexColumns(all[name])+")")
	}
	for _, q := range ddl {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("poison columns: %s: %w", firstLine(q), err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("poison columns: commit: %w", err)
	}
	return nil
}

// addPoisonSchemaMySQL adds what is missing in one ALTER TABLE (one table
// rebuild at most; adding a virtual column is instant, its index is built
// online).
func (db *DB) addPoisonSchemaMySQL(ctx context.Context, cols []poisonColumn, idx []string) error {
	for attempt := 0; ; attempt++ {
		var adds []string
		for _, c := range cols {
			adds = append(adds, "ADD COLUMN "+db.columnDDL(c))
		}
		all := db.poisonIndexes()
		for _, name := range idx {
			adds = append(adds, "ADD INDEX "+db.quote(name)+" ("+db.indexColumns(all[name])+")")
		}
		_, err := db.SQL.ExecContext(ctx, "ALTER TABLE "+db.poisonTable()+" "+strings.Join(adds, ", "))
		var myErr *mysql.MySQLError
		switch {
		case err == nil:
			return nil
		case attempt == 0 && errors.As(err, &myErr) && (myErr.Number == 1060 || myErr.Number == 1061):
			// ER_DUP_FIELDNAME, ER_DUP_KEYNAME: another process added some.
			if cols, idx, err = db.missingPoisonSchema(ctx, db.SQL); err != nil || len(cols)+len(idx) == 0 {
				return err
			}
		default:
			return fmt.Errorf("poison columns: alter table: %w", err)
		}
	}
}
