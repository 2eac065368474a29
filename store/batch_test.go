package store_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"

	"github.com/social/user-events-router/configs"
	"github.com/social/user-events-router/store"
	"github.com/social/user-events-router/store/storetest"
)

func commandMessage(ctx context.Context, i int) *message.Message {
	msg := message.NewMessage(uuid.NewString(), fmt.Appendf(nil, `{"n":%d}`, i))
	msg.SetContext(ctx)
	return msg
}

// routerGroupOptions are the group commit settings the router runs with by
// default, taken from configs as cli/serve.go does.
func routerGroupOptions() store.GroupOptions {
	d := configs.Defaults()
	return store.GroupOptions{MaxBatch: d.CommitBatchMax, MaxWait: d.CommitBatchWait, Workers: d.CommitWorkers, Timeout: d.HandlerTimeout}
}

// TestGroupCommitterCommitsConcurrentCallsTogether: every message of many
// concurrent calls is stored exactly once, each call's messages in the
// order given, and in far fewer transactions than calls.
func TestGroupCommitterCommitsConcurrentCallsTogether(t *testing.T) {
	storetest.EachBackend(t, func(t *testing.T, d store.Dialect) {
		db := storetest.Open(t, d)
		var txns, committed atomic.Int64
		opts := routerGroupOptions()
		opts.MaxBatch = 64
		opts.Committed = func(n int) { txns.Add(1); committed.Add(int64(n)) }
		g, err := db.GroupCommitter(opts)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = g.Close() })

		const calls, perCall = 200, 3
		ctx := testContext(t)
		sent := make([][]string, calls)
		var wg sync.WaitGroup
		errs := make(chan error, calls)
		for c := range calls {
			msgs := make([]*message.Message, perCall)
			for i := range msgs {
				msgs[i] = commandMessage(ctx, c*perCall+i)
				sent[c] = append(sent[c], msgs[i].UUID)
			}
			wg.Go(func() {
				if err := g.Publish(store.CommandsTopic, msgs...); err != nil {
					errs <- err
				}
				// A repeat is a no-op, batched or not.
				if err := g.Publish(store.CommandsTopic, msgs[0]); err != nil {
					errs <- err
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}

		stored := uuids(t, db, store.CommandsTopic)
		if len(stored) != calls*perCall {
			t.Fatalf("stored %d rows, want %d", len(stored), calls*perCall)
		}
		position := map[string]int{}
		for i, id := range stored {
			if _, dup := position[id]; dup {
				t.Fatalf("uuid %s stored twice", id)
			}
			position[id] = i
		}
		for c, ids := range sent {
			for i := 1; i < len(ids); i++ {
				if position[ids[i]] <= position[ids[i-1]] {
					t.Fatalf("call %d: message %d stored before message %d", c, i, i-1)
				}
			}
		}
		if n := txns.Load(); n >= 2*calls {
			t.Errorf("%d transactions for %d calls: nothing was batched", n, 2*calls)
		}
		t.Logf("%d calls (%d messages incl. repeats) in %d transactions", 2*calls, committed.Load(), txns.Load())
	})
}

// TestGroupCommitterIsolatesAFailingCall: a call that cannot be committed
// (its table does not exist) fails alone; the calls batched with it commit.
func TestGroupCommitterIsolatesAFailingCall(t *testing.T) {
	storetest.EachBackend(t, func(t *testing.T, d store.Dialect) {
		db := storetest.Open(t, d)
		opts := routerGroupOptions()
		// All 20 calls share one batch: it closes when the 20th is in (a
		// short wait could close it before a call late on a loaded machine).
		opts.MaxBatch, opts.MaxWait = 20, time.Minute
		opts.Workers = 1
		var logs bytes.Buffer
		opts.Logger = slog.New(slog.NewJSONHandler(&logs, nil))
		g, err := db.GroupCommitter(opts)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = g.Close() })
		ctx := testContext(t)

		var wg sync.WaitGroup
		var good atomic.Int64
		var badErr error
		for i := range 20 {
			wg.Go(func() {
				if i == 7 {
					badErr = g.Publish("no_such_topic", commandMessage(ctx, i))
					return
				}
				if err := g.Publish(store.CommandsTopic, commandMessage(ctx, i)); err != nil {
					t.Errorf("good call %d: %v", i, err)
					return
				}
				good.Add(1)
			})
		}
		wg.Wait()
		if badErr == nil {
			t.Fatal("publishing to a missing table succeeded")
		}
		if n := len(uuids(t, db, store.CommandsTopic)); n != 19 || good.Load() != 19 {
			t.Fatalf("stored %d rows, %d calls succeeded; want 19 and 19", n, good.Load())
		}
		// The split is said, with what failed.
		if l := logs.String(); !strings.Contains(l, `"msg":"a batch commit failed; committing each call on its own"`) || !strings.Contains(l, "no_such_topic") {
			t.Errorf("the split batch was not logged with its error: %s", l)
		}
	})
}

