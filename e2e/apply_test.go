package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/social/user-events-router/router/routertest"
	"github.com/social/user-events-router/store"
	"github.com/social/user-events-router/store/storetest"
)

// TestServeWithApply runs the router with APPLY=1 (one process for a small
// deployment) and checks the monolith's tables, not the commands: users
// registered, renamed and deleted through NATS and HTTP end as the Auth
// Service holds them.
func TestServeWithApply(t *testing.T) {
	t.Parallel()
	storetest.EachBackend(t, func(t *testing.T, backend store.Dialect) {
		w := newWorld(t, backend, "APPLY", "1")
		at := time.Now().UTC().Truncate(time.Second).Add(-time.Minute)
		for i := range 3 {
			id := fmt.Sprintf("7a1b2c3d-4444-4e5f-8a9b-%012d", i)
			w.nats(t, event("created", id, fmt.Sprintf("u%d@example.com", i), fmt.Sprintf("user%d", i), at))
			w.http(t, event("updated", id, fmt.Sprintf("u%d@example.org", i), fmt.Sprintf("user%d_b", i), at.Add(time.Second)))
			if i < 2 {
				w.nats(t, event("deleted", id, fmt.Sprintf("u%d@example.org", i), fmt.Sprintf("user%d_b", i), at.Add(2*time.Second)))
			}
		}
		w.drained(t)
		want := "7a1b2c3d-4444-4e5f-8a9b-000000000000||deleted\n7a1b2c3d-4444-4e5f-8a9b-000000000001||deleted\n7a1b2c3d-4444-4e5f-8a9b-000000000002|u2@example.org user2_b|alive"
		var got string
		routertest.Eventually(t, 30*time.Second, "apply to bring the monolith's users in step", func() bool {
			rows, err := w.db.SQL.Query(`SELECT user_id, email, username, deleted_at IS NOT NULL FROM user_identities ORDER BY user_id`)
			if err != nil {
				return false
			}
			defer rows.Close()
			var lines []string
			for rows.Next() {
				var id, email, username string
				var deleted bool
				if rows.Scan(&id, &email, &username, &deleted) != nil {
					return false
				}
				state := "alive"
				if deleted {
					state = "deleted"
				}
				lines = append(lines, id+"|"+strings.TrimSpace(email+" "+username)+"|"+state)
			}
			got = strings.Join(lines, "\n")
			return got == want
		})
		if got != want {
			t.Errorf("user_identities:\n%s\nwant:\n%s", got, want)
		}
	})
}
