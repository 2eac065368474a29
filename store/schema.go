package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"hash/fnv"
	"regexp"
	"strings"

	wmsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/go-sql-driver/mysql"
)

// errNoMessages is returned for an insert without messages, which would
// otherwise reach the database as a syntax error.
var errNoMessages = errors.New("insert query needs at least one message")

// payloadType picks the payload column type for a topic. The commands table
// keeps watermill-sql's default JSON type (its payload is always a JSON
// command, and the monolith may query it with SQL). Every other table,
// the poison queue above all, stores payloads as bytes: a poison entry keeps
// the original event byte for byte, and that may well be malformed JSON, which
// a JSON column would reject (PostgreSQL) or rewrite (MySQL).
func payloadType(binaryType string) func(topic string) string {
	return func(topic string) string {
		if topic == CommandsTopic {
			return "JSON"
		}
		return binaryType
	}
}

// postgresSchema is watermill-sql's PostgreSQL schema with a unique index on
// uuid and an insert that skips uuids already present.
type postgresSchema struct {
	wmsql.DefaultPostgreSQLSchema
}

func newPostgresSchema() postgresSchema {
	return postgresSchema{wmsql.DefaultPostgreSQLSchema{
		GeneratePayloadType: payloadType("BYTEA"),
	}}
}

// SchemaInitializingQueries adds the unique uuid index to the standard table.
// The index is created with IF NOT EXISTS, so a table made earlier by plain
// watermill-sql gets it too; the queries run in one transaction behind
// watermill-sql's advisory lock (RequiresTransaction is inherited).
func (s postgresSchema) SchemaInitializingQueries(params wmsql.SchemaInitializingQueriesParams) ([]wmsql.Query, error) {
	queries, err := s.DefaultPostgreSQLSchema.SchemaInitializingQueries(params)
	if err != nil {
		return nil, err
	}
	index := wmsql.Query{Query: `CREATE UNIQUE INDEX IF NOT EXISTS ` +
		quoteStandard(postgresUUIDIndexName(params.Topic)) +
		` ON ` + s.MessagesTable(params.Topic) + ` ("uuid")`}
	return append(queries, index), nil
}

// InsertQuery is watermill-sql's insert, made a no-op for uuids already in
// the table (including a uuid repeated within one multi-message insert).
func (s postgresSchema) InsertQuery(params wmsql.InsertQueryParams) (wmsql.Query, error) {
	if len(params.Msgs) == 0 {
		return wmsql.Query{}, errNoMessages
	}
	q, err := s.DefaultPostgreSQLSchema.InsertQuery(params)
	if err != nil {
		return wmsql.Query{}, err
	}
	q.Query += ` ON CONFLICT ("uuid") DO NOTHING`
	return q, nil
}

// postgresMaxIdentifier is PostgreSQL's NAMEDATALEN-1: longer names are
// silently truncated, so two long names could collide.
const postgresMaxIdentifier = 63

// postgresUUIDIndexName names the uuid index. Index names share the schema's
// namespace with tables, so the name carries the topic; when that would be
// truncated, a hash of the topic keeps it unique.
func postgresUUIDIndexName(topic string) string {
	name := "watermill_" + topic + "_uuid_key"
	if len(name) <= postgresMaxIdentifier {
		return name
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(topic))
	suffix := fmt.Sprintf("_%08x_uuid_key", h.Sum32())
	return name[:postgresMaxIdentifier-len(suffix)] + suffix
}

// quoteStandard quotes an identifier the SQL-standard way, as PostgreSQL and
// SQLite expect.
func quoteStandard(name string) string {
	return `"` + strings.ReplaceAll(name, `"`, `""`) + `"`
}

// mysqlSchema is watermill-sql's MySQL schema with a unique key on uuid and
// an insert that skips uuids already present.
type mysqlSchema struct {
	wmsql.DefaultMySQLSchema
}

func newMySQLSchema() mysqlSchema {
	return mysqlSchema{wmsql.DefaultMySQLSchema{
		GeneratePayloadType: payloadType("LONGBLOB"),
	}}
}

// SchemaInitializingQueries creates the table with watermill-sql's standard
// columns and the unique key in one statement. MySQL, unlike MariaDB and
// PostgreSQL, has no CREATE INDEX IF NOT EXISTS, so declaring the key with
// the table is the only way to add it atomically and idempotently; InitSchema
// adds it to a table that plain watermill-sql created first.
func (s mysqlSchema) SchemaInitializingQueries(params wmsql.SchemaInitializingQueriesParams) ([]wmsql.Query, error) {
	create := strings.Join([]string{
		"CREATE TABLE IF NOT EXISTS " + s.MessagesTable(params.Topic) + " (",
		"`offset` BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,",
		"`uuid` VARCHAR(36) NOT NULL,",
		"`created_at` TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,",
		"`payload` " + s.PayloadColumnType(params.Topic) + " DEFAULT NULL,",
		"`metadata` JSON DEFAULT NULL,",
		"UNIQUE KEY " + mysqlUUIDKey + " (`uuid`)",
		")",
	}, "\n")
	return []wmsql.Query{{Query: create}}, nil
}

