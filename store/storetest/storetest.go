// Package storetest gives tests a fresh, isolated database on each backend
// the router supports, so database tests can run in parallel against real
// PostgreSQL, MySQL and SQLite without seeing each other's rows.
//
// SQLite always runs (a file in t.TempDir()). PostgreSQL and MySQL run when
// their server is named in the environment:
//
//	TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test?sslmode=disable
//	TEST_MYSQL_URL=mysql://root@127.0.0.1:3306/test
//
// Each test gets its own PostgreSQL schema (selected with search_path) or its
// own MySQL database, dropped when the test ends.
package storetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/social/user-events-router/redact"
	"github.com/social/user-events-router/store"
)

// The environment variables that name the servers to test against.
const (
	PostgresEnv = "TEST_POSTGRES_URL"
	MySQLEnv    = "TEST_MYSQL_URL"
)

// setupTimeout bounds creating and dropping a test database, so a server that
// hangs fails the test instead of the whole run.
const setupTimeout = 30 * time.Second

// Backends returns the dialects to run database suites against: SQLite
// always, PostgreSQL when TEST_POSTGRES_URL is set, MySQL when TEST_MYSQL_URL
// is set.
func Backends() []store.Dialect {
	backends := []store.Dialect{store.SQLite}
	if os.Getenv(PostgresEnv) != "" {
		backends = append(backends, store.Postgres)
	}
	if os.Getenv(MySQLEnv) != "" {
		backends = append(backends, store.MySQL)
	}
	return backends
}

// EachBackend runs fn as a parallel subtest, named after the dialect, on
// every backend Backends returns.
func EachBackend(t *testing.T, fn func(t *testing.T, backend store.Dialect)) {
	t.Helper()
	for _, backend := range Backends() {
		t.Run(string(backend), func(t *testing.T) {
			t.Parallel()
			fn(t, backend)
		})
	}
}

// Open returns a *store.DB on a fresh database of dialect d (see URL) with
// the tables for store.CommandsTopic and store.PoisonTopic created. It is
// closed, and the database dropped, when the test ends. The test is skipped
// when d's server is not configured.
func Open(t testing.TB, d store.Dialect) *store.DB {
	t.Helper()
	databaseURL := URL(t, d)

	ctx, cancel := context.WithTimeout(t.Context(), setupTimeout)
	defer cancel()
	db, err := store.Open(ctx, databaseURL)
	if err != nil {
		t.Fatalf("storetest: %v", err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Errorf("storetest: close %s database: %v", d, err)
		}
	})
	if err := db.InitSchema(ctx, store.Topics()...); err != nil {
		t.Fatalf("storetest: %v", err)
	}
	return db
}

// URL returns a DATABASE_URL for a fresh, empty database of dialect d, for
// tests that hand the router a URL rather than a *store.DB: an SQLite file in
// t.TempDir(), a new PostgreSQL schema in TEST_POSTGRES_URL's database
// (selected with search_path in the URL), or a new MySQL database t_<random>
// on TEST_MYSQL_URL's server. The schema or database is dropped when the test
// ends; close every connection to it before then. The test is skipped when
// d's server is not configured.
func URL(t testing.TB, d store.Dialect) string {
	t.Helper()
	switch d {
	case store.SQLite:
		return "sqlite:" + filepath.Join(t.TempDir(), "router.db")
	case store.Postgres:
		return isolated(t, PostgresEnv, postgresDatabase)
	case store.MySQL:
		return isolated(t, MySQLEnv, mysqlDatabase)
	default:
		t.Fatalf("storetest: unknown dialect %q", d)
		return ""
	}
}

// server creates and drops one isolated database on a shared server.
type server struct {
	create func(name string) string // SQL that creates the database
	drop   func(name string) string // SQL that drops it
	// lockTimeout makes the drop give up instead of waiting forever behind a
	// connection the test left open.
	lockTimeout string
	// use returns the URL with the new database selected.
	use func(u *url.URL, name string)
}

var postgresDatabase = server{
	create:      func(name string) string { return `CREATE SCHEMA "` + name + `"` },
	drop:        func(name string) string { return `DROP SCHEMA IF EXISTS "` + name + `" CASCADE` },
	lockTimeout: `SET lock_timeout = '10s'`,
	use: func(u *url.URL, name string) {
		q := u.Query()
		q.Set("search_path", name)
		u.RawQuery = q.Encode()
	},
}

var mysqlDatabase = server{
	create:      func(name string) string { return "CREATE DATABASE `" + name + "`" },
	drop:        func(name string) string { return "DROP DATABASE IF EXISTS `" + name + "`" },
	lockTimeout: `SET SESSION lock_wait_timeout = 10`,
	use: func(u *url.URL, name string) {
		u.Path = "/" + name
	},
}

func isolated(t testing.TB, env string, srv server) string {
	t.Helper()
	base := os.Getenv(env)
	if base == "" {
		t.Skipf("storetest: %s is not set", env)
	}
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("storetest: %s is not a URL: %s", env, redact.URL(base))
	}

	ctx, cancel := context.WithTimeout(t.Context(), setupTimeout)
	defer cancel()
	admin, err := store.Open(ctx, base)
	if err != nil {
		t.Fatalf("storetest: %s: %v", env, err)
	}
	name := "t_" + randomHex(8)
	if _, err := admin.SQL.ExecContext(ctx, srv.create(name)); err != nil {
		_ = admin.Close()
		t.Fatalf("storetest: create %s: %v", name, err)
	}
	t.Cleanup(func() {
		defer admin.Close()
		// t.Context() is already done when cleanups run.
		ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
		defer cancel()
		conn, err := admin.SQL.Conn(ctx)
		if err != nil {
			t.Errorf("storetest: drop %s: %v", name, err)
			return
		}
		defer conn.Close()
		if _, err := conn.ExecContext(ctx, srv.lockTimeout); err != nil {
			t.Errorf("storetest: drop %s: %v", name, err)
			return
		}
		if _, err := conn.ExecContext(ctx, srv.drop(name)); err != nil {
			t.Errorf("storetest: drop %s (is a connection to it still open?): %v", name, err)
		}
	})

	srv.use(u, name)
	return u.String()
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails: crypto/rand crashes the program instead
	return hex.EncodeToString(b)
}

// PoisonEntries returns every entry of db's poison queue, payloads
// included, in the order they were stored. Lists leave payloads out; tests
// that check them read each entry.
func PoisonEntries(t testing.TB, db *store.DB) []store.PoisonEntry {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	var out []store.PoisonEntry
	err := db.EachPoison(ctx, store.PoisonFilter{}, func(batch []store.PoisonEntry) error {
		for _, e := range batch {
			full, err := db.GetPoison(ctx, e.ID)
			if err != nil {
				return err
			}
			out = append(out, full)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("storetest: poison entries: %v", err)
	}
	return out
}