// TestGroupCommitterStopsWaitingWithTheContext: a caller whose context ends
// gets its error at once, and Close refuses new calls.
func TestGroupCommitterStopsWaitingWithTheContext(t *testing.T) {
	db := storetest.Open(t, store.SQLite)
	g, err := db.GroupCommitter(routerGroupOptions())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := g.Publish(store.CommandsTopic, commandMessage(ctx, 1)); !errors.Is(err, context.Canceled) {
		t.Fatalf("publish with a cancelled context: %v, want context.Canceled", err)
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	if err := g.Publish(store.CommandsTopic, commandMessage(t.Context(), 2)); !errors.Is(err, store.ErrCommitterClosed) {
		t.Fatalf("publish after Close: %v, want ErrCommitterClosed", err)
	}
}

func TestGroupCommitterRejectsBadOptions(t *testing.T) {
	db := storetest.Open(t, store.SQLite)
	for name, opts := range map[string]store.GroupOptions{
		"no batch":      {MaxBatch: 0, Workers: 1},
		"no workers":    {MaxBatch: 1, Workers: 0},
		"negative wait": {MaxBatch: 1, Workers: 1, MaxWait: -time.Second},
	} {
		if _, err := db.GroupCommitter(opts); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestGroupCommitterFailsEveryCallWithoutADatabase: when no transaction can
// be started, every call gets the error (the batch is not tried call by call).
func TestGroupCommitterFailsEveryCallWithoutADatabase(t *testing.T) {
	db := storetest.Open(t, store.SQLite)
	var txns atomic.Int64
	opts := routerGroupOptions()
	opts.MaxWait = 50 * time.Millisecond
	opts.Committed = func(int) { txns.Add(1) }
	g, err := db.GroupCommitter(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.Close() })
	if err := db.SQL.Close(); err != nil {
		t.Fatal(err)
	}
	ctx := testContext(t)
	var wg sync.WaitGroup
	var failed atomic.Int64
	for i := range 10 {
		wg.Go(func() {
			if err := g.Publish(store.CommandsTopic, commandMessage(ctx, i)); err != nil {
				if !strings.Contains(err.Error(), "begin transaction") {
					t.Errorf("error %q does not say the transaction could not begin", err)
				}
				failed.Add(1)
			}
		})
	}
	wg.Wait()
	if failed.Load() != 10 || txns.Load() != 0 {
		t.Fatalf("%d of 10 calls failed, %d transactions committed; want 10 and 0", failed.Load(), txns.Load())
	}
}

// TestGroupCommitterCopiesAndFallsBack: on PostgreSQL a batch goes in with
// COPY; one that holds a message already stored is committed again with the
// insert-if-absent, so the stored message stays once and the others are
// stored. Without the fallback the whole batch fails on the duplicate.
func TestGroupCommitterCopiesAndFallsBack(t *testing.T) {
	db := storetest.Open(t, store.Postgres)
	g, err := db.GroupCommitter(routerGroupOptions())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.Close() })
	ctx := testContext(t)

	first := commandMessage(ctx, 0)
	if err := g.Publish(store.CommandsTopic, first); err != nil {
		t.Fatal(err)
	}
	if n := g.CopyFallbacks(); n != 0 {
		t.Fatalf("a new message fell back to the insert %d times", n)
	}
	// One call of enough rows for COPY (a batch of a few is inserted),
	// the stored one among them.
	msgs := make([]*message.Message, 40)
	for i := range msgs {
		msgs[i] = commandMessage(ctx, i+1)
	}
	msgs[4] = first
	if err := g.Publish(store.CommandsTopic, msgs...); err != nil {
		t.Fatal(err)
	}
	if n := len(uuids(t, db, store.CommandsTopic)); n != len(msgs) {
		t.Fatalf("stored %d rows, want %d (the repeat once)", n, len(msgs))
	}
	if n := g.CopyFallbacks(); n != 1 {
		t.Fatalf("%d fallbacks, want 1: the batch holding the repeat", n)
	}
}

// TestGroupCommitterCopiesIntoOtherColumnTypes: COPY encodes for the types
// a table really has. A commands table made by other means than InitSchema
// (uuid as UUID, payload and metadata as JSONB) takes the same rows, and
// reads back what was published; then the standard table again.
func TestGroupCommitterCopiesIntoOtherColumnTypes(t *testing.T) {
	db := storetest.Open(t, store.Postgres)
	ctx := testContext(t)
	const topic = "jsonb_commands"
	if _, err := db.SQL.ExecContext(ctx, `CREATE TABLE "watermill_`+topic+`" (
		"offset" BIGSERIAL, "uuid" UUID NOT NULL UNIQUE, "created_at" TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
		"payload" JSONB, "metadata" JSONB, "transaction_id" xid8 NOT NULL, PRIMARY KEY ("transaction_id", "offset"))`); err != nil {
		t.Fatal(err)
	}
	g, err := db.GroupCommitter(routerGroupOptions())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.Close() })
	for _, topic := range []string{topic, store.CommandsTopic} {
		// Enough rows for COPY (a batch of a few is inserted).
		msgs := make([]*message.Message, 20)
		for i := range msgs {
			msgs[i] = commandMessage(ctx, i+1)
		}
		msgs[1].Metadata.Set("correlation_id", "c-<2>")
		if err := g.Publish(topic, msgs...); err != nil {
			t.Fatalf("%s: %v", topic, err)
		}
		rows, err := db.SQL.QueryContext(ctx, `SELECT uuid::text, convert_from(payload::text::bytea, 'UTF8'), COALESCE(metadata->>'correlation_id', '-')
			FROM "watermill_`+topic+`" ORDER BY "offset"`)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for rows.Next() {
			var id, payload, md string
			if err := rows.Scan(&id, &payload, &md); err != nil {
				t.Fatal(err)
			}
			got = append(got, id+" "+payload+" "+md)
		}
		rows.Close()
		if len(got) != len(msgs) || !strings.HasPrefix(got[0], msgs[0].UUID+` {"n": 1}`) && !strings.HasPrefix(got[0], msgs[0].UUID+` {"n":1}`) ||
			!strings.HasSuffix(got[0], " -") || !strings.HasSuffix(got[1], " c-<2>") {
			t.Fatalf("%s holds %q", topic, got)
		}
	}
}