// mysqlUUIDKey is the name of the unique key on uuid; MySQL key names are per
// table, so it need not carry the topic.
const mysqlUUIDKey = "`uuid`"

// InsertQuery is watermill-sql's insert, made a no-op for uuids already in
// the table. ON DUPLICATE KEY UPDATE with a self-assignment changes nothing;
// unlike INSERT IGNORE it does not also turn other errors (a bad value, a
// too-long uuid) into warnings.
func (s mysqlSchema) InsertQuery(params wmsql.InsertQueryParams) (wmsql.Query, error) {
	if len(params.Msgs) == 0 {
		return wmsql.Query{}, errNoMessages
	}
	q, err := s.DefaultMySQLSchema.InsertQuery(params)
	if err != nil {
		return wmsql.Query{}, err
	}
	q.Query += " ON DUPLICATE KEY UPDATE `uuid` = `uuid`"
	return q, nil
}

// mysqlMaxIdentifier is MySQL's limit for table names.
const mysqlMaxIdentifier = 64

// SchemaAdapter returns the watermill-sql schema adapter for this dialect:
// tables watermill_<topic> with watermill-sql's standard columns, a unique
// uuid, and an insert that ignores uuids already stored.
func (db *DB) SchemaAdapter() wmsql.SchemaAdapter {
	switch db.Dialect {
	case Postgres:
		return newPostgresSchema()
	case MySQL:
		return newMySQLSchema()
	default:
		return SQLiteSchema{}
	}
}

// OffsetsAdapter returns the offsets adapter that matches SchemaAdapter:
// watermill-sql's own for PostgreSQL and MySQL, SQLiteOffsetsAdapter for
// SQLite.
func (db *DB) OffsetsAdapter() wmsql.OffsetsAdapter {
	switch db.Dialect {
	case Postgres:
		return wmsql.DefaultPostgreSQLOffsetsAdapter{}
	case MySQL:
		return wmsql.DefaultMySQLOffsetsAdapter{}
	default:
		return SQLiteOffsetsAdapter{}
	}
}

// validTopic mirrors watermill-sql's check (topics end up inside SQL
// statements), and also rejects the empty topic.
var validTopic = regexp.MustCompile(`^[A-Za-z0-9\-$:._]+$`)

// InitSchema creates, if absent, the messages and offsets tables for each
// topic, and makes sure the messages table has its unique uuid index (and,
// for PoisonTopic, the generated columns and indexes its queries use; see
// poisonColumns). With CommandsTopic it also creates the ledger
// (LedgerTable).
//
// It runs the adapters' queries the way watermill-sql does, in one
// transaction where the schema adapter asks for it (PostgreSQL, behind an
// advisory lock; SQLite, with the write lock), so several processes may run
// it at the same time.
func (db *DB) InitSchema(ctx context.Context, topics ...string) error {
	for _, topic := range topics {
		if err := db.initTopic(ctx, topic); err != nil {
			return fmt.Errorf("init schema for topic %q: %w", topic, err)
		}
		// The commands come with the ledger that decides them.
		if topic == CommandsTopic {
			if err := db.initLedger(ctx); err != nil {
				return fmt.Errorf("init schema for topic %q: %w", topic, err)
			}
		}
	}
	return nil
}

func (db *DB) initTopic(ctx context.Context, topic string) error {
	if !validTopic.MatchString(topic) {
		return fmt.Errorf("%s: %w", topic, wmsql.ErrInvalidTopicName)
	}
	if limit := db.maxIdentifier(); limit > 0 && len(offsetsTableName(topic)) > limit {
		return fmt.Errorf("topic is too long: table %s would exceed %s's %d-byte name limit",
			offsetsTableName(topic), db.Dialect, limit)
	}

	schema := db.SchemaAdapter()
	queries, err := schema.SchemaInitializingQueries(wmsql.SchemaInitializingQueriesParams{Topic: topic})
	if err != nil {
		return fmt.Errorf("build schema queries: %w", err)
	}
	offsetQueries, err := db.OffsetsAdapter().SchemaInitializingQueries(wmsql.OffsetsSchemaInitializingQueriesParams{Topic: topic})
	if err != nil {
		return fmt.Errorf("build offsets schema queries: %w", err)
	}
	queries = append(queries, offsetQueries...)

	if rt, ok := schema.(wmsql.RequiresTransaction); ok && rt.RequiresTransaction() {
		err = db.execInTx(ctx, queries)
	} else {
		err = execAll(ctx, db.SQL, queries)
	}
	if err != nil {
		return err
	}
	if err := db.ensureUUIDUnique(ctx, topic); err != nil {
		return err
	}
	if topic == PoisonTopic {
		return db.ensurePoisonColumns(ctx)
	}
	return nil
}

