package e2e

import (
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/social/user-events-router/router/routertest"
	"github.com/social/user-events-router/store"
	"github.com/social/user-events-router/store/storetest"
)

// viaProxy points a postgres:// or mysql:// URL at the proxy instead.
func viaProxy(t *testing.T, dbURL string, p *routertest.Proxy) string {
	t.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	u.Host = p.Addr()
	return u.String()
}

func hostOf(t *testing.T, dbURL string) string {
	t.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

// TestDatabaseOutageMidStream cuts the database away while events flow and
// brings it back: transient failures are retried, never poisoned, and every
// event is committed exactly once afterwards. PostgreSQL and MariaDB go
// away for real (a proxy drops every connection); SQLite, which has no
// server, loses its commands table instead.
func TestDatabaseOutageMidStream(t *testing.T) {
	t.Parallel()
	storetest.EachBackend(t, func(t *testing.T, backend store.Dialect) {
		const total = 60
		srv := routertest.StartServer(t)
		dbURL := storetest.URL(t, backend)
		db := openDB(t, dbURL)

		routerURL, down, up := cuttableDatabase(t, backend, dbURL, db)
		startRouter(t, testEnv(t, srv.URL, routerURL))
		js := routertest.JetStream(t, srv.URL)
		waitForConsumer(t, js)

		publish := func(from, to int) {
			for i := from; i < to; i++ {
				id := fmt.Sprintf("%08d-0000-4000-8000-%012d", i, i)
				routertest.Publish(t, js, "user.events.created", good("78af4bc4-afce-4676-b373-5b802a2dfd2e", id))
			}
		}
		publish(0, total/2)
		routertest.Eventually(t, 30*time.Second, "the first half committed", func() bool { return countCommands(t, db) == total/2 })

		down()
		publish(total/2, total)
		routertest.Eventually(t, 30*time.Second, "deliveries failing and coming back", func() bool {
			return routertest.ConsumerInfo(t, js, "USER_EVENTS", "social-backend-consumer").NumRedelivered > 0
		})
		if n := routertest.StreamMsgs(t, js, "USER_EVENTS"); n == 0 {
			t.Fatal("during the outage the stream is empty: events were acked without a commit")
		}
		up()

		routertest.Eventually(t, 60*time.Second, "every event committed", func() bool { return countCommands(t, db) == total })
		routertest.Eventually(t, 30*time.Second, "the stream to drain", func() bool {
			return routertest.StreamMsgs(t, js, "USER_EVENTS") == 0
		})
		if n := countCommands(t, db); n != total {
			t.Errorf("%d commands, want %d", n, total)
		}
		var distinct int
		if err := db.SQL.QueryRow(`SELECT COUNT(DISTINCT uuid) FROM watermill_profile_sync_commands`).Scan(&distinct); err != nil {
			t.Fatal(err)
		}
		if distinct != total {
			t.Errorf("%d distinct command ids, want %d", distinct, total)
		}
		entries := storetest.PoisonEntries(t, db)
		if len(entries) != 0 {
			t.Errorf("a database outage produced %d poison entries, want none: first %+v", len(entries), withoutPayload(entries[0]))
		}
	})
}

// cuttableDatabase gives the router a database the test can take away and
// bring back: the URL to hand the router, and down and up. PostgreSQL and
// MariaDB go away for real (the router connects through a proxy that drops
// every connection); SQLite, which has no server, loses its commands table.
func cuttableDatabase(t *testing.T, backend store.Dialect, dbURL string, db *store.DB) (routerURL string, down, up func()) {
	t.Helper()
	if backend == store.SQLite {
		return dbURL,
			func() { mustExec(t, db, `ALTER TABLE watermill_profile_sync_commands RENAME TO parked_commands`) },
			func() { mustExec(t, db, `ALTER TABLE parked_commands RENAME TO watermill_profile_sync_commands`) }
	}
	proxy := routertest.StartProxy(t, hostOf(t, dbURL))
	return viaProxy(t, dbURL, proxy), proxy.Cut, func() { proxy.Restore(t) }
}
func mustExec(t *testing.T, db *store.DB, query string) {
	t.Helper()
	if _, err := db.SQL.Exec(query); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
}
