// Package store is the one place that knows the three SQL backends the router
// can run on (PostgreSQL, MySQL/MariaDB and SQLite) and the watermill-sql table
// layout the router writes to on each of them.
//
// Everything else in the router asks a *DB for its watermill-sql adapters,
// publisher or subscriber instead of choosing drivers, DSN options, column
// types or insert statements itself. That keeps the outside contract in one
// place: on every backend the tables are named watermill_<topic>, keep
// watermill-sql's standard columns (so any watermill-sql subscriber can consume
// them), have a unique uuid column, and inserting an existing uuid is a no-op,
// which is what makes publishing idempotent.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/social/user-events-router/redact"
)

// Topics the router writes. Their tables are "watermill_" + topic.
const (
	// CommandsTopic holds profile-sync commands for the Social Monolith
	// (table watermill_profile_sync_commands).
	CommandsTopic = "profile_sync_commands"
	// PoisonTopic holds events that could not be handled
	// (table watermill_user_events_poison).
	PoisonTopic = "user_events_poison"
)

// Dialect names a supported SQL backend; it picks the driver, the DSN options
// and the watermill-sql adapters.
type Dialect string

// The supported dialects.
const (
	Postgres Dialect = "postgres"
	MySQL    Dialect = "mysql"
	SQLite   Dialect = "sqlite"
)

// ErrInvalidURL is wrapped by every error about a DATABASE_URL that cannot be
// used as written, so callers can tell a configuration mistake (fix the URL)
// from a database that is unreachable (retry later) with errors.Is.
var ErrInvalidURL = errors.New("invalid database URL")

// DB is an open database with the watermill-sql adapters that fit it.
type DB struct {
	SQL     *sql.DB
	Dialect Dialect
}

// Open parses databaseURL, opens the database with the driver and options its
// dialect needs, and pings it with ctx. The accepted forms are:
//
//   - postgres://… or postgresql://… — PostgreSQL through pgx
//     (github.com/jackc/pgx/v5/stdlib); every pgx URL parameter works,
//     e.g. sslmode or search_path.
//   - mysql://user:pass@host[:port]/db[?params] — MySQL or MariaDB through
//     github.com/go-sql-driver/mysql. The parameters are the driver's DSN
//     parameters and are kept; parseTime is always true.
//   - sqlite:PATH, sqlite://PATH or sqlite:file:PATH?… — SQLite through
//     modernc.org/sqlite. In the sqlite:// form everything after the two
//     slashes is the path, so an absolute path needs three
//     (sqlite:///var/lib/router.db). The parent directory is created. Every
//     connection gets WAL, a 10 s busy_timeout, synchronous FULL,
//     foreign_keys and immediate transactions (_txlock=immediate, which
//     SQLiteOffsetsAdapter relies on). The URL may set its own _pragma
//     values for the first four; _txlock must stay immediate.
//
// Errors about the URL itself wrap ErrInvalidURL. Errors show the URL
// redacted (see redact.URL) and mask the password where a driver repeats it.
//
// OpenReadOnly and OpenExisting open without creating anything.
func Open(ctx context.Context, databaseURL string) (*DB, error) {
	p, err := parseURL(databaseURL)
	if err != nil {
		return nil, err
	}
	return p.connect(ctx, databaseURL)
}

// connect opens p's database with the pool settings the router uses and
// pings it; databaseURL is for errors, redacted.
func (p *parsedURL) connect(ctx context.Context, databaseURL string) (*DB, error) {
	db, err := p.open()
	if err != nil {
		return nil, p.scrub(fmt.Errorf("open %s: %w", redact.URL(databaseURL), err))
	}
	if p.dialect == SQLite {
		// SQLite serialises writers anyway; a bounded pool keeps a burst of
		// goroutines from opening hundreds of connections that would only
		// queue on the database lock.
		db.SetMaxOpenConns(64)
	}
	// database/sql keeps 2 idle connections by default: with more handlers
	// than that, every burst closed and reopened connections (the benchmark
	// saw one new PostgreSQL backend per 7 events). Keep enough idle ones
	// for the router's concurrent handlers, and recycle them now and then.
	db.SetMaxIdleConns(idleConns)
	db.SetConnMaxIdleTime(5 * time.Minute)
	if err := ping(ctx, db, p.dialect); err != nil {
		_ = db.Close()
		return nil, p.scrub(fmt.Errorf("ping %s: %w", redact.URL(databaseURL), err))
	}
	return &DB{SQL: db, Dialect: p.dialect}, nil
}

// ping checks the first connection. On SQLite, opening one runs the
// connection's pragmas (journal_mode=WAL among them), which answer
// SQLITE_BUSY at once, without the busy timeout, while another process is
// creating the same file's tables: a few short tries then.
func ping(ctx context.Context, db *sql.DB, d Dialect) error {
	err := db.PingContext(ctx)
	for try := 0; err != nil && d == SQLite && strings.Contains(err.Error(), "SQLITE_BUSY") && try < 50; try++ {
		select {
		case <-ctx.Done():
			return err
		case <-time.After(20 * time.Millisecond):
		}
		err = db.PingContext(ctx)
	}
	return err
}

// idleConns is how many idle connections the pool keeps: enough for the
// group committer's workers, poison-queue writes, the HTTP ingress and the
// admin API at once.
const idleConns = 32

// ParseURL reports the dialect of databaseURL after checking it the way Open
// does, without connecting or creating anything. It lets configuration be
// validated up front; errors wrap ErrInvalidURL.
func ParseURL(databaseURL string) (Dialect, error) {
	p, err := parseURL(databaseURL)
	if err != nil {
		return "", err
	}
	return p.dialect, nil
}

// Close closes the database.
func (db *DB) Close() error {
	return db.SQL.Close()
}

// Ping checks that the database is reachable, for readiness probes.
func (db *DB) Ping(ctx context.Context) error {
	if err := db.SQL.PingContext(ctx); err != nil {
		return fmt.Errorf("ping %s database: %w", db.Dialect, err)
	}
	return nil
}

// redactedError hides a password that a driver may have put into an error
// message; errors.Is and errors.As still see the original error.
type redactedError struct {
	err     error
	secrets []string
}

func (e *redactedError) Error() string {
	text := e.err.Error()
	for _, s := range e.secrets {
		text = strings.ReplaceAll(text, s, redact.Mask)
	}
	return text
}

func (e *redactedError) Unwrap() error { return e.err }
