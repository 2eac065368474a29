package store

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"

	wmsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
)

// SQLiteSchema is a watermill-sql schema adapter for SQLite, which
// watermill-sql does not ship. It keeps the layout of the MySQL one, so the
// tables look the same on every backend:
//
//	CREATE TABLE "watermill_<topic>" (
//		"offset"     INTEGER PRIMARY KEY AUTOINCREMENT,
//		"uuid"       TEXT NOT NULL UNIQUE,
//		"created_at" TIMESTAMP NOT NULL DEFAULT (UTC, millisecond precision),
//		"payload"    BLOB,
//		"metadata"   TEXT -- JSON
//	)
//
// AUTOINCREMENT matters: without it SQLite may hand out the offset of a
// deleted last row again, and a consumer group that had already acked that
// offset would skip the new message. Offsets also appear in commit order,
// which the offset-based SELECT relies on: SQLite has one writer at a time,
// so a row with a higher offset can never commit before one with a lower
// offset becomes visible (PostgreSQL needs its transaction_id column for
// exactly this).
//
// The adapter needs the connection options Open sets for SQLite, above all
// _txlock=immediate; see SQLiteOffsetsAdapter.
type SQLiteSchema struct {
	// SubscribeBatchSize is how many messages one SELECT reads; 0 means 100,
	// watermill-sql's default. A subscriber holds the database's write lock
	// while it delivers a batch, so smaller batches let writers in sooner.
	SubscribeBatchSize int
}

// MessagesTable returns the quoted name of the topic's messages table.
func (s SQLiteSchema) MessagesTable(topic string) string {
	return quoteStandard(messagesTableName(topic))
}

// SchemaInitializingQueries creates the messages table if it does not exist.
func (s SQLiteSchema) SchemaInitializingQueries(params wmsql.SchemaInitializingQueriesParams) ([]wmsql.Query, error) {
	return []wmsql.Query{{Query: `CREATE TABLE IF NOT EXISTS ` + s.MessagesTable(params.Topic) + ` (
		"offset" INTEGER PRIMARY KEY AUTOINCREMENT,
		"uuid" TEXT NOT NULL UNIQUE,
		"created_at" TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
		"payload" BLOB,
		"metadata" TEXT
	)`}}, nil
}

// RequiresTransaction makes schema initialisation run in one transaction, so
// the messages and offsets tables of a topic appear together.
func (s SQLiteSchema) RequiresTransaction() bool { return true }

// InsertQuery inserts the messages in order in one statement; a uuid already
// in the table, or repeated within the statement, is skipped without error.
func (s SQLiteSchema) InsertQuery(params wmsql.InsertQueryParams) (wmsql.Query, error) {
	if len(params.Msgs) == 0 {
		return wmsql.Query{}, errNoMessages
	}
	args := make([]any, 0, 3*len(params.Msgs))
	for _, msg := range params.Msgs {
		metadata, err := json.Marshal(msg.Metadata)
		if err != nil {
			return wmsql.Query{}, fmt.Errorf("marshal metadata of message %s: %w", msg.UUID, err)
		}
		// Metadata is stored as text so the column reads as JSON in the
		// sqlite3 shell; payloads are bytes.
		args = append(args, msg.UUID, []byte(msg.Payload), string(metadata))
	}
	placeholders := strings.TrimSuffix(strings.Repeat("(?,?,?),", len(params.Msgs)), ",")
	return wmsql.Query{
		Query: `INSERT INTO ` + s.MessagesTable(params.Topic) + ` ("uuid", "payload", "metadata") VALUES ` +
			placeholders + ` ON CONFLICT ("uuid") DO NOTHING`,
		Args: args,
	}, nil
}

func (s SQLiteSchema) batchSize() int {
	if s.SubscribeBatchSize <= 0 {
		return 100
	}
	return s.SubscribeBatchSize
}

// SelectQuery returns the next messages after the consumer group's acked
// offset, oldest first.
func (s SQLiteSchema) SelectQuery(params wmsql.SelectQueryParams) (wmsql.Query, error) {
	next, err := params.OffsetsAdapter.NextOffsetQuery(wmsql.NextOffsetQueryParams{
		Topic:         params.Topic,
		ConsumerGroup: params.ConsumerGroup,
	})
	if err != nil {
		return wmsql.Query{}, err
	}
	return wmsql.Query{
		Query: `SELECT "offset", "uuid", "payload", "metadata" FROM ` + s.MessagesTable(params.Topic) +
			` WHERE "offset" > (` + next.Query + `) ORDER BY "offset" ASC LIMIT ` + fmt.Sprint(s.batchSize()),
		Args: next.Args,
	}, nil
}

// UnmarshalMessage turns a row of SelectQuery into a message.
func (s SQLiteSchema) UnmarshalMessage(params wmsql.UnmarshalMessageParams) (wmsql.Row, error) {
	var r wmsql.Row
	if err := params.Row.Scan(&r.Offset, &r.UUID, &r.Payload, &r.Metadata); err != nil {
		return wmsql.Row{}, fmt.Errorf("scan message row: %w", err)
	}
	msg := message.NewMessage(string(r.UUID), r.Payload)
	if r.Metadata != nil {
		if err := json.Unmarshal(r.Metadata, &msg.Metadata); err != nil {
			return wmsql.Row{}, fmt.Errorf("unmarshal metadata of message %s: %w", msg.UUID, err)
		}
	}
	r.Msg = msg
	return r, nil
}

// SubscribeIsolationLevel is serializable, which is what every SQLite
// transaction is; the driver starts it with BEGIN IMMEDIATE (see
// SQLiteOffsetsAdapter).
func (s SQLiteSchema) SubscribeIsolationLevel() sql.IsolationLevel {
	return sql.LevelSerializable
}