func (db *DB) maxIdentifier() int {
	switch db.Dialect {
	case Postgres:
		return postgresMaxIdentifier
	case MySQL:
		return mysqlMaxIdentifier
	default:
		return 0
	}
}

// messagesTableName and offsetsTableName are the unquoted table names, as
// catalogs such as information_schema list them.
func messagesTableName(topic string) string { return "watermill_" + topic }
func offsetsTableName(topic string) string  { return "watermill_offsets_" + topic }

type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

func execAll(ctx context.Context, e execer, queries []wmsql.Query) error {
	for _, q := range queries {
		if _, err := e.ExecContext(ctx, q.Query, q.Args...); err != nil {
			return fmt.Errorf("exec %q: %w", firstLine(q.Query), err)
		}
	}
	return nil
}

func (db *DB) execInTx(ctx context.Context, queries []wmsql.Query) error {
	tx, err := db.SQL.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	if err := execAll(ctx, tx, queries); err != nil {
		return errors.Join(err, tx.Rollback())
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

func firstLine(query string) string {
	query = strings.TrimSpace(query)
	if line, _, cut := strings.Cut(query, "\n"); cut {
		return line + " …"
	}
	return query
}

// ensureUUIDUnique checks that the messages table has a unique index on uuid
// alone: without it inserts of a known uuid would add rows instead of being
// no-ops, and nothing else would notice. A table created first by plain
// watermill-sql (say, by a consumer with InitializeSchema) lacks it; on
// PostgreSQL the schema queries add it, on MySQL it is added here.
func (db *DB) ensureUUIDUnique(ctx context.Context, topic string) error {
	ok, err := db.hasUUIDUnique(ctx, topic)
	if err != nil || ok {
		return err
	}
	if db.Dialect != MySQL {
		return fmt.Errorf("table %s has no unique index on uuid", messagesTableName(topic))
	}
	_, err = db.SQL.ExecContext(ctx, "ALTER TABLE "+newMySQLSchema().MessagesTable(topic)+
		" ADD UNIQUE KEY "+mysqlUUIDKey+" (`uuid`)")
	var myErr *mysql.MySQLError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &myErr) && myErr.Number == 1061: // ER_DUP_KEYNAME: another process won
		return nil
	case errors.As(err, &myErr) && myErr.Number == 1062: // ER_DUP_ENTRY
		return fmt.Errorf("table %s holds duplicate uuids, so it cannot get its unique uuid key; remove the duplicates: %w",
			messagesTableName(topic), err)
	default:
		return fmt.Errorf("add unique uuid key to %s: %w", messagesTableName(topic), err)
	}
}

func (db *DB) hasUUIDUnique(ctx context.Context, topic string) (bool, error) {
	var query string
	var args []any
	switch db.Dialect {
	case Postgres:
		// A plain (not partial, not expression) unique index whose only key
		// column is uuid, on the table the search_path resolves.
		query = `SELECT count(*) FROM pg_index i
			JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
			WHERE i.indrelid = to_regclass($1) AND i.indisunique AND i.indnkeyatts = 1
			AND i.indpred IS NULL AND i.indexprs IS NULL AND a.attname = 'uuid'`
		args = []any{newPostgresSchema().MessagesTable(topic)}
	case MySQL:
		query = `SELECT count(*) FROM (
			SELECT index_name FROM information_schema.statistics
			WHERE table_schema = DATABASE() AND table_name = ? AND non_unique = 0
			GROUP BY index_name
			HAVING count(*) = 1 AND max(column_name) = 'uuid' AND max(sub_part) IS NULL
		) AS uuid_keys`
		args = []any{messagesTableName(topic)}
	default:
		query = `SELECT count(*) FROM pragma_index_list(?) AS il
			WHERE il."unique" AND NOT il.partial
			AND (SELECT count(*) FROM pragma_index_info(il.name)) = 1
			AND (SELECT name FROM pragma_index_info(il.name)) = 'uuid'`
		args = []any{messagesTableName(topic)}
	}
	var n int
	if err := db.SQL.QueryRowContext(ctx, query, args...).Scan(&n); err != nil {
		return false, fmt.Errorf("look up unique uuid index of %s: %w", messagesTableName(topic), err)
	}
	return n > 0, nil
}
