package e2e

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/social/user-events-router/cli"
	"github.com/social/user-events-router/router/broker"
	"github.com/social/user-events-router/router/routertest"
	"github.com/social/user-events-router/store"
	"github.com/social/user-events-router/store/storetest"
)

// TestCheckReportsTables: check says the tables take writes only when they
// do (a ping alone said "database: ok" with every insert failing), reports
// a missing database or missing tables as a problem without creating them,
// and leaves no row behind.
func TestCheckReportsTables(t *testing.T) {
	t.Parallel()
	dbURL := storetest.URL(t, store.SQLite)
	check := func() (string, error) {
		t.Helper()
		var stdout, stderr syncBuffer
		// NATS_LISTEN free: check asks whether serve could listen there.
		env := map[string]string{"DATABASE_URL": dbURL, "DATA_DIR": t.TempDir(), "NATS_LISTEN": freeAddr(t)}
		err := cli.Run(context.Background(), []string{"check"}, func(k string) string { return env[k] }, &stdout, &stderr)
		return stdout.String(), err
	}

	// Before serve: no database, which is a problem check reports (and
	// does not solve by creating the file).
	_, err := check()
	if err == nil || !strings.Contains(err.Error(), "database: no such database: SQLite file") {
		t.Errorf("check before serve: %v, want the missing database reported", err)
	}
	if _, statErr := os.Stat(strings.TrimPrefix(dbURL, "sqlite:")); !errors.Is(statErr, fs.ErrNotExist) {
		t.Errorf("check created the database file: %v", statErr)
	}

	// A database without the tables: each is named, none created.
	empty, err := store.Open(t.Context(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	empty.Close()
	_, err = check()
	if err == nil || !strings.Contains(err.Error(), "tables watermill_profile_sync_commands, watermill_user_events_poison, user_events_ledger absent: start the router (serve) once") {
		t.Errorf("check on a database without tables: %v, want each table named", err)
	}

	db := openDB(t, dbURL)
	out, err := check()
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

// TestReadOnlyCommandsChangeNothing: check, poison list and show, a replay
// dry run and a prune dry run, on a path where no router has run, say the
// database is missing and create no file or directory; on a database
// without the tables they name them and create none.
func TestReadOnlyCommandsChangeNothing(t *testing.T) {
	t.Parallel()
	commands := [][]string{
		{"check"},
		{"poison", "list"},
		{"poison", "show", "6b727153"},
		{"poison", "replay", "--all", "--dry-run"},
		{"prune", "--dry-run"},
	}
	runIn := func(t *testing.T, env map[string]string, args []string) (int, string) {
		t.Helper()
		var stdout, stderr syncBuffer
		err := cli.Run(t.Context(), args, func(k string) string { return env[k] }, &stdout, &stderr)
		return cli.ExitCode(err, &stderr), stderr.String()
	}
	t.Run("fresh path", func(t *testing.T) {
		t.Parallel()
		for _, args := range commands {
			dataDir := t.TempDir()
			nested := filepath.Join(t.TempDir(), "sub")
			for _, env := range []map[string]string{
				{"DATA_DIR": dataDir},
				{"DATA_DIR": dataDir, "DATABASE_URL": "sqlite:" + filepath.Join(nested, "router.db")},
			} {
				code, stderr := runIn(t, env, args)
				if code != 1 || !strings.Contains(stderr, "no such database") {
					t.Errorf("%v with %v: exit %d, %q; want 1 and the missing database named", args, env, code, stderr)
				}
			}
			if entries, _ := os.ReadDir(dataDir); len(entries) != 0 {
				t.Errorf("%v created %v in DATA_DIR", args, entries)
			}
			if _, err := os.Stat(nested); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("%v created the database's directory: %v", args, err)
			}
		}
	})
	storetest.EachBackend(t, func(t *testing.T, backend store.Dialect) {
		url := storetest.URL(t, backend)
		db, err := store.Open(t.Context(), url)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		env := map[string]string{"DATABASE_URL": url, "DATA_DIR": t.TempDir()}
		for _, args := range commands {
			code, stderr := runIn(t, env, args)
			if code != 1 || !strings.Contains(stderr, "absent: start the router (serve) once") {
				t.Errorf("%v on a database without tables: exit %d, %q", args, code, stderr)
			}
		}
		if absent, err := db.AbsentTables(t.Context()); err != nil || len(absent) != len(db.WrittenTables()) {
			t.Errorf("after the read-only commands, absent tables %v (%v), want all of %v", absent, err, db.WrittenTables())
		}
	})
}

// TestCheckSaysWhatBoundsMemory: on the durable the router creates, the
// byte budget bounds memory; on the monolith's legacy durable (MaxDeliver
// 3) the durable's max ack pending does, and check says which. It also
// names the variable a misspelt one was probably meant to be.
//
// check finds a misspelt variable among the process's environment
// (os.Environ) as main gives it, so this test sets its variables there
// too, and so cannot run in parallel (t.Setenv): the parallel tests wait
// while it runs, and the variables are gone before they resume.
func TestCheckSaysWhatBoundsMemory(t *testing.T) {
	srv := routertest.StartServer(t)
	dbURL := storetest.URL(t, store.SQLite)
	openDB(t, dbURL)
	check := func(env map[string]string) string {
		t.Helper()
		env["DATABASE_URL"], env["NATS_URL"], env["DATA_DIR"] = dbURL, srv.URL, t.TempDir()
		for k, v := range env {
			t.Setenv(k, v)
		}
		var stdout, stderr syncBuffer
		err := cli.Run(t.Context(), []string{"check"}, func(k string) string { return env[k] }, &stdout, &stderr)
		if err != nil {
			t.Fatalf("check: %v\n%s", err, stdout.String())
		}
		return stdout.String()
	}

	says := func(what, out string, wants ...string) {
		t.Helper()
		for _, want := range wants {
			if !strings.Contains(out, want) {
				t.Errorf("check %s lacks %q:\n%s", what, want, out)
			}
		}
	}
	monolithWorld(t, srv.URL)
	says("on the legacy durable", check(map[string]string{"NATS_MAXDELIVER": "5"}),
		"warning: NATS_MAXDELIVER is not a router variable and is ignored; did you mean NATS_MAX_DELIVER?",
		"consumer social-backend-consumer: pending 0, ack pending 0, max deliver 3",
		"memory: bounded by the durable, not by MAX_IN_FLIGHT_BYTES: the broker may push up to its max ack pending × the largest message")
	out := check(map[string]string{"NATS_DURABLE": "router-own"})
	says("before the router's own durable exists", out,
		"consumer router-own: absent (serve creates it)",
		"memory: bounded by MAX_IN_FLIGHT_BYTES=16777216",
		"(for the durable serve creates)")
	if strings.Contains(out, "warning:") {
		t.Errorf("check warned with only router variables set:\n%s", out)
	}
	// One server, not clustered: never weaker, nothing said of replicas.
	if strings.Contains(out, "replica") {
		t.Errorf("check spoke of replicas on a single server:\n%s", out)
	}
}

// TestCheckWarnsOfStreamWeakerThanCluster: on a cluster of three JetStream
// servers, check warns that the Auth Service's R1 stream stops when its
// server goes, and why it keeps coming back (exit 0: a warning, the router
// works on it); on the operator's R3 it only reports the replicas.
func TestCheckWarnsOfStreamWeakerThanCluster(t *testing.T) {
	t.Parallel()
	c := routertest.StartCluster(t, 3)
	dbURL := storetest.URL(t, store.SQLite)
	openDB(t, dbURL)
	env := map[string]string{"DATABASE_URL": dbURL, "NATS_URL": c.URLs(), "DATA_DIR": t.TempDir()}
	check := func() string {
		t.Helper()
		var stdout, stderr syncBuffer
		err := cli.Run(t.Context(), []string{"check"}, func(k string) string { return env[k] }, &stdout, &stderr)
		if code := cli.ExitCode(err, &stderr); code != 0 {
			t.Fatalf("check: exit %d (%v), want 0\n%s%s", code, err, stdout.String(), stderr.String())
		}
		return stdout.String()
	}

	// The stream as the Auth Service leaves it, on every start.
	js := routertest.JetStream(t, c.URLs())
	if _, err := js.CreateStream(t.Context(), broker.AuthServiceStreamConfig("USER_EVENTS")); err != nil {
		t.Fatal(err)
	}
	// Each check counts the servers until the first quiet moment after
	// their answers; on a loaded machine one may answer after it.
	var out string
	routertest.Eventually(t, 30*time.Second, "a check that counted all three servers", func() bool {
		out = check()
		return strings.Contains(out, "on a cluster of 3 JetStream servers")
	})
	for _, want := range []string{
		"warning: nats: stream USER_EVENTS has 1 replica on a cluster of 3 JetStream servers (" + c.Name + "): losing the server that holds it stops the stream until that server returns",
		"the Auth Service's UpdateStream sets Replicas: 1 on every start",
		"nats stream edit USER_EVENTS --replicas 3",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("check on an R1 stream lacks %q:\n%s", want, out)
		}
	}

	// The operator's edit.
	cfg := broker.AuthServiceStreamConfig("USER_EVENTS")
	cfg.Replicas = 3
	if _, err := js.UpdateStream(t.Context(), cfg); err != nil {
		t.Fatal(err)
	}
	routertest.Eventually(t, 30*time.Second, "a check that counted all three servers", func() bool {
		out = check()
		return strings.Contains(out, "on a cluster of 3 JetStream servers")
	})
	if strings.Contains(out, "warning:") || !strings.Contains(out, "nats: stream USER_EVENTS has 3 replicas on a cluster of 3 JetStream servers") {
		t.Errorf("check on an R3 stream: want the replicas and no warning:\n%s", out)
	}
}
