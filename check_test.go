package main

import (
	"context"
	"strings"
	"testing"

	"github.com/social/user-events-router/store"
	"github.com/social/user-events-router/store/storetest"
)

// TestCheckReportsTables: check says the tables take writes only when they
// do (a ping alone said "database: ok" with every insert failing), takes
// absent tables for a database serve has not started on yet, and leaves no
// row behind.
func TestCheckReportsTables(t *testing.T) {
	t.Parallel()
	dbURL := storetest.URL(t, store.SQLite)
	check := func() (string, error) {
		t.Helper()
		var stdout, stderr syncBuffer
		// NATS_LISTEN free: check asks whether serve could listen there.
		env := map[string]string{"DATABASE_URL": dbURL, "DATA_DIR": t.TempDir(), "NATS_LISTEN": freeAddr(t)}
		err := run(context.Background(), []string{"check"}, func(k string) string { return env[k] }, &stdout, &stderr)
		return stdout.String(), err
	}

	out, err := check()
	if err != nil || !strings.Contains(out, "tables: watermill_profile_sync_commands, watermill_user_events_poison, user_events_ledger absent (serve creates them") {
		t.Errorf("check before serve made the tables: %v\n%s", err, out)
	}

	db := openDB(t, dbURL)
	out, err = check()
	if err != nil || !strings.Contains(out, "tables: writable (watermill_profile_sync_commands, watermill_user_events_poison, user_events_ledger;") {
		t.Errorf("check with writable tables: %v\n%s", err, out)
	}
	if n := countCommands(t, db); n != 0 {
		t.Errorf("check left %d rows in the commands table", n)
	}

	mustExec(t, db, `CREATE TRIGGER refuse BEFORE INSERT ON watermill_profile_sync_commands
		BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END`)
	out, err = check()
	if err == nil || !strings.Contains(err.Error(), "table watermill_profile_sync_commands") || strings.Contains(out, "tables: writable") {
		t.Errorf("check with inserts refused: err %v, want one naming the table\n%s", err, out)
	}
}
