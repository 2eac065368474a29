package store_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/social/user-events-router/store"
	"github.com/social/user-events-router/store/storetest"
)

// TestProbeWritable: the probe passes on a database the router can write,
// leaves every table as it found it, and names each table it cannot write
// (here renamed away, which a ping does not notice) until it is back.
func TestProbeWritable(t *testing.T) {
	t.Parallel()
	storetest.EachBackend(t, func(t *testing.T, d store.Dialect) {
		ctx := testContext(t)
		db := storetest.Open(t, d)
		if got, want := db.WrittenTables(), []string{"watermill_profile_sync_commands", "watermill_user_events_poison", store.LedgerTable}; !slices.Equal(got, want) {
			t.Errorf("WrittenTables() = %v, want %v", got, want)
		}
		pub, err := db.Publisher(watermill.NopLogger{})
		if err != nil {
			t.Fatal(err)
		}
		kept := message.NewMessage(watermill.NewUUID(), []byte(`{"kept":true}`))
		mustPublish(t, pub, store.CommandsTopic, kept)

		if err := db.ProbeWritable(ctx); err != nil {
			t.Fatalf("ProbeWritable on a writable database: %v", err)
		}
		if got := uuids(t, db, store.CommandsTopic); !slices.Equal(got, []string{kept.UUID}) {
			t.Errorf("commands after the probe: %v, want only %s", got, kept.UUID)
		}
		if got := uuids(t, db, store.PoisonTopic); len(got) != 0 {
			t.Errorf("the probe left poison rows behind: %v", got)
		}

		if absent, err := db.AbsentTables(ctx); err != nil || len(absent) != 0 {
			t.Errorf("AbsentTables with every table there = %v, %v", absent, err)
		}
		commands := quoteIdent(d, "watermill_profile_sync_commands")
		parked := quoteIdent(d, "parked_commands")
		mustExecDB(t, db, `ALTER TABLE `+commands+` RENAME TO `+parked)
		if absent, err := db.AbsentTables(ctx); err != nil || !slices.Equal(absent, []string{"watermill_profile_sync_commands"}) {
			t.Errorf("AbsentTables with the commands table renamed away = %v, %v", absent, err)
		}
		if err := db.Ping(ctx); err != nil {
			t.Fatalf("Ping with the table renamed away: %v", err)
		}
		err = db.ProbeWritable(ctx)
		if err == nil || !strings.Contains(err.Error(), "table watermill_profile_sync_commands") {
			t.Errorf("ProbeWritable with the commands table renamed away = %v, want an error naming it", err)
		} else if strings.Contains(err.Error(), "watermill_user_events_poison") {
			t.Errorf("ProbeWritable blames the poison table, which is writable: %v", err)
		}

		poison := quoteIdent(d, "watermill_user_events_poison")
		parkedPoison := quoteIdent(d, "parked_poison")
		mustExecDB(t, db, `ALTER TABLE `+poison+` RENAME TO `+parkedPoison)
		err = db.ProbeWritable(ctx)
		if err == nil || !strings.Contains(err.Error(), "watermill_profile_sync_commands") || !strings.Contains(err.Error(), "watermill_user_events_poison") {
			t.Errorf("ProbeWritable with both tables away = %v, want both named", err)
		}

		mustExecDB(t, db, `ALTER TABLE `+parked+` RENAME TO `+commands)
		mustExecDB(t, db, `ALTER TABLE `+parkedPoison+` RENAME TO `+poison)
		if err := db.ProbeWritable(ctx); err != nil {
			t.Errorf("ProbeWritable with the tables back: %v", err)
		}
	})
}

// TestProbeWritableWhenTheDatabaseIsGone reports the database once, not
// each table as if it were the problem.
func TestProbeWritableWhenTheDatabaseIsGone(t *testing.T) {
	t.Parallel()
	db, err := store.Open(testContext(t), storetest.URL(t, store.SQLite))
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	err = db.ProbeWritable(testContext(t))
	if err == nil || !strings.Contains(err.Error(), "sqlite database") || strings.Contains(err.Error(), "table ") {
		t.Errorf("ProbeWritable on a closed database = %v, want one error about the database", err)
	}
}

// TestProbeWritableSeesRefusedInserts: a table that exists but refuses the
// router's insert (here a trigger, as a full disk or a read-only replica
// would) is not writable.
func TestProbeWritableSeesRefusedInserts(t *testing.T) {
	t.Parallel()
	db := storetest.Open(t, store.SQLite)
	mustExecDB(t, db, `CREATE TRIGGER refuse BEFORE INSERT ON watermill_user_events_poison
		BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END`)
	err := db.ProbeWritable(testContext(t))
	if err == nil || !strings.Contains(err.Error(), "watermill_user_events_poison") || !strings.Contains(err.Error(), "disk I/O error") {
		t.Errorf("ProbeWritable with inserts refused = %v, want the table and the reason", err)
	}
}

func mustExecDB(t *testing.T, db *store.DB, query string) {
	t.Helper()
	if _, err := db.SQL.ExecContext(testContext(t), query); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
}
