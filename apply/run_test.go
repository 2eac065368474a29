package apply_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/social/user-events-router/apply"
	"github.com/social/user-events-router/apply/applytest"
	"github.com/social/user-events-router/router/routertest"
	"github.com/social/user-events-router/store"
	"github.com/social/user-events-router/store/storetest"
)

// TestRunAppliesTheCommandsTable runs the applier as `apply` does — a
// watermill-sql subscriber on the commands table — on every backend, with
// the monolith's tables in the same database (one transaction with the
// offset) and in another one, and checks the monolith's users against the
// Auth Service's.
func TestRunAppliesTheCommandsTable(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(5, 8))
	model := map[string]applytest.User{}
	var all []applytest.Delivery
	var seq uint64
	t0 := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	for i := range 40 {
		id := fmt.Sprintf("%08x-5e6f-4a7b-8c9d-%012d", rng.Uint32(), i)
		d, final := applytest.History(rng, id, t0, &seq)
		model[id] = final
		all = append(all, d...)
	}
	cmds := commandsOf(t, all)
	storetest.EachBackend(t, func(t *testing.T, backend store.Dialect) {
		for _, sameDB := range []bool{true, false} {
			t.Run(fmt.Sprintf("same database %v", sameDB), func(t *testing.T) {
				db := storetest.Open(t, backend)
				target := db
				if !sameDB {
					var err error
					target, err = store.Open(t.Context(), "sqlite:"+filepath.Join(t.TempDir(), "monolith.db"))
					if err != nil {
						t.Fatal(err)
					}
					t.Cleanup(func() { target.Close() })
				}
				pub, err := db.Publisher(watermill.NopLogger{})
				if err != nil {
					t.Fatal(err)
				}
				for _, c := range cmds {
					m := message.NewMessage(c.CommandID, mustJSON(t, c))
					if err := pub.Publish(store.CommandsTopic, m); err != nil {
						t.Fatal(err)
					}
				}
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan error, 1)
				logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
				go func() {
					done <- apply.Run(ctx, apply.Options{Commands: db, Target: target, Logger: logger, CloseTimeout: 5 * time.Second})
				}()
				routertest.Eventually(t, 60*time.Second, "apply to catch up", func() bool {
					n, err := apply.Lag(context.Background(), db, apply.DefaultConsumerGroup)
					return err == nil && n == 0
				})
				routertest.Eventually(t, 10*time.Second, "the last command to commit", func() bool {
					_, ok := applytest.Diff(model, identities(t, target.SQL))
					return ok
				})
				summary, _ := applytest.Diff(model, identities(t, target.SQL))
				t.Log(summary)
				cancel()
				select {
				case err := <-done:
					if err != nil && !errors.Is(err, context.Canceled) {
						t.Errorf("Run: %v", err)
					}
				case <-time.After(30 * time.Second):
					t.Fatal("Run did not stop")
				}
			})
		}
	})
}

// TestLagFollowsTransactionOrder: watermill-sql reads PostgreSQL's commands
// in (transaction id, offset) order, and two router transactions can take
// their offsets in the other order (the one with the older transaction id
// inserts last). Once apply has passed both, its lag must be 0, not the
// difference of the offsets.
func TestLagFollowsTransactionOrder(t *testing.T) {
	t.Parallel()
	db := storetest.Open(t, store.Postgres)
	ctx := t.Context()
	rng := rand.New(rand.NewPCG(1, 2))
	var seq uint64
	d, _ := applytest.History(rng, "0a1b2c3d-5e6f-4a7b-8c9d-000000000001", time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC), &seq)
	cmds := commandsOf(t, d[:1])
	first, second := cmds[0], cmds[0]
	second.CommandID, second.UserID = "9f8e7d6c-5b4a-4392-8170-000000000002", "0a1b2c3d-5e6f-4a7b-8c9d-000000000002"

	older, err := db.SQL.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer older.Rollback()
	if _, err := older.ExecContext(ctx, `SELECT pg_current_xact_id()`); err != nil { // takes its transaction id now
		t.Fatal(err)
	}
	pub, err := db.Publisher(watermill.NopLogger{})
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(store.CommandsTopic, message.NewMessage(first.CommandID, mustJSON(t, first))); err != nil {
		t.Fatal(err) // a newer transaction id, the lower offset
	}
	inOlder, err := wmsql.NewPublisher(wmsql.TxFromStdSQL(older), wmsql.PublisherConfig{SchemaAdapter: db.SchemaAdapter()}, watermill.NopLogger{})
	if err != nil {
		t.Fatal(err)
	}
	if err := inOlder.Publish(store.CommandsTopic, message.NewMessage(second.CommandID, mustJSON(t, second))); err != nil {
		t.Fatal(err) // the older transaction id, the higher offset
	}
	if err := older.Commit(); err != nil {
		t.Fatal(err)
	}

	runCtx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	go func() {
		done <- apply.Run(runCtx, apply.Options{Commands: db, Target: db, Logger: logger, CloseTimeout: 5 * time.Second})
	}()
	defer func() {
		cancel()
		<-done
	}()
	routertest.Eventually(t, 30*time.Second, "apply to apply both commands", func() bool {
		var n int
		err := db.SQL.QueryRowContext(ctx, `SELECT COUNT(*) FROM user_identities`).Scan(&n)
		return err == nil && n == 2
	})
	routertest.Eventually(t, 10*time.Second, "the lag to be 0", func() bool {
		n, err := apply.Lag(ctx, db, apply.DefaultConsumerGroup)
		if err != nil {
			t.Fatal(err)
		}
		return n == 0
	})
}
