package store

import (
	"errors"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/social/user-events-router/redact"
)

func TestParseURL(t *testing.T) {
	t.Parallel()

	dir := t.TempDir()
	tests := []struct {
		name  string
		url   string
		check func(t *testing.T, p *parsedURL)
	}{
		{
			name: "postgres",
			url:  "postgres://app:s3cret-pw@db.internal:6543/router?sslmode=disable&search_path=t_1",
			check: func(t *testing.T, p *parsedURL) {
				c := p.pgx
				if c.Host != "db.internal" || c.Port != 6543 || c.Database != "router" || c.User != "app" || c.Password != "s3cret-pw" {
					t.Errorf("pgx config = %s@%s:%d/%s", c.User, c.Host, c.Port, c.Database)
				}
				if got := c.RuntimeParams["search_path"]; got != "t_1" {
					t.Errorf("search_path = %q, want t_1", got)
				}
			},
		},
		{
			name: "postgresql scheme",
			url:  "postgresql://app@localhost/router",
			check: func(t *testing.T, p *parsedURL) {
				if p.pgx.Database != "router" {
					t.Errorf("database = %q", p.pgx.Database)
				}
			},
		},
		{
			name: "mysql with params",
			url:  "mysql://app:p%40ss%2Fw0rd@db.internal:3307/router?timeout=5s&charset=utf8mb4&time_zone=%27%2B00%3A00%27",
			check: func(t *testing.T, p *parsedURL) {
				c := p.mysql
				if c.User != "app" || c.Passwd != "p@ss/w0rd" || c.Addr != "db.internal:3307" || c.DBName != "router" || c.Net != "tcp" {
					t.Errorf("mysql config = %s:%s@%s(%s)/%s", c.User, c.Passwd, c.Net, c.Addr, c.DBName)
				}
				if !c.ParseTime {
					t.Error("parseTime is off")
				}
				if c.Timeout.String() != "5s" {
					t.Errorf("timeout = %s, want 5s", c.Timeout)
				}
				if dsn := c.FormatDSN(); !strings.Contains(dsn, "charset=utf8mb4") || !strings.Contains(dsn, "time_zone=%27%2B00%3A00%27") {
					t.Errorf("DSN = %q, want charset and time_zone kept", dsn)
				}
			},
		},
		{
			name: "mysql default port, parseTime forced",
			url:  "mysql://root@localhost/test?parseTime=false",
			check: func(t *testing.T, p *parsedURL) {
				if p.mysql.Addr != "localhost:3306" {
					t.Errorf("addr = %q, want localhost:3306", p.mysql.Addr)
				}
				if !p.mysql.ParseTime {
					t.Error("parseTime is off")
				}
			},
		},
		{
			name:  "sqlite path",
			url:   "sqlite:" + filepath.Join(dir, "a", "router.db"),
			check: wantSQLite(filepath.Join(dir, "a", "router.db")+"?", filepath.Join(dir, "a")),
		},
		{
			name:  "sqlite relative path",
			url:   "sqlite:data/router.db",
			check: wantSQLite("data/router.db?", "data"),
		},
		{
			name:  "sqlite bare file name",
			url:   "sqlite:router.db",
			check: wantSQLite("router.db?", ""),
		},
		{
			name:  "sqlite:// absolute",
			url:   "sqlite:///var/lib/router/router.db",
			check: wantSQLite("/var/lib/router/router.db?", "/var/lib/router"),
		},
		{
			name:  "sqlite:// relative",
			url:   "sqlite://data/router.db",
			check: wantSQLite("data/router.db?", "data"),
		},
		{
			name:  "sqlite file URI",
			url:   "sqlite:file:/var/lib/router/router.db?mode=rwc&cache=private",
			check: wantSQLite("file:/var/lib/router/router.db?", "/var/lib/router"),
		},
		{
			name:  "sqlite file URI with authority",
			url:   "sqlite:file:///var/lib/router.db",
			check: wantSQLite("file:///var/lib/router.db?", "/var/lib"),
		},
		{
			name: "sqlite caller pragma wins",
			url:  "sqlite:/tmp/x.db?_pragma=busy_timeout(250)&_txlock=IMMEDIATE",
			check: func(t *testing.T, p *parsedURL) {
				q := dsnQuery(t, p.sqliteDSN)
				if got := strings.Join(q["_pragma"], ","); strings.Contains(got, "busy_timeout(10000)") || !strings.Contains(got, "busy_timeout(250)") {
					t.Errorf("_pragma = %s, want the caller's busy_timeout only", got)
				}
				if !strings.Contains(strings.Join(q["_pragma"], ","), "journal_mode(WAL)") {
					t.Errorf("_pragma = %v, want journal_mode(WAL) still added", q["_pragma"])
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, err := parseURL(tt.url)
			if err != nil {
				t.Fatalf("parseURL(%q): %v", tt.url, err)
			}
			tt.check(t, p)
		})
	}
}

// wantSQLite checks the DSN's file part and the directory Open would create,
// and that every connection option the subscribers depend on is present.
func wantSQLite(dsnPrefix, dir string) func(t *testing.T, p *parsedURL) {
	return func(t *testing.T, p *parsedURL) {
		t.Helper()
		if p.dialect != SQLite {
			t.Fatalf("dialect = %s", p.dialect)
		}
		if !strings.HasPrefix(p.sqliteDSN, dsnPrefix) {
			t.Errorf("DSN = %q, want prefix %q", p.sqliteDSN, dsnPrefix)
		}
		if p.sqliteDir != dir {
			t.Errorf("dir = %q, want %q", p.sqliteDir, dir)
		}
		q := dsnQuery(t, p.sqliteDSN)
		if got := q.Get("_txlock"); got != "immediate" {
			t.Errorf("_txlock = %q, want immediate", got)
		}
		for _, want := range []string{"busy_timeout(10000)", "journal_mode(WAL)", "synchronous(FULL)", "foreign_keys(1)"} {
			if !strings.Contains(strings.Join(q["_pragma"], ","), want) {
				t.Errorf("_pragma = %v, missing %s", q["_pragma"], want)
			}
		}
	}
}

func dsnQuery(t *testing.T, dsn string) url.Values {
	t.Helper()
	_, raw, _ := strings.Cut(dsn, "?")
	q, err := url.ParseQuery(raw)
	if err != nil {
		t.Fatalf("DSN %q: %v", dsn, err)
	}
	return q
}

func TestParseURLRejects(t *testing.T) {
	t.Parallel()

	const password = "Hunter2-secret"
	tests := []struct {
		name    string
		url     string
		problem string // part of the message that names the problem
	}{
		{"empty", "", "empty"},
		{"blank", "   ", "empty"},
		{"no scheme", "localhost/db", "no scheme"},
		{"unknown scheme", "oracle://scott:" + password + "@db/orcl", `unsupported scheme "oracle"`},
		{"postgres bad port", "postgres://app:" + password + "@db:notaport/router", "invalid port"},
		{"postgres bad escape", "postgres://app:" + password + "@db/router?sslmode=%zz", `"%zz"`},
		{"postgres bad sslmode", "postgres://app:" + password + "@db/router?sslmode=sometimes", "sslmode"},
		{"mysql no host", "mysql://app:" + password + "@/router", "missing host"},
		{"mysql no database", "mysql://app:" + password + "@db:3306", "database name"},
		{"mysql nested path", "mysql://app:" + password + "@db:3306/a/b", "database name"},
		{"mysql bad param", "mysql://app:" + password + "@db/router?timeout=soon", "bad parameter"},
		{"mysql opaque", "mysql:app:" + password + "@db/router", "want mysql://"},
		{"sqlite no path", "sqlite:", "missing file path"},
		{"sqlite:// no path", "sqlite://", "missing file path"},
		{"sqlite memory", "sqlite::memory:", "in-memory"},
		{"sqlite memory URI", "sqlite:file:x.db?mode=memory&cache=shared", "in-memory"},
		{"sqlite other txlock", "sqlite:/tmp/x.db?_txlock=deferred", "_txlock=immediate"},
		{"sqlite remote file URI", "sqlite:file://otherhost/x.db", "host"},
		{"sqlite bad params", "sqlite:/tmp/x.db?a=%zz", "bad parameters"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := parseURL(tt.url)
			if err == nil {
				t.Fatalf("parseURL(%q) succeeded, want an error", tt.url)
			}
			if !errors.Is(err, ErrInvalidURL) {
				t.Errorf("error %q does not wrap ErrInvalidURL", err)
			}
			if !strings.Contains(err.Error(), tt.problem) {
				t.Errorf("error %q does not name the problem (%q)", err, tt.problem)
			}
			if strings.Contains(err.Error(), password) {
				t.Errorf("error %q leaks the password", err)
			}
		})
	}
}

