package store_test

import (
	"testing"
	"time"

	"github.com/social/user-events-router/store"
	"github.com/social/user-events-router/store/storetest"
)

// TestDeleteAllKeepsOffsetsGrowing: emptying the whole queue in one
// statement (SQLite's DELETE, MySQL's TRUNCATE) must not start offsets
// again from 1, under the offsets watermill-sql's consumers have stored:
// the next entry gets an offset past every earlier one.
func TestDeleteAllKeepsOffsetsGrowing(t *testing.T) {
	t.Parallel()
	storetest.EachBackend(t, func(t *testing.T, d store.Dialect) {
		db := storetest.Open(t, d)
		put := func(id string) {
			t.Helper()
			if err := db.PutPoison(t.Context(), store.PoisonEntry{ID: id, Payload: []byte("x"), Class: "permanent", LastFailure: time.Now()}); err != nil {
				t.Fatal(err)
			}
		}
		put("cccccccc-0000-4000-8000-000000000001")
		put("cccccccc-0000-4000-8000-000000000002")
		before, err := db.MaxOffset(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if n, err := db.DeletePoisonMatching(t.Context(), store.PoisonFilter{}, nil); err != nil || n != 2 {
			t.Fatalf("delete all = %d, %v; want 2", n, err)
		}
		put("cccccccc-0000-4000-8000-000000000003")
		after, err := db.MaxOffset(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if after <= before {
			t.Errorf("the entry after delete --all has offset %d, not past the earlier %d", after, before)
		}
		if n, err := db.CountPoison(t.Context()); err != nil || n != 1 {
			t.Errorf("%d entries, %v; want 1", n, err)
		}
	})
}
