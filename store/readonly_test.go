package store_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/social/user-events-router/store"
	"github.com/social/user-events-router/store/storetest"
)

// TestOpenReadOnlyCreatesNothing: on a path where no router has run,
// OpenReadOnly and OpenExisting fail with ErrNoDatabase and leave no file
// or directory behind (Open would create both, and serve the tables).
func TestOpenReadOnlyCreatesNothing(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	dir := t.TempDir()
	for _, url := range []string{
		"sqlite:" + filepath.Join(dir, "data", "router.db"),
		"sqlite:" + filepath.Join(dir, "router.db"),
		"sqlite:file:" + filepath.Join(dir, "uri.db") + "?cache=shared",
	} {
		for name, open := range map[string]func() (*store.DB, error){
			"OpenReadOnly": func() (*store.DB, error) { return store.OpenReadOnly(ctx, url) },
			"OpenExisting": func() (*store.DB, error) { return store.OpenExisting(ctx, url) },
		} {
			db, err := open()
			if err == nil {
				db.Close()
			}
			if !errors.Is(err, store.ErrNoDatabase) {
				t.Errorf("%s(%s) = %v, want ErrNoDatabase", name, url, err)
			}
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("opening created %v", entries)
	}
}

// TestOpenReadOnlyRefusesWrites: a read-only session reads the tables and
// the catalog, and refuses to create a table or insert a row, on every
// backend; OpenExisting writes as Open does.
func TestOpenReadOnlyRefusesWrites(t *testing.T) {
	t.Parallel()
	storetest.EachBackend(t, func(t *testing.T, d store.Dialect) {
		ctx := testContext(t)
		url := storetest.URL(t, d)
		rw, err := store.Open(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		defer rw.Close()
		if err := rw.InitSchema(ctx, store.Topics()...); err != nil {
			t.Fatal(err)
		}
		commands := quoteIdent(d, "watermill_profile_sync_commands")

		ro, err := store.OpenReadOnly(ctx, url)
		if err != nil {
			t.Fatalf("OpenReadOnly on a prepared database: %v", err)
		}
		defer ro.Close()
		if absent, err := ro.AbsentTables(ctx); err != nil || len(absent) != 0 {
			t.Errorf("AbsentTables read-only = %v, %v", absent, err)
		}
		var n int
		if err := ro.SQL.QueryRowContext(ctx, `SELECT count(*) FROM `+commands).Scan(&n); err != nil {
			t.Errorf("count read-only: %v", err)
		}
		for _, stmt := range []string{
			`CREATE TABLE made_by_a_reader (x INTEGER)`,
			`DELETE FROM ` + commands,
		} {
			if _, err := ro.SQL.ExecContext(ctx, stmt); err == nil {
				t.Errorf("read-only session ran %q", stmt)
			}
		}
		if err := ro.ProbeWritable(ctx); err == nil {
			t.Error("ProbeWritable succeeded on a read-only session")
		}
		if absent, err := rw.AbsentTables(ctx); err != nil || len(absent) != 0 || tableExists(t, rw, d, "made_by_a_reader") {
			t.Errorf("the read-only session changed the schema: absent %v, %v", absent, err)
		}

		ex, err := store.OpenExisting(ctx, url)
		if err != nil {
			t.Fatalf("OpenExisting on a prepared database: %v", err)
		}
		defer ex.Close()
		if err := ex.ProbeWritable(ctx); err != nil {
			t.Errorf("ProbeWritable through OpenExisting: %v", err)
		}
	})
}

func tableExists(t *testing.T, db *store.DB, d store.Dialect, name string) bool {
	t.Helper()
	var q string
	switch d {
	case store.Postgres:
		q = `SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()`
	case store.MySQL:
		q = `SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE()`
	default:
		q = `SELECT name FROM sqlite_master WHERE type = 'table'`
	}
	rows, err := db.SQL.QueryContext(testContext(t), q)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var names []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		names = append(names, s)
	}
	return slices.Contains(names, name)
}
