package store_test

import (
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/tests"

	"github.com/social/user-events-router/store"
	"github.com/social/user-events-router/store/storetest"
)

// TestServerPubSub runs watermill's universal Pub/Sub suite against our
// PostgreSQL and MySQL schema adapters (watermill-sql's, with the unique uuid
// index and the insert-if-absent), with the features watermill-sql claims
// for its own. It checks that our changes keep any watermill-sql subscriber
// working. It runs in the suite's short mode: watermill-sql runs the full
// counts against its unchanged adapters, and our changes do not depend on
// volume.
func TestServerPubSub(t *testing.T) {
	t.Parallel()
	for _, d := range []store.Dialect{store.Postgres, store.MySQL} {
		t.Run(string(d), func(t *testing.T) {
			t.Parallel()
			databaseURL := storetest.URL(t, d) // skips when d's server is not configured
			features := tests.Features{
				ConsumerGroups:      true,
				ExactlyOnceDelivery: true,
				GuaranteedOrder:     true,
				Persistent:          true,
				ForceShort:          true,
			}
			tests.TestPubSub(t, features,
				func(t *testing.T) (message.Publisher, message.Subscriber) {
					return newServerPubSub(t, databaseURL, "test")
				},
				func(t *testing.T, consumerGroup string) (message.Publisher, message.Subscriber) {
					return newServerPubSub(t, databaseURL, consumerGroup)
				},
			)
		})
	}
}

func newServerPubSub(t *testing.T, databaseURL, consumerGroup string) (message.Publisher, message.Subscriber) {
	t.Helper()
	db, err := store.Open(t.Context(), databaseURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	pub, err := db.Publisher(watermill.NopLogger{})
	if err != nil {
		t.Fatal(err)
	}
	config := db.SubscriberConfig(consumerGroup)
	config.PollInterval = 10 * time.Millisecond
	config.ResendInterval = 5 * time.Millisecond
	// A MySQL subscriber keeps its gap locks while it offers a message, so a
	// publish into the same table waits until the message is taken or the
	// ack deadline passes. TestMessageCtx publishes its second message
	// before it reads the first, and then waits out the 30 s default about
	// half the time, with plain watermill-sql adapters too. A short deadline
	// keeps that to seconds.
	ackDeadline := 2 * time.Second
	config.AckDeadline = &ackDeadline
	sub, err := wmsql.NewSubscriber(wmsql.BeginnerFromStdSQL(db.SQL), config, watermill.NopLogger{})
	if err != nil {
		t.Fatal(err)
	}
	return pub, newClosingSubscriber(sub)
}
