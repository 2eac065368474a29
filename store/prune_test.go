package store_test

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/social/user-events-router/store"
	"github.com/social/user-events-router/store/storetest"
)

// A command is pruned only once every consumer group has read it — the
// groups with an offset and the required one not started yet — and it is
// old enough; the ledger is never touched.
func TestPruneWaitsForEveryConsumerGroup(t *testing.T) {
	t.Parallel()
	storetest.EachBackend(t, func(t *testing.T, d store.Dialect) {
		ctx := testContext(t)
		db := storetest.Open(t, d)
		pub, err := db.Publisher(watermill.NopLogger{})
		if err != nil {
			t.Fatal(err)
		}
		for range 5 {
			mustPublish(t, pub, store.CommandsTopic, message.NewMessage(watermill.NewUUID(), []byte(`{}`)))
		}
		g, err := db.GroupCommitter(store.GroupOptions{MaxBatch: 4, Workers: 1})
		if err != nil {
			t.Fatal(err)
		}
		defer g.Close()
		if err := g.CommitState(ctx, store.CommandsTopic, "7d0c1f3a-0000-4000-8000-0000000000aa", counting("k")); err != nil {
			t.Fatal(err)
		}
		count := func() int {
			var n int
			if err := db.SQL.QueryRowContext(ctx, "SELECT count(*) FROM "+quoteIdent(d, "watermill_"+store.CommandsTopic)).Scan(&n); err != nil {
				t.Fatal(err)
			}
			return n
		}
		prune := func(o store.PruneOptions) store.PruneReport {
			t.Helper()
			rep, err := db.PruneCommands(ctx, o)
			if err != nil {
				t.Fatal(err)
			}
			return rep
		}
		// Nobody has read anything.
		if rep := prune(store.PruneOptions{}); rep.Pruned != 0 || count() != 6 {
			t.Fatalf("before any consumer: pruned %d, %d left", rep.Pruned, count())
		}
		// Group a reads three commands.
		read(t, db, "a", 3)
		if rep := prune(store.PruneOptions{Required: []string{"a", "not-started"}}); rep.Pruned != 0 || len(rep.Waiting) != 1 {
			t.Errorf("with a required group not started: %+v", rep)
		}
		if rep := prune(store.PruneOptions{Required: []string{"a"}, OlderThan: time.Hour}); rep.Pruned != 0 {
			t.Errorf("commands younger than the retention were pruned: %+v", rep)
		}
		if rep := prune(store.PruneOptions{Required: []string{"a"}, DryRun: true}); rep.Pruned != 3 || count() != 6 {
			t.Errorf("dry run: %+v, %d left (want 3 prunable and all 6 left)", rep, count())
		}
		// Group b has read one: only that one may go.
		read(t, db, "b", 1)
		if rep := prune(store.PruneOptions{Required: []string{"a"}, Batch: 1}); rep.Pruned != 1 || count() != 5 {
			t.Errorf("with b behind: %+v, %d left; want 1 pruned", rep, count())
		}
		read(t, db, "b", 4)
		if rep := prune(store.PruneOptions{Required: []string{"a"}, Batch: 1}); rep.Pruned != 2 || count() != 3 {
			t.Errorf("after b caught up with a: %+v, %d left; want 2 more pruned", rep, count())
		}
		if state, _ := db.LoadState(ctx, "7d0c1f3a-0000-4000-8000-0000000000aa"); string(state) != "1" {
			t.Errorf("the ledger was touched: %q", state)
		}
	})
}

// read consumes n more commands as consumer group group and acks them. The
// subscriber commits a batch's acks when it stops, and may drop the last
// ack if it sees its closing first: then it reads again up to the same
// message.
func read(t *testing.T, db *store.DB, group string, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	off := quoteIdent(db.Dialect, "offset")
	target, want := "", int64(0)
	for attempt := 0; attempt < 5; attempt++ {
		sub, err := db.Subscriber(group, watermill.NopLogger{})
		if err != nil {
			t.Fatal(err)
		}
		msgs, err := sub.Subscribe(ctx, store.CommandsTopic)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; target == "" && i < n || target != ""; i++ {
			var m *message.Message
			select {
			case m = <-msgs:
			case <-ctx.Done():
				t.Fatalf("group %s: no message to read", group)
			}
			m.Ack()
			if target == "" && i == n-1 {
				target = m.UUID
				break
			}
			if m.UUID == target {
				break
			}
		}
		if err := sub.Close(); err != nil {
			t.Fatal(err)
		}
		if want == 0 {
			q := db.Bind("SELECT " + off + " FROM " + quoteIdent(db.Dialect, "watermill_"+store.CommandsTopic) + " WHERE uuid = ?")
			if err := db.SQL.QueryRowContext(ctx, q, target).Scan(&want); err != nil {
				t.Fatal(err)
			}
		}
		var acked sql.NullInt64
		q := db.Bind("SELECT offset_acked FROM " + quoteIdent(db.Dialect, "watermill_offsets_"+store.CommandsTopic) + " WHERE consumer_group = ?")
		if err := db.SQL.QueryRowContext(ctx, q, group).Scan(&acked); err == nil && acked.Int64 >= want {
			return
		}
	}
	t.Fatalf("group %s never acked %s", group, target)
}
