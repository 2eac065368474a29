package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"strings"

	"github.com/go-sql-driver/mysql"
)

// ErrNoDatabase is returned by OpenReadOnly and OpenExisting for a SQLite
// file that does not exist: they do not create one.
var ErrNoDatabase = errors.New("no such database")

// OpenReadOnly opens databaseURL for a command that only reads — `check`'s
// look at the catalog, `poison list|show|stats`, a dry run — so that it
// changes nothing, by construction rather than by care: it creates no
// SQLite file and no directory (a missing file is ErrNoDatabase), and the
// session itself refuses writes, so neither it nor any code it calls can
// create a table or store a row. SQLite is opened with mode=ro and
// query_only, PostgreSQL with default_transaction_read_only, MySQL/MariaDB
// with a read-only session (transaction_read_only, or tx_read_only on a
// server that predates it). It does not set SQLite's journal mode, which
// would be a write.
func OpenReadOnly(ctx context.Context, databaseURL string) (*DB, error) {
	return openAs(ctx, databaseURL, true)
}

// OpenExisting opens databaseURL like Open but never creates the SQLite
// file or its directory (a missing file is ErrNoDatabase): for `check`,
// which proves the tables writable with inserts it rolls back.
func OpenExisting(ctx context.Context, databaseURL string) (*DB, error) {
	return openAs(ctx, databaseURL, false)
}

func openAs(ctx context.Context, databaseURL string, readOnly bool) (*DB, error) {
	p, err := parseURL(databaseURL)
	if err != nil {
		return nil, err
	}
	switch p.dialect {
	case SQLite:
		path, err := p.sqliteExisting(readOnly)
		if err != nil {
			return nil, err
		}
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w: SQLite file %s does not exist; the router creates it when it starts (serve)", ErrNoDatabase, path)
		} else if err != nil {
			return nil, fmt.Errorf("SQLite file %s: %w", path, err)
		}
	case Postgres:
		if readOnly {
			cfg := p.pgx.Copy()
			cfg.RuntimeParams["default_transaction_read_only"] = "on"
			p.pgx = cfg
		}
	case MySQL:
		if readOnly {
			return openMySQLReadOnly(ctx, databaseURL, p)
		}
	}
	return p.connect(ctx, databaseURL)
}

// sqliteExisting turns p's DSN into a SQLite URI that opens the file only
// if it exists (mode=rw), or read-only (mode=ro, query_only, deferred
// transactions, no journal_mode), creates no directory, and returns the
// file's path.
func (p *parsedURL) sqliteExisting(readOnly bool) (string, error) {
	head, rawQuery, _ := strings.Cut(p.sqliteDSN, "?")
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return "", err
	}
	path := head
	if u, ok := strings.CutPrefix(head, "file:"); ok {
		fu, err := url.Parse("file:" + u)
		if err != nil {
			return "", err
		}
		path = fu.Opaque
		if path == "" {
			path = fu.Path
		}
		if path, err = url.PathUnescape(path); err != nil {
			return "", err
		}
	}
	mode := "rw"
	if readOnly {
		mode = "ro"
		q.Set("_txlock", "deferred")
		var pragmas []string
		for _, pr := range q["_pragma"] {
			if !hasPragma([]string{pr}, "journal_mode") && !hasPragma([]string{pr}, "query_only") {
				pragmas = append(pragmas, pr)
			}
		}
		q["_pragma"] = append(pragmas, "query_only(1)")
	}
	q.Set("mode", mode)
	// In a URI filename SQLite decodes %HH: escape what would end the path.
	escaped := strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(path)
	p.sqliteDSN = "file:" + escaped + "?" + q.Encode()
	p.sqliteDir = ""
	return path, nil
}

// openMySQLReadOnly opens a read-only MySQL/MariaDB session: MySQL 8 and
// MariaDB 11.1 call the variable transaction_read_only, older MariaDB
// tx_read_only; the one the server does not know fails the connection.
func openMySQLReadOnly(ctx context.Context, databaseURL string, p *parsedURL) (*DB, error) {
	base := p.mysql
	var firstErr error
	for _, name := range []string{"transaction_read_only", "tx_read_only"} {
		cfg := base.Clone()
		if cfg.Params == nil {
			cfg.Params = map[string]string{}
		}
		cfg.Params[name] = "1"
		p.mysql = cfg
		db, err := p.connect(ctx, databaseURL)
		if err == nil {
			return db, nil
		}
		var me *mysql.MySQLError
		if !errors.As(err, &me) || me.Number != 1193 { // ER_UNKNOWN_SYSTEM_VARIABLE
			return nil, err
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	return nil, firstErr
}
