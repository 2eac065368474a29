package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/social/user-events-router/cli"
	"github.com/social/user-events-router/middleware"
	"github.com/social/user-events-router/router/routertest"
	"github.com/social/user-events-router/store"
	"github.com/social/user-events-router/store/storetest"
)

// TestLastDeliveryIsPoisonedNotStranded uses the monolith's durable
// (MaxDeliver 3): while commits fail, the event is retried in process and
// redelivered, and on its third delivery it goes to the poison queue rather
// than staying stranded in the stream. Replay then commits it.
func TestLastDeliveryIsPoisonedNotStranded(t *testing.T) {
	t.Parallel()
	srv := routertest.StartServer(t)
	monolithWorld(t, srv.URL)

	dbURL := storetest.URL(t, store.SQLite)
	db := openDB(t, dbURL)
	env := testEnv(t, srv.URL, dbURL)
	env["RETRY_MAX"] = "1"
	startRouter(t, env)
	js := routertest.JetStream(t, srv.URL)
	routertest.Eventually(t, 20*time.Second, "the router bound to the durable", func() bool {
		return routertest.ConsumerInfo(t, js, "USER_EVENTS", "social-backend-consumer").PushBound
	})
	// After start-up: the router creates missing tables when it starts.
	mustExec(t, db, `ALTER TABLE watermill_profile_sync_commands RENAME TO parked_commands`)
	routertest.Publish(t, js, "user.events.created", []byte(producerPayload))

	routertest.Eventually(t, 30*time.Second, "the stream to drain through the poison queue", func() bool {
		return routertest.StreamMsgs(t, js, "USER_EVENTS") == 0
	})
	entries := storetest.PoisonEntries(t, db)
	if len(entries) != 1 {
		t.Fatalf("%d poison entries, want 1", len(entries))
	}
	e := entries[0]
	if e.Class != middleware.ClassTransientExhausted || e.DeliveryCount != 3 || e.Subject != "user.events.created" {
		t.Errorf("entry = %+v, want transient_exhausted on delivery 3", withoutPayload(e))
	}

	mustExec(t, db, `ALTER TABLE parked_commands RENAME TO watermill_profile_sync_commands`)
	var out, errOut syncBuffer
	err := cli.Run(context.Background(), []string{"poison", "replay", e.ID}, func(k string) string { return env[k] }, &out, &errOut)
	if err != nil {
		t.Fatalf("replay: %v\n%s%s", err, out.String(), errOut.String())
	}
	if n := countCommands(t, db); n != 1 {
		t.Errorf("after replay: %d commands, want 1", n)
	}
	if n, _ := db.CountPoison(context.Background()); n != 0 {
		t.Errorf("after replay: %d poison entries, want 0", n)
	}
}
