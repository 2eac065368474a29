package store

import (
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
)

// sqliteAckDeadline bounds how long an SQLite subscriber waits for a message
// to be acked. It holds the database write lock meanwhile (see
// SQLiteOffsetsAdapter), so every other writer, and every subscriber of any
// topic, waits too: a message nobody reads (say, on the second of two topics
// a consumer reads in turn) would stall them all for watermill-sql's default
// 30 s. After the deadline the message is nacked, the lock released, and the
// message delivered again later. It is well below busy_timeout (10 s), so a
// writer queued behind a stalled delivery gets the lock before giving up.
const sqliteAckDeadline = 5 * time.Second

// Publisher returns a watermill-sql publisher that inserts into this
// database with the dialect's schema adapter. It does not create tables
// (AutoInitializeSchema is off, as creating a table inside a caller's
// transaction would commit it): call InitSchema first.
//
// To publish inside a transaction of your own, pass the *sql.Tx to
// wmsql.NewPublisher with the same SchemaAdapter instead.
func (db *DB) Publisher(logger watermill.LoggerAdapter) (*wmsql.Publisher, error) {
	return wmsql.NewPublisher(wmsql.BeginnerFromStdSQL(db.SQL), wmsql.PublisherConfig{
		SchemaAdapter: db.SchemaAdapter(),
	}, logger)
}

// SubscriberConfig returns the watermill-sql subscriber configuration
// Subscriber uses, for callers that need to tune it (poll interval, ack
// deadline) before calling wmsql.NewSubscriber. Tables are not created on
// Subscribe: call InitSchema first.
//
// On SQLite the ack deadline is 5 s rather than watermill-sql's 30 s, because
// a subscriber waiting for an ack blocks every writer of the database; a
// handler that needs longer must raise AckDeadline (and should not run on
// SQLite).
func (db *DB) SubscriberConfig(consumerGroup string) wmsql.SubscriberConfig {
	config := wmsql.SubscriberConfig{
		ConsumerGroup:  consumerGroup,
		SchemaAdapter:  db.SchemaAdapter(),
		OffsetsAdapter: db.OffsetsAdapter(),
	}
	if db.Dialect == SQLite {
		deadline := sqliteAckDeadline
		config.AckDeadline = &deadline
	}
	return config
}

// Subscriber returns a watermill-sql subscriber that reads this database's
// tables as the given consumer group, configured by SubscriberConfig (1 s
// poll interval; 30 s ack deadline, 5 s on SQLite). Each consumer group gets every message;
// subscribers sharing a group share the work.
func (db *DB) Subscriber(consumerGroup string, logger watermill.LoggerAdapter) (*wmsql.Subscriber, error) {
	return wmsql.NewSubscriber(wmsql.BeginnerFromStdSQL(db.SQL), db.SubscriberConfig(consumerGroup), logger)
}
