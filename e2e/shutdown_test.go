package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/social/user-events-router/router/routertest"
	"github.com/social/user-events-router/store"
	"github.com/social/user-events-router/store/storetest"
)

// TestShutdownFinishesInFlightMessage holds the database's write lock so a
// commit is in flight when shutdown begins. Shutdown must let that commit
// finish and its ack reach the broker: afterwards the command exists once,
// the stream is empty, and nothing was redelivered.
func TestShutdownFinishesInFlightMessage(t *testing.T) {
	t.Parallel()
	srv := routertest.StartServer(t)
	dbURL := storetest.URL(t, store.SQLite)
	db := openDB(t, dbURL)
	env := testEnv(t, srv.URL, dbURL)
	admin := freeAddr(t)
	env["ADMIN_ADDR"] = admin
	p := startRouter(t, env)
	js := routertest.JetStream(t, srv.URL)
	routertest.Eventually(t, 20*time.Second, "/readyz to answer 200", func() bool {
		code, _ := httpGet(t, "http://"+admin+"/readyz")
		return code == 200
	})

	// The test's transaction takes SQLite's write lock (immediate mode):
	// the router's insert waits for it (busy_timeout) inside its handler.
	tx, err := db.SQL.BeginTx(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(`DELETE FROM watermill_user_events_poison WHERE uuid = 'none'`); err != nil {
		t.Fatal(err)
	}
	routertest.Publish(t, js, "user.events.created", []byte(producerPayload))
	routertest.Eventually(t, 10*time.Second, "the event in flight in the handler", func() bool {
		_, body := httpGet(t, "http://"+admin+"/metrics")
		return strings.Contains(body, "user_events_router_messages_in_flight 1")
	})

	p.cancel() // SIGTERM
	p.cancel = nil
	if err := tx.Commit(); err != nil { // the lock goes; the in-flight insert proceeds
		t.Fatal(err)
	}
	select {
	case err := <-p.done:
		if err != nil {
			t.Fatalf("router exited with error: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("router did not stop")
	}
	if n := countCommands(t, db); n != 1 {
		t.Errorf("%d commands, want 1", n)
	}
	if n := routertest.StreamMsgs(t, js, "USER_EVENTS"); n != 0 {
		t.Errorf("stream holds %d messages after shutdown: the in-flight message's ack was lost", n)
	}
	info := routertest.ConsumerInfo(t, js, "USER_EVENTS", "social-backend-consumer")
	if info.NumRedelivered != 0 || info.AckFloor.Stream != 1 {
		t.Errorf("consumer redelivered %d, ack floor %d; want 0 and 1", info.NumRedelivered, info.AckFloor.Stream)
	}
}
