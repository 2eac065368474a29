// Package pipelinetest wires, for the tests of the paths that do not come
// from NATS (router/ingress, router/admin's replay), the pipeline the way
// the router does, over a real database, and the small checks they share.
package pipelinetest

import (
	"log/slog"
	"testing"
	"time"

	"github.com/social/user-events-router/handlers"
	"github.com/social/user-events-router/middleware"
	"github.com/social/user-events-router/router"
	"github.com/social/user-events-router/store"
)

// ProducerPayload is byte for byte what the real Auth Service sends.
const ProducerPayload = `{"id":"78af4bc4-afce-4676-b373-5b802a2dfd2e","email":"alice@example.com","username":"alice01","action":"created","request_id":"","timestamp":"2026-11-28T13:28:17Z","service_name":"gofiber-auth"}`

// NewPipeline wires the pipeline the way the router does: dispatcher
// committing to the commands table behind the middleware chain with a real
// poison queue, with quick in-process retries.
func NewPipeline(t testing.TB, db *store.DB, registry handlers.Registry, logger *slog.Logger) *router.Pipeline {
	t.Helper()
	committer, err := db.GroupCommitter(store.GroupOptions{MaxBatch: 64, Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = committer.Close() })
	dispatcher, err := handlers.NewDispatcher(registry, committer, store.CommandsTopic)
	if err != nil {
		t.Fatal(err)
	}
	poison, err := middleware.NewPoison(db, -1)
	if err != nil {
		t.Fatal(err)
	}
	chain, err := middleware.Chain(middleware.ChainOptions{
		Logger: logger, Poison: poison, RetryMax: 1,
		RetryInitialInterval: time.Millisecond, RetryMaxInterval: time.Millisecond, HandlerTimeout: 5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	p, err := router.NewPipeline(dispatcher, chain)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// CountCommands is how many commands db holds.
func CountCommands(t testing.TB, db *store.DB) int {
	t.Helper()
	var n int
	if err := db.SQL.QueryRow(`SELECT COUNT(*) FROM watermill_profile_sync_commands`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}