// FuzzRedact checks that no password, however odd, survives redact.URL or
// an error from parsing the URL that carries it, in any form DATABASE_URL
// takes one.
func FuzzRedact(f *testing.F) {
	forms := []string{
		"postgres://app:{raw}@db.internal:5432/router?sslmode=disable",
		"postgresql://app:{raw}@db1.internal:5432,db2.internal:5433/router",
		"postgres://app@db.internal/router?sslmode=require&password={query}",
		"postgres://db.internal/router?sslpassword={query}&user=app",
		"mysql://app:{raw}@db.internal:3306/router?parseTime=true",
		"mysql://app:{raw}@tcp(db.internal:3306)/router",
		"mysql://app@db.internal:3306/router?passwd={query}",
	}
	for _, seed := range []string{"s3cret", "p@ss/w#rd?x", "pa%zzss", "a:b:c", "new\nline", "sp ace", "%40%2F", "a,b@c", "+plus+"} {
		for i := range forms {
			f.Add(i, seed)
		}
	}
	f.Fuzz(func(t *testing.T, i int, password string) {
		form := forms[(i%len(forms)+len(forms))%len(forms)]
		fill := func(secret string) string {
			return strings.NewReplacer("{raw}", secret, "{query}", url.QueryEscape(secret)).Replace(form)
		}
		raw, skeleton := fill(password), fill(redact.Mask)
		if len(password) < minScrubLen || strings.Contains(skeleton, password) || strings.Contains(password, redact.Mask) ||
			strings.Contains(password, "@db") {
			return // the password is text the redacted URL has anyway
		}
		if got := redact.URL(raw); strings.Contains(got, password) {
			t.Errorf("redact.URL(%q) = %q leaks the password", raw, got)
		}
		if _, err := parseURL(raw); err != nil && strings.Contains(err.Error(), password) {
			t.Errorf("parseURL(%q) error %q leaks the password", raw, err)
		}
	})
}

func TestParseURLPostgresMultiHost(t *testing.T) {
	t.Parallel()
	p, err := parseURL("postgres://app:s3cret@db1:5432,db2:5433/router?target_session_attrs=read-write")
	if err != nil {
		t.Fatal(err)
	}
	var hosts []string
	for _, fb := range p.pgx.Fallbacks {
		hosts = append(hosts, fb.Host)
	}
	if !slices.Contains(hosts, "db2") {
		t.Errorf("fallback hosts = %v, want db2 among them", hosts)
	}
}
