package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/social/user-events-router/store"
)

// Tables the router writes (DESIGN.md §3).
const (
	commandsTable = "watermill_" + store.CommandsTopic
	poisonTable   = "watermill_" + store.PoisonTopic
)

// Default servers, the ones the repository's tests and CI use.
const (
	defaultPostgresURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	defaultMySQLURL    = "mysql://root@127.0.0.1:3306/test"
)

// benchDB is the isolated database of one run: a fresh SQLite file, or a
// database bench_<random> created on the PostgreSQL or MySQL server and
// dropped at the end.
type benchDB struct {
	Dialect store.Dialect
	// RouterURL is the DATABASE_URL the router gets.
	RouterURL string
	// Name is the database created on the server, or the SQLite file.
	Name string
	// DB is the benchmark's own connection to it.
	DB *store.DB

	admin *store.DB // server connection that created Name (postgres, mysql)
}

// openDatabase creates the run's database and its tables (the router's own
// InitSchema, so they are exactly the router's).
func openDatabase(ctx context.Context, backend, serverURL, tmpDir string) (*benchDB, error) {
	d := &benchDB{}
	var err error
	switch backend {
	case "sqlite":
		err = d.createSQLite(ctx, serverURL, tmpDir)
	case "postgres":
		err = d.createOnServer(ctx, firstNonEmpty(serverURL, os.Getenv("TEST_POSTGRES_URL"), defaultPostgresURL), store.Postgres)
	case "mysql":
		err = d.createOnServer(ctx, firstNonEmpty(serverURL, os.Getenv("TEST_MYSQL_URL"), defaultMySQLURL), store.MySQL)
	}
	if err != nil {
		d.Close(ctx, false)
		return nil, err
	}
	if err := d.DB.InitSchema(ctx, store.CommandsTopic, store.PoisonTopic); err != nil {
		d.Close(ctx, false)
		return nil, err
	}
	return d, nil
}

func (d *benchDB) createSQLite(ctx context.Context, databaseURL, tmpDir string) error {
	d.Dialect = store.SQLite
	path := filepath.Join(tmpDir, "bench.db")
	if databaseURL != "" {
		p, ok := strings.CutPrefix(databaseURL, "sqlite:")
		if !ok || strings.ContainsAny(p, "?") || strings.HasPrefix(p, "file:") {
			return usagef("-db sqlite -database-url %q: want sqlite:PATH of a file to create", databaseURL)
		}
		if _, err := os.Stat(p); err == nil {
			return usagef("-database-url %q: the file exists; the benchmark needs a new one", databaseURL)
		}
		path = p
	}
	d.Name, d.RouterURL = path, "sqlite:"+path
	db, err := store.Open(ctx, d.RouterURL)
	d.DB = db
	return err
}

func (d *benchDB) createOnServer(ctx context.Context, serverURL string, dialect store.Dialect) error {
	d.Dialect = dialect
	if got, err := store.ParseURL(serverURL); err != nil {
		return usageError{err}
	} else if got != dialect {
		return usagef("-database-url is a %s URL, -db wants %s", got, dialect)
	}
	u, err := url.Parse(serverURL)
	if err != nil {
		return usagef("-database-url: %v", err)
	}
	admin, err := store.Open(ctx, serverURL)
	if err != nil {
		return err
	}
	d.admin = admin
	d.Name = "bench_" + randomHex(4)
	if _, err := admin.SQL.ExecContext(ctx, "CREATE DATABASE "+d.Name); err != nil {
		d.Name = ""
		return fmt.Errorf("create database: %w", err)
	}
	u.Path = "/" + d.Name
	d.RouterURL = u.String()
	d.DB, err = store.Open(ctx, d.RouterURL)
	return err
}

// Close closes the connections and drops the database unless keep.
func (d *benchDB) Close(ctx context.Context, keep bool) {
	if d.DB != nil {
		_ = d.DB.Close()
	}
	if d.admin == nil {
		return
	}
	if d.Name != "" && !keep {
		drop := "DROP DATABASE IF EXISTS " + d.Name
		if d.Dialect == store.Postgres {
			drop += " WITH (FORCE)"
		}
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if _, err := d.admin.SQL.ExecContext(ctx, drop); err != nil {
			fmt.Fprintf(os.Stderr, "bench: drop database %s: %v\n", d.Name, err)
		}
	}
	_ = d.admin.Close()
}

func (d *benchDB) count(ctx context.Context, table string) (int, error) {
	var n int
	err := d.DB.SQL.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+table).Scan(&n)
	return n, err
}

