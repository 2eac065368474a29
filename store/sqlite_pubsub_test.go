package store_test

import (
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/tests"

	"github.com/social/user-events-router/store"
)

// TestSQLitePubSub runs watermill's universal Pub/Sub suite against
// SQLiteSchema and SQLiteOffsetsAdapter, the adapters watermill-sql does not
// ship and so does not test.
//
// The features claimed, and why:
//   - ConsumerGroups: offsets are kept per consumer group.
//   - GuaranteedOrder, even with many subscribers in a group: offsets are
//     assigned and become visible in commit order (one writer at a time), and
//     a group's subscribers take turns under the database write lock, each
//     continuing after the last acked offset.
//   - Persistent: messages and offsets live in the database file.
//   - ExactlyOnceDelivery is NOT claimed: a subscriber closed (or killed)
//     between a handler's ack and the commit of the new offset redelivers
//     that message. The suite then also runs the tests it skips for
//     exactly-once Pub/Subs (TestContinueAfterSubscribeClose,
//     TestConcurrentClose) and reads with deduplication.
//   - No RestartServiceCommand: there is no server to restart.
//   - NewSubscriberReceivesOldMessages is false: a new subscriber in a
//     group continues from the group's offset.
//
// Each test gets its own database file; every constructor call opens its own
// connection pool on it, as a separate process would.
//
// Message counts: the normal run uses the suite's full counts (up to 10,000
// messages and 50 concurrent subscribers; about 15 s on an idle 2-core
// machine). Under the race detector, which makes the pure-Go SQLite several
// times slower, the full counts take over a minute, so there the suite runs
// in its short mode (ForceShort: 50 to 1,000 messages, 10 subscribers; about
// 5 s). The code paths are the same.
func TestSQLitePubSub(t *testing.T) {
	t.Parallel()
	features := tests.Features{
		ConsumerGroups:      true,
		ExactlyOnceDelivery: false,
		GuaranteedOrder:     true,
		Persistent:          true,
		ForceShort:          raceEnabled,
	}
	files := sqliteFiles{}
	tests.TestPubSub(t, features,
		func(t *testing.T) (message.Publisher, message.Subscriber) {
			return newSQLitePubSub(t, files.path(t), "test")
		},
		func(t *testing.T, consumerGroup string) (message.Publisher, message.Subscriber) {
			return newSQLitePubSub(t, files.path(t), consumerGroup)
		},
	)
}

// sqliteFiles hands every test of the suite its own database file, shared by
// all the pubsubs the test constructs (some tests check that a second pubsub
// sees the first one's messages).
type sqliteFiles struct {
	mu    sync.Mutex
	paths map[*testing.T]string
}

func (f *sqliteFiles) path(t *testing.T) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.paths == nil {
		f.paths = map[*testing.T]string{}
	}
	if p, ok := f.paths[t]; ok {
		return p
	}
	p := filepath.Join(t.TempDir(), "pubsub.db")
	f.paths[t] = p
	return p
}

func newSQLitePubSub(t *testing.T, path, consumerGroup string) (message.Publisher, message.Subscriber) {
	t.Helper()
	db, err := store.Open(t.Context(), "sqlite:"+path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })

	logger := watermill.NopLogger{}
	pub, err := db.Publisher(logger)
	if err != nil {
		t.Fatal(err)
	}
	config := db.SubscriberConfig(consumerGroup)
	// Poll more often than the 1 s default, as watermill-sql's own suite
	// does, but not more often than every 150 ms: SQLite's lock is not fair,
	// a connection waiting for it retries at most every 100 ms, and a
	// subscriber that re-took the lock sooner after a message nobody read
	// (TestTopic) would keep the others out for good.
	config.PollInterval = 150 * time.Millisecond
	config.ResendInterval = 5 * time.Millisecond
	sub, err := wmsql.NewSubscriber(wmsql.BeginnerFromStdSQL(db.SQL), config, logger)
	if err != nil {
		t.Fatal(err)
	}
	return pub, newClosingSubscriber(sub)
}