// SQLiteOffsetsAdapter is a watermill-sql offsets adapter for SQLite. It keeps
// a consumer group's progress in "watermill_offsets_<topic>" with the MySQL
// adapter's columns: consumer_group (primary key), offset_acked and
// offset_consumed.
//
// # Why concurrent subscribers of one consumer group are safe without FOR UPDATE
//
// A watermill-sql subscriber reads the group's acked offset, selects the
// messages after it, delivers them and writes the new offset, all in one
// transaction. Two subscribers of a group must not both read the same acked
// offset, or both would deliver the same messages; PostgreSQL and MySQL
// prevent that by locking the offsets row with SELECT … FOR UPDATE.
//
// SQLite has no row locks and no FOR UPDATE, but it has a single database
// write lock, and Open configures every connection with _txlock=immediate,
// so each transaction (BEGIN IMMEDIATE) takes that lock before its first
// statement. While one subscriber's transaction is open, a second one's BEGIN
// waits (busy_timeout) until the first commits or rolls back. Its snapshot
// therefore starts after that commit and includes the offset the first one
// wrote, so it continues behind it and never redelivers what was acked. This
// is FOR UPDATE on the whole database rather than on one row, and it holds
// between processes as well, since the lock lives in the database file.
//
// ConsumedMessageQuery is a second safeguard: it writes before a message is
// handed out, so even a transaction begun without the lock (deferred) could
// not deliver a message another subscriber took; its write would fail with
// SQLITE_BUSY_SNAPSHOT instead. With the lock taken at BEGIN, subscribers
// wait rather than fail and retry.
//
// The price is that while a subscriber waits for its handler to ack a
// message, no one else can write to the database: other subscribers (of any
// topic), publishers and any other writer queue behind it, for up to
// busy_timeout (10 s). Hence DB.SubscriberConfig's 5 s ack deadline on
// SQLite, after which an unacked message is handed back and the lock
// released. A handler that writes to the same SQLite database must use the
// transaction in its message context (wmsql.TxFromContext), not a new
// connection, or it waits for its own lock. Readers are not blocked (WAL).
// SQLite's lock is not fair either: a subscriber draining a backlog may keep
// writers waiting until the backlog is done.
//
// Delivery is at least once: a subscriber that stops between a handler's ack
// and the commit of the new offset (a crash, or Close at that moment) leaves
// the offset where it was, and the message is delivered again.
type SQLiteOffsetsAdapter struct{}

// MessagesOffsetsTable returns the quoted name of the topic's offsets table.
func (a SQLiteOffsetsAdapter) MessagesOffsetsTable(topic string) string {
	return quoteStandard(offsetsTableName(topic))
}

// SchemaInitializingQueries creates the offsets table if it does not exist.
func (a SQLiteOffsetsAdapter) SchemaInitializingQueries(params wmsql.OffsetsSchemaInitializingQueriesParams) ([]wmsql.Query, error) {
	return []wmsql.Query{{Query: `CREATE TABLE IF NOT EXISTS ` + a.MessagesOffsetsTable(params.Topic) + ` (
		"consumer_group" TEXT NOT NULL PRIMARY KEY,
		"offset_acked" INTEGER,
		"offset_consumed" INTEGER NOT NULL
	)`}}, nil
}

// NextOffsetQuery returns the group's acked offset, 0 before its first ack.
func (a SQLiteOffsetsAdapter) NextOffsetQuery(params wmsql.NextOffsetQueryParams) (wmsql.Query, error) {
	return wmsql.Query{
		Query: `SELECT COALESCE((SELECT "offset_acked" FROM ` + a.MessagesOffsetsTable(params.Topic) +
			` WHERE "consumer_group" = ?), 0)`,
		Args: []any{params.ConsumerGroup},
	}, nil
}

// AckMessageQuery stores the offset of the last message acked in a batch.
func (a SQLiteOffsetsAdapter) AckMessageQuery(params wmsql.AckMessageQueryParams) (wmsql.Query, error) {
	return wmsql.Query{
		Query: `INSERT INTO ` + a.MessagesOffsetsTable(params.Topic) +
			` ("consumer_group", "offset_acked", "offset_consumed") VALUES (?, ?, ?)
			ON CONFLICT ("consumer_group") DO UPDATE SET
				"offset_acked" = excluded."offset_acked",
				"offset_consumed" = excluded."offset_consumed"`,
		Args: []any{params.ConsumerGroup, params.LastRow.Offset, params.LastRow.Offset},
	}, nil
}

// ConsumedMessageQuery records the offset being delivered, as the MySQL
// adapter does, before the message is handed out. Being a write, it is the
// second safeguard described on SQLiteOffsetsAdapter; it also shows an
// operator where a group's in-flight message is.
func (a SQLiteOffsetsAdapter) ConsumedMessageQuery(params wmsql.ConsumedMessageQueryParams) (wmsql.Query, error) {
	return wmsql.Query{
		Query: `INSERT INTO ` + a.MessagesOffsetsTable(params.Topic) +
			` ("consumer_group", "offset_consumed") VALUES (?, ?)
			ON CONFLICT ("consumer_group") DO UPDATE SET "offset_consumed" = excluded."offset_consumed"`,
		Args: []any{params.ConsumerGroup, params.Row.Offset},
	}, nil
}

// BeforeSubscribingQueries is empty: unlike PostgreSQL's FOR UPDATE, the
// database lock needs no row to exist before the first ack.
func (a SQLiteOffsetsAdapter) BeforeSubscribingQueries(wmsql.BeforeSubscribingQueriesParams) ([]wmsql.Query, error) {
	return nil, nil
}
