package store

import (
	"database/sql"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/social/user-events-router/redact"
)

// minScrubLen is the shortest password that is also masked inside driver
// error text. Masking shorter strings would mangle every message (a one-letter
// password occurs in most words) while hiding next to nothing.
const minScrubLen = 4

// SQLite options every connection gets. They are DSN parameters rather than
// statements run once because database/sql opens connections on its own and
// busy_timeout, synchronous and foreign_keys are per connection.
//
//   - journal_mode(WAL): readers never block the writer or each other, so
//     health checks and the poison API keep working while a command commits.
//   - busy_timeout(10000): a connection that finds the database locked waits
//     up to 10 s for the lock instead of failing at once with SQLITE_BUSY.
//   - synchronous(FULL): a commit is on disk when it returns; the router acks
//     NATS only after a commit, so a commit must survive a power cut.
//   - foreign_keys(1): SQLite ignores foreign keys unless asked.
//   - _txlock=immediate: every read-write transaction takes the write lock at
//     BEGIN; see SQLiteOffsetsAdapter for why subscribers depend on it.
var sqlitePragmas = []struct{ name, value string }{
	{"busy_timeout", "10000"},
	{"journal_mode", "WAL"},
	{"synchronous", "FULL"},
	{"foreign_keys", "1"},
}

// parsedURL is a checked DATABASE_URL, ready to be opened.
type parsedURL struct {
	dialect Dialect
	// secrets are the strings of the URL that redact.URL hides; errors
	// must not show them either.
	secrets []string

	pgx       *pgx.ConnConfig // Postgres
	mysql     *mysql.Config   // MySQL
	sqliteDSN string          // SQLite: DSN for modernc.org/sqlite
	sqliteDir string          // SQLite: directory to create, "" if none
}

func parseURL(databaseURL string) (*parsedURL, error) {
	if strings.TrimSpace(databaseURL) == "" {
		return nil, fmt.Errorf("%w: empty (want postgres://…, mysql://… or sqlite:PATH)", ErrInvalidURL)
	}
	scheme, rest, ok := strings.Cut(databaseURL, ":")
	if !ok {
		return nil, invalidURL(databaseURL, "no scheme (want postgres://…, mysql://… or sqlite:PATH)")
	}
	var (
		p   *parsedURL
		err error
	)
	switch scheme {
	case "postgres", "postgresql":
		p, err = parsePostgres(databaseURL)
	case "mysql":
		p, err = parseMySQL(databaseURL)
	case "sqlite":
		p, err = parseSQLite(databaseURL, rest)
	default:
		return nil, invalidURL(databaseURL, fmt.Sprintf("unsupported scheme %q (want postgres, postgresql, mysql or sqlite)", scheme))
	}
	if err != nil {
		return nil, err
	}
	return p, nil
}

// invalidURL builds an ErrInvalidURL error that names the URL, redacted, and
// the problem.
func invalidURL(databaseURL, problem string) error {
	return fmt.Errorf("%w %q: %s", ErrInvalidURL, redact.URL(databaseURL), problem)
}

// urlProblem is the message of a url.Parse error without the URL, which
// url.Error would otherwise repeat with its password.
func urlProblem(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return err.Error()
}

func parsePostgres(databaseURL string) (*parsedURL, error) {
	p := &parsedURL{dialect: Postgres, secrets: redact.Secrets(databaseURL)}
	// pgx parses the URL itself: it accepts more than net/url does, such as
	// several hosts (postgres://h1:5432,h2:5432/db).
	cfg, err := pgx.ParseConfig(databaseURL)
	if err != nil {
		return nil, p.scrub(invalidURL(databaseURL, pgxProblem(err)))
	}
	p.pgx = cfg
	return p, nil
}

// pgxProblem is the message of a pgx parse error without the connection
// string: pgx masks passwords in it only on a best-effort basis, and the
// error it wraps may quote the URL verbatim.
func pgxProblem(err error) string {
	var pe *pgconn.ParseConfigError
	if !errors.As(err, &pe) {
		return err.Error()
	}
	bare := *pe
	bare.ConnString = ""
	text := strings.TrimPrefix(bare.Error(), "cannot parse ``: ")
	if inner := pe.Unwrap(); inner != nil {
		text = strings.Replace(text, inner.Error(), urlProblem(inner), 1)
	}
	return text
}

func parseMySQL(databaseURL string) (*parsedURL, error) {
	p := &parsedURL{dialect: MySQL, secrets: redact.Secrets(databaseURL)}
	u, err := url.Parse(databaseURL)
	if err != nil {
		return nil, p.scrub(invalidURL(databaseURL, urlProblem(err)))
	}
	password, _ := u.User.Password()
	if u.Opaque != "" {
		return nil, p.scrub(invalidURL(databaseURL, "want mysql://user:pass@host:port/db"))
	}
	if u.Host == "" {
		return nil, p.scrub(invalidURL(databaseURL, "missing host (want mysql://user:pass@host:port/db)"))
	}
	dbName := strings.TrimPrefix(u.Path, "/")
	if dbName == "" || strings.Contains(dbName, "/") {
		return nil, p.scrub(invalidURL(databaseURL, "the path must be exactly one database name (want mysql://user:pass@host:port/db)"))
	}
	// The query string is the driver's own DSN parameter list, so let the
	// driver parse it: every parameter it knows keeps its meaning and the
	// rest become session variables, as in a go-sql-driver DSN.
	cfg, err := mysql.ParseDSN("/?" + u.RawQuery)
	if err != nil {
		return nil, p.scrub(invalidURL(databaseURL, "bad parameter: "+err.Error()))
	}
	cfg.User = u.User.Username()
	cfg.Passwd = password
	cfg.Net = "tcp"
	cfg.Addr = u.Host
	if u.Port() == "" {
		cfg.Addr = net.JoinHostPort(u.Hostname(), "3306")
	}
	cfg.DBName = dbName
	// watermill-sql does not need it, but code scanning created_at or other
	// DATETIME columns into time.Time does.
	cfg.ParseTime = true
	p.mysql = cfg
	return p, nil
}

