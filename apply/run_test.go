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
