package store_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"

	"github.com/social/user-events-router/store"
	"github.com/social/user-events-router/store/storetest"
)

// counting is a state function that counts its calls for key in the state
// and writes one message per call, named after the count.
func counting(key string) store.StateFunc {
	return func(state []byte) ([]byte, []*message.Message, error) {
		n := 0
		if len(state) > 0 {
			var err error
			if n, err = strconv.Atoi(string(state)); err != nil {
				return nil, nil, err
			}
		}
		n++
		id := uuid.NewSHA1(uuid.NameSpaceOID, fmt.Appendf(nil, "%s/%d", key, n)).String()
		return []byte(strconv.Itoa(n)), []*message.Message{message.NewMessage(id, []byte(`{}`))}, nil
	}
}

// Two committers on one database stand for two router replicas: calls for
// the same keys, some of them new, race through both. Each key's state must
// count every call once, and every call's message be written once: no
// decision is made on a stale state, and none is lost to a lost race.
func TestCommitStateSerialisesEachKey(t *testing.T) {
	t.Parallel()
	storetest.EachBackend(t, func(t *testing.T, d store.Dialect) {
		db := storetest.Open(t, d)
		var committers []*store.GroupCommitter
		for range 2 {
			g, err := db.GroupCommitter(store.GroupOptions{MaxBatch: 16, MaxWait: time.Millisecond, Workers: 2, Timeout: 30 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = g.Close() })
			committers = append(committers, g)
		}
		keys := []string{"7d0c1f3a-0000-4000-8000-000000000001", "7d0c1f3a-0000-4000-8000-000000000002", "7d0c1f3a-0000-4000-8000-000000000003"}
		const callers, calls = 6, 20
		var wg sync.WaitGroup
		errs := make(chan error, callers*calls)
		for c := range callers {
			wg.Go(func() {
				for i := range calls {
					key := keys[(c+i)%len(keys)]
					if err := committers[c%2].CommitState(t.Context(), store.CommandsTopic, key, counting(key)); err != nil {
						errs <- err
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Errorf("CommitState: %v", err)
		}
		total := 0
		for _, key := range keys {
			state, err := db.LoadState(t.Context(), key)
			if err != nil {
				t.Fatal(err)
			}
			n, _ := strconv.Atoi(string(state))
			total += n
		}
		if total != callers*calls {
			t.Errorf("states count %d calls, want %d", total, callers*calls)
		}
		var rows, distinct int
		q := "SELECT count(*), count(DISTINCT uuid) FROM " + quoteIdent(d, "watermill_"+store.CommandsTopic)
		if err := db.SQL.QueryRowContext(t.Context(), q).Scan(&rows, &distinct); err != nil {
			t.Fatal(err)
		}
		if rows != callers*calls || distinct != rows {
			t.Errorf("commands: %d rows, %d distinct, want %d each", rows, distinct, callers*calls)
		}
	})
}

// A state function that panics fails its own call, not the process, and
// the committer goes on; one that changes nothing and writes nothing
// succeeds.
func TestCommitStateSurvivesItsFunction(t *testing.T) {
	t.Parallel()
	storetest.EachBackend(t, func(t *testing.T, d store.Dialect) {
		db := storetest.Open(t, d)
		g, err := db.GroupCommitter(store.GroupOptions{MaxBatch: 8, Workers: 1})
		if err != nil {
			t.Fatal(err)
		}
		defer g.Close()
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		key := "7d0c1f3a-0000-4000-8000-00000000000a"
		err = g.CommitState(ctx, store.CommandsTopic, key, func([]byte) ([]byte, []*message.Message, error) { panic("boom") })
		if err == nil {
			t.Error("a panicking state function succeeded")
		}
		if err := g.CommitState(ctx, store.CommandsTopic, key, counting(key)); err != nil {
			t.Fatalf("after the panic: %v", err)
		}
		same := func(state []byte) ([]byte, []*message.Message, error) { return state, nil, nil }
		if err := g.CommitState(ctx, store.CommandsTopic, key, same); err != nil {
			t.Errorf("a repeat that writes nothing: %v", err)
		}
		wantErr := errors.New("no")
		if err := g.CommitState(ctx, store.CommandsTopic, key, func([]byte) ([]byte, []*message.Message, error) { return nil, nil, wantErr }); !errors.Is(err, wantErr) {
			t.Errorf("failing state function: err = %v, want it wrapped", err)
		}
		if state, _ := db.LoadState(ctx, key); string(state) != "1" {
			t.Errorf("state = %q, want 1", state)
		}
	})
}

// TestCommitStateIsOneTransaction: when the commands cannot be written
// (their table is missing), the key's new state is not kept either, on
// every backend; the same call then commits both once the table is there,
// on connections the failure left usable. On PostgreSQL the state and the
// commands go to the server in one pipeline with COMMIT, so this is what
// says the failure still rolls back the state written before it.
func TestCommitStateIsOneTransaction(t *testing.T) {
	t.Parallel()
	storetest.EachBackend(t, func(t *testing.T, d store.Dialect) {
		db := storetest.Open(t, d)
		failThenCommit(t, db, "missing_topic", "7d0c1f3a-0000-4000-8000-00000000000a")
	})
}

// failThenCommit commits a new state for key with a command into topic,
// which must fail, three times (more failures than the pool has
// connections), each time leaving the ledger without the key; then into
// the commands table, which must keep the state and one command.
func failThenCommit(t *testing.T, db *store.DB, topic, key string) {
	t.Helper()
	g, err := db.GroupCommitter(store.GroupOptions{MaxBatch: 16, Workers: 1, Timeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.Close() })
	ctx := testContext(t)
	for range 3 {
		if err := g.CommitState(ctx, topic, key, counting(key)); err == nil {
			t.Fatalf("a commit into %s succeeded", topic)
		}
		if state, err := g.LoadState(ctx, key); err != nil || state != nil {
			t.Fatalf("after the failed commit the ledger holds %q (%v), want nothing", state, err)
		}
	}
	if err := g.CommitState(ctx, store.CommandsTopic, key, counting(key)); err != nil {
		t.Fatal(err)
	}
	if state, err := g.LoadState(ctx, key); err != nil || string(state) != "1" {
		t.Fatalf("ledger holds %q (%v), want 1", state, err)
	}
	if n := len(uuids(t, db, store.CommandsTopic)); n != 1 {
		t.Fatalf("%d commands, want 1", n)
	}
}

// TestCommitStateIsOneTransactionPostgres: the same, for a write that
// fails only as it runs (a CHECK the commands break), not when pgx
// prepares the statements: the state written before it in the pipeline is
// rolled back with it.
func TestCommitStateIsOneTransactionPostgres(t *testing.T) {
	t.Parallel()
	db := storetest.Open(t, store.Postgres)
	ctx := testContext(t)
	if _, err := db.SQL.ExecContext(ctx, `CREATE TABLE "watermill_refusing" (LIKE "watermill_`+store.CommandsTopic+`" INCLUDING DEFAULTS,
		CHECK (length(uuid) > 100))`); err != nil {
		t.Fatal(err)
	}
	failThenCommit(t, db, "refusing", "7d0c1f3a-0000-4000-8000-00000000000b")
}

// TestCommitPastItsDeadlineLeavesNoLock: a commit whose deadline passes
// while its state functions run (between BEGIN with the lock read and the
// writes) fails, and leaves no transaction behind: the user's row is not
// locked afterwards, whatever the pool does with the connection.
func TestCommitPastItsDeadlineLeavesNoLock(t *testing.T) {
	t.Parallel()
	db := storetest.Open(t, store.Postgres)
	ctx := testContext(t)
	const key = "7d0c1f3a-0000-4000-8000-00000000000c"
	// The row is written first with the default deadline (a new
	// connection and an fsynced commit may take more than 200 ms on a
	// loaded machine), so that the short-deadline commit locks it.
	setup, err := db.GroupCommitter(store.GroupOptions{MaxBatch: 16, Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := setup.CommitState(ctx, store.CommandsTopic, key, counting(key)); err != nil {
		t.Fatal(err)
	}
	if err := setup.Close(); err != nil {
		t.Fatal(err)
	}
	g, err := db.GroupCommitter(store.GroupOptions{MaxBatch: 16, Workers: 1, Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.Close() })
	// A connection of its own, held from before, so that the check does
	// not take the failed commit's connection from the pool (checking it
	// out would discard it, and release its locks, whatever it holds).
	c, err := db.SQL.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	slow := func(state []byte) ([]byte, []*message.Message, error) {
		time.Sleep(400 * time.Millisecond) // past the commit's deadline
		return counting(key)(state)
	}
	if err := g.CommitState(ctx, store.CommandsTopic, key, slow); err == nil {
		t.Fatal("a commit past its deadline succeeded")
	}
	tx, err := c.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback() }()
	var state string
	if err := tx.QueryRowContext(ctx, `SELECT state FROM "user_events_ledger" WHERE user_id = $1 FOR UPDATE NOWAIT`, key).Scan(&state); err != nil {
		t.Fatalf("the user's row is still locked by the failed commit: %v", err)
	}
	if state != "1" {
		t.Fatalf("state %q, want 1: the failed commit kept its write", state)
	}
}

// TestCommitWritesTheLedgerBeforeTheCommands: on PostgreSQL a transaction
// writes its new ledger rows before its commands, whether each goes in by
// COPY or by insert. Two transactions carrying the same event at once (the
// same command id) would otherwise take their locks in opposite orders —
// one the command row then the user's, the other the user's then the
// command's — and deadlock until PostgreSQL breaks it a second later. A
// trigger on the commands table refuses a row whose user has no ledger row
// yet in the transaction: one new user with enough commands for COPY (and
// too few ledger rows for it) failed there.
func TestCommitWritesTheLedgerBeforeTheCommands(t *testing.T) {
	t.Parallel()
	db := storetest.Open(t, store.Postgres)
	ctx := testContext(t)
	const key = "7d0c1f3a-0000-4000-8000-00000000000d"
	for _, q := range []string{
		`CREATE TABLE "watermill_ordered" (LIKE "watermill_` + store.CommandsTopic + `" INCLUDING ALL)`,
		`CREATE FUNCTION ledger_first() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF NOT EXISTS (SELECT 1 FROM "user_events_ledger" WHERE user_id = '` + key + `') THEN
				RAISE EXCEPTION 'a command before its user''s ledger row';
			END IF;
			RETURN NEW;
		END $$`,
		`CREATE TRIGGER ledger_first BEFORE INSERT ON "watermill_ordered" FOR EACH ROW EXECUTE FUNCTION ledger_first()`,
	} {
		if _, err := db.SQL.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	g, err := db.GroupCommitter(routerGroupOptions())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.Close() })
	for _, n := range []int{20, 1} { // COPY, then insert
		if _, err := db.SQL.ExecContext(ctx, `DELETE FROM "user_events_ledger"`); err != nil {
			t.Fatal(err)
		}
		many := func([]byte) ([]byte, []*message.Message, error) {
			msgs := make([]*message.Message, n)
			for i := range msgs {
				msgs[i] = commandMessage(ctx, i)
			}
			return []byte("1"), msgs, nil
		}
		if err := g.CommitState(ctx, "ordered", key, many); err != nil {
			t.Fatalf("%d commands for a new user: %v", n, err)
		}
	}
	if got := len(uuids(t, db, "ordered")); got != 21 {
		t.Fatalf("%d commands stored, want 21", got)
	}
}