// payloadBytes is the total size of table's payloads.
func (d *benchDB) payloadBytes(ctx context.Context, table string) (int, error) {
	var n int64
	err := d.DB.SQL.QueryRowContext(ctx, "SELECT COALESCE(SUM(LENGTH(payload)), 0) FROM "+table).Scan(&n)
	return int(n), err
}

func (d *benchDB) countDistinctUUID(ctx context.Context, table string) (int, error) {
	var n int
	err := d.DB.SQL.QueryRowContext(ctx, "SELECT COUNT(DISTINCT uuid) FROM "+table).Scan(&n)
	return n, err
}

// commitTimes maps each command's user_id to its row's created_at, in
// seconds since the epoch. PostgreSQL stores microseconds (the time its
// transaction began) and SQLite milliseconds (the time of the insert);
// MySQL's TIMESTAMP keeps whole seconds, so ok is false there.
func (d *benchDB) commitTimes(ctx context.Context) (times map[string]float64, ok bool, err error) {
	var query string
	switch d.Dialect {
	case store.Postgres:
		// created_at is a timestamp without time zone written in the
		// session's zone; convert it back to an instant.
		query = `SELECT payload::text, EXTRACT(EPOCH FROM (created_at AT TIME ZONE current_setting('TimeZone')))::float8 FROM ` + commandsTable
	case store.SQLite:
		query = `SELECT CAST(payload AS TEXT), (julianday(created_at) - 2440587.5) * 86400.0 FROM ` + commandsTable
	default:
		return nil, false, nil
	}
	rows, err := d.DB.SQL.QueryContext(ctx, query)
	if err != nil {
		return nil, false, err
	}
	defer rows.Close()
	times = map[string]float64{}
	for rows.Next() {
		var payload string
		var at float64
		if err := rows.Scan(&payload, &at); err != nil {
			return nil, false, err
		}
		var cmd struct {
			UserID string `json:"user_id"`
		}
		if err := json.Unmarshal([]byte(payload), &cmd); err != nil {
			return nil, false, fmt.Errorf("command payload: %w", err)
		}
		times[cmd.UserID] = at
	}
	return times, true, rows.Err()
}

// dbCounters are the database server's commit and log-flush counters, to
// tell how many transactions and fsyncs one event cost.
type dbCounters struct {
	Commits  int64 // PostgreSQL: this database's; MySQL: the server's
	LogSyncs int64 // WAL / redo-log fsyncs, server-wide
	Sessions int64 // PostgreSQL: connections opened to this database
}

func (d *benchDB) counters(ctx context.Context) (dbCounters, bool) {
	var c dbCounters
	switch d.Dialect {
	case store.Postgres:
		// Backends report their statistics at most once a second.
		err := d.DB.SQL.QueryRowContext(ctx, `SELECT xact_commit, sessions, (SELECT wal_sync FROM pg_stat_wal)
			FROM pg_stat_database WHERE datname = current_database()`).Scan(&c.Commits, &c.Sessions, &c.LogSyncs)
		return c, err == nil
	case store.MySQL:
		rows, err := d.DB.SQL.QueryContext(ctx, `SHOW GLOBAL STATUS WHERE Variable_name IN ('Handler_commit', 'Innodb_os_log_fsyncs')`)
		if err != nil {
			return c, false
		}
		defer rows.Close()
		for rows.Next() {
			var name string
			var v int64
			if rows.Scan(&name, &v) != nil {
				return c, false
			}
			if name == "Handler_commit" {
				c.Commits = v
			} else {
				c.LogSyncs = v
			}
		}
		return c, rows.Err() == nil
	}
	return c, false
}

// countersAfterClose reads the counters once the connections that did the
// work are closed: a PostgreSQL backend reports its statistics when it
// exits, but while idle it may hold them back for up to 10 s.
func (d *benchDB) countersAfterClose(ctx context.Context) (dbCounters, bool) {
	if d.Dialect == store.Postgres {
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
	return d.counters(ctx)
}

// writeTransactions is how many transactions wrote the table's rows
// (PostgreSQL records each row's transaction id); ok is false elsewhere.
func (d *benchDB) writeTransactions(ctx context.Context, table string) (int, bool) {
	if d.Dialect != store.Postgres {
		return 0, false
	}
	var n int
	err := d.DB.SQL.QueryRowContext(ctx, "SELECT COUNT(DISTINCT transaction_id) FROM "+table).Scan(&n)
	return n, err == nil
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
