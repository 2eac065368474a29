package apply_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"testing"
	"time"

	wmsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/social/user-events-router/apply"
	"github.com/social/user-events-router/apply/applytest"
	"github.com/social/user-events-router/handlers"
	"github.com/social/user-events-router/schema"
	"github.com/social/user-events-router/store"
	"github.com/social/user-events-router/store/storetest"
)

// commandsOf runs deliveries through the router's dispatcher (ledger and
// handlers) and returns the commands it writes.
func commandsOf(t *testing.T, deliveries []applytest.Delivery) []schema.Command {
	t.Helper()
	rec := &recorder{}
	d, err := handlers.NewDispatcher(handlers.DefaultRegistry(), handlers.NewMemoryCommitter(rec), store.CommandsTopic)
	if err != nil {
		t.Fatal(err)
	}
	for _, dl := range deliveries {
		msg := message.NewMessage("m", dl.Body)
		if dl.HTTP {
			msg.Metadata.Set(handlers.MetaIngress, schema.IngressHTTP)
		} else {
			var ev struct{ Action string }
			_ = json.Unmarshal(dl.Body, &ev)
			msg.Metadata.Set(handlers.MetaSubject, "user.events."+ev.Action)
			msg.Metadata.Set(handlers.MetaStreamSeq, strconv.FormatUint(dl.StreamSeq, 10))
		}
		if err := d.Handle(msg); err != nil {
			t.Fatalf("handle %s: %v", dl.Body, err)
		}
	}
	cmds := make([]schema.Command, len(rec.msgs))
	for i, m := range rec.msgs {
		c, err := apply.Decode(m.Payload)
		if err != nil {
			t.Fatal(err)
		}
		cmds[i] = c
	}
	return cmds
}

type recorder struct {
	mu   sync.Mutex
	msgs []*message.Message
}

func (r *recorder) Publish(_ string, msgs ...*message.Message) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, msgs...)
	return nil
}
func (r *recorder) Close() error { return nil }

// TestConvergesInAnyOrder drives random user histories, as the Auth Service
// delivers them, through the router's ledger into commands, and applies
// those in commit order, shuffled, and with repeats, on every backend: each
// time the monolith's user_identities must equal the Auth Service's users.
func TestConvergesInAnyOrder(t *testing.T) {
	t.Parallel()
	const users = 300
	rng := rand.New(rand.NewPCG(11, 13))
	model := map[string]applytest.User{}
	var all []applytest.Delivery
	var seq uint64
	t0 := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	for i := range users {
		id := fmt.Sprintf("%08x-3c4d-4e5f-8a6b-%012d", rng.Uint32(), i)
		d, final := applytest.History(rng, id, t0.Add(time.Duration(rng.IntN(600))*time.Second), &seq)
		model[id] = final
		// Interleave users: each user's deliveries keep their order.
		merged := make([]applytest.Delivery, 0, len(all)+len(d))
		for len(all) > 0 || len(d) > 0 {
			if len(d) == 0 || (len(all) > 0 && rng.IntN(2) == 0) {
				merged, all = append(merged, all[0]), all[1:]
			} else {
				merged, d = append(merged, d[0]), d[1:]
			}
		}
		all = merged
	}
	cmds := commandsOf(t, all)
	t.Logf("%d deliveries became %d commands", len(all), len(cmds))

	storetest.EachBackend(t, func(t *testing.T, backend store.Dialect) {
		for _, order := range []string{"commit order", "shuffled", "shuffled with repeats"} {
			db := storetest.Open(t, backend)
			ctx := context.Background()
			if err := apply.CreateTables(ctx, db.SQL, db.Dialect); err != nil {
				t.Fatal(err)
			}
			seq := append([]schema.Command(nil), cmds...)
			r := rand.New(rand.NewPCG(uint64(len(order)), 7))
			switch order {
			case "shuffled":
				r.Shuffle(len(seq), func(i, j int) { seq[i], seq[j] = seq[j], seq[i] })
			case "shuffled with repeats":
				for range len(seq) / 3 {
					seq = append(seq, seq[r.IntN(len(seq))])
				}
				r.Shuffle(len(seq), func(i, j int) { seq[i], seq[j] = seq[j], seq[i] })
			}
			a := apply.NewApplier(db.Dialect)
			tx, err := db.SQL.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range seq {
				if _, err := a.Apply(ctx, wmsql.TxFromStdSQL(tx), c); err != nil {
					t.Fatal(err)
				}
			}
			if err := tx.Commit(); err != nil {
				t.Fatal(err)
			}
			got := identities(t, db.SQL)
			summary, ok := applytest.Diff(model, got)
			t.Logf("%s, %s: %s", backend, order, summary)
			if !ok {
				n := 0
				for id, m := range model {
					if got[id] != m && n < 5 {
						n++
						t.Errorf("user %s: monolith %+v, Auth Service %+v", id, got[id], m)
					}
				}
				t.Errorf("%s: %s", order, summary)
			}
		}
	})
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func identities(t *testing.T, db *sql.DB) map[string]applytest.User {
	t.Helper()
	got, err := applytest.Identities(db)
	if err != nil {
		t.Fatal(err)
	}
	return got
}