var sqliteMemory = regexp.MustCompile(`(^|[?&])mode=memory(&|$)`)

func parseSQLite(databaseURL, rest string) (*parsedURL, error) {
	p := &parsedURL{dialect: SQLite}
	if strings.HasPrefix(rest, "//") {
		rest = rest[2:] // sqlite://PATH: the rest is the path, not a host
	}
	if rest == "" {
		return nil, invalidURL(databaseURL, "missing file path (want sqlite:PATH)")
	}

	var path, rawQuery string
	if strings.HasPrefix(rest, "file:") {
		// An SQLite URI filename; the driver hands it to SQLite as it is.
		fileURI, q, _ := strings.Cut(rest, "?")
		rawQuery = q
		u, err := url.Parse(fileURI)
		if err != nil {
			return nil, invalidURL(databaseURL, urlProblem(err))
		}
		switch {
		case u.Opaque != "":
			path, err = url.PathUnescape(u.Opaque)
			if err != nil {
				return nil, invalidURL(databaseURL, urlProblem(err))
			}
		case u.Host != "" && u.Host != "localhost":
			return nil, invalidURL(databaseURL, fmt.Sprintf("file URI names host %q; SQLite opens local files only", u.Host))
		default:
			path = u.Path
		}
	} else {
		path, rawQuery, _ = strings.Cut(rest, "?")
	}
	if path == "" {
		return nil, invalidURL(databaseURL, "missing file path (want sqlite:PATH)")
	}
	if path == ":memory:" || sqliteMemory.MatchString(rawQuery) {
		return nil, invalidURL(databaseURL, "in-memory SQLite loses every command on exit and differs per connection; use a file")
	}

	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return nil, invalidURL(databaseURL, "bad parameters: "+err.Error())
	}
	if v := q.Get("_txlock"); v != "" && !strings.EqualFold(v, "immediate") {
		return nil, invalidURL(databaseURL, fmt.Sprintf("_txlock=%s: the router needs _txlock=immediate (subscribers rely on it to exclude each other)", v))
	}
	q.Set("_txlock", "immediate")
	// The caller's own _pragma values win: ours are added only for pragmas
	// not already named.
	for _, pr := range sqlitePragmas {
		if !hasPragma(q["_pragma"], pr.name) {
			q.Add("_pragma", pr.name+"("+pr.value+")")
		}
	}

	head := rest
	if i := strings.IndexByte(rest, '?'); i >= 0 {
		head = rest[:i]
	}
	p.sqliteDSN = head + "?" + q.Encode()
	if dir := filepath.Dir(path); dir != "." && dir != "" {
		p.sqliteDir = dir
	}
	return p, nil
}

// hasPragma reports whether a _pragma value list sets the named pragma, e.g.
// "busy_timeout(5000)" or "busy_timeout = 5000".
func hasPragma(values []string, name string) bool {
	for _, v := range values {
		v = strings.ToLower(strings.TrimSpace(v))
		if rest, ok := strings.CutPrefix(v, name); ok {
			rest = strings.TrimSpace(rest)
			if rest == "" || rest[0] == '(' || rest[0] == '=' {
				return true
			}
		}
	}
	return false
}

// open creates the *sql.DB without connecting.
func (p *parsedURL) open() (*sql.DB, error) {
	switch p.dialect {
	case Postgres:
		return stdlib.OpenDB(*p.pgx), nil
	case MySQL:
		connector, err := mysql.NewConnector(p.mysql)
		if err != nil {
			return nil, err
		}
		return sql.OpenDB(connector), nil
	case SQLite:
		if p.sqliteDir != "" {
			if err := os.MkdirAll(p.sqliteDir, 0o750); err != nil {
				return nil, fmt.Errorf("create directory for SQLite file: %w", err)
			}
		}
		return sql.Open("sqlite", p.sqliteDSN)
	default:
		return nil, fmt.Errorf("unknown dialect %q", p.dialect)
	}
}

// scrub masks the URL's secrets wherever a driver or parser may have echoed
// them in err.
func (p *parsedURL) scrub(err error) error {
	if err == nil {
		return nil
	}
	var leaked []string
	for _, s := range p.secrets {
		if len(s) >= minScrubLen && strings.Contains(err.Error(), s) {
			leaked = append(leaked, s)
		}
	}
	if len(leaked) == 0 {
		return err
	}
	return &redactedError{err: err, secrets: leaked}
}
