package redact_test

import (
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/social/user-events-router/redact"
)

func TestURL(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		// DATABASE_URL and APPLY_DATABASE_URL.
		{"postgres://app:s3cret@db:5432/router?sslmode=disable", "postgres://app:xxxxx@db:5432/router?sslmode=disable"},
		{"postgresql://app@db/router", "postgresql://app@db/router"},
		{"postgres://u@h/db?password=s3cret", "postgres://u@h/db?password=xxxxx"},
		{"postgres://db/router?user=app&password=s3cret&sslmode=require", "postgres://db/router?user=app&password=xxxxx&sslmode=require"},
		{"postgres://db/router?sslpassword=s3cret", "postgres://db/router?sslpassword=xxxxx"},
		{"postgres://db/router?PassWord=s3cret", "postgres://db/router?PassWord=xxxxx"},
		{"postgres://app:s3cret@db1:5432,db2:5433/router?target_session_attrs=read-write", "postgres://app:xxxxx@db1:5432,db2:5433/router?target_session_attrs=read-write"},
		{"postgres://app:pa,ss@db/router", "postgres://app:xxxxx@db/router"},
		{"postgres://db/router?password=se#cret&x=1", "postgres://db/router?password=xxxxx&x=1"},
		{"postgres://db/router?password=se cret", "postgres://db/router?password=xxxxx"},
		{"host=db user=app password=s3cret dbname=router", "host=db user=app password=xxxxx dbname=router"},
		{"host=db password = 's3 \\' cret' dbname=router", "host=db password = xxxxx dbname=router"},
		{"mysql://root:s3cret@127.0.0.1:3306/test?parseTime=true", "mysql://root:xxxxx@127.0.0.1:3306/test?parseTime=true"},
		{"mysql://root:p%40ss@db/test", "mysql://root:xxxxx@db/test"},
		{"mysql://root@db/test", "mysql://root@db/test"},
		{"mysql://root@db/test?passwd=s3cret", "mysql://root@db/test?passwd=xxxxx"},
		{"mysql://root:s3cret@tcp(db:3306)/test", "mysql://root:xxxxx@tcp(db:3306)/test"},
		{"root:s3cret@tcp(db:3306)/test", "root:xxxxx@tcp(db:3306)/test"}, // a go-sql-driver DSN
		{"mysql:app:s3cret@db/router", "mysql:app:xxxxx@db/router"},
		{"sqlite:/var/lib/router.db", "sqlite:/var/lib/router.db"},
		{"sqlite:/var/lib/a@b/router.db", "sqlite:/var/lib/a@b/router.db"},
		{"sqlite:file:router.db?mode=rwc", "sqlite:file:router.db?mode=rwc"},
		{"sqlite:file:router.db?_auth_pass=s3cret", "sqlite:file:router.db?_auth_pass=xxxxx"},
		// Malformed URLs are masked generously rather than leaked.
		{"postgres://app:pa%zzss@db/router", "postgres://app:xxxxx@db/router"},
		{"mysql://app:pa/ss@db:3306/router", "mysql://app:xxxxx@db:3306/router"},
		{"mysql://app:p@ss#word@db/x", "mysql://app:xxxxx@db/x"},
		{"mysql://app:1234?x@db/y", "mysql://app:xxxxx@db/y"},
		// NATS_URL.
		{"nats://127.0.0.1:4222", "nats://127.0.0.1:4222"},
		{"nats://router:s3cret@nats:4222", "nats://router:xxxxx@nats:4222"},
		{"nats://s3cret@nats:4222", "nats://xxxxx@nats:4222"}, // a token
		{"s3cret@nats:4222", "xxxxx@nats:4222"},
		{"tls://router:s3cret@nats:4222", "tls://router:xxxxx@nats:4222"},
		{"nats://nats:4222?token=s3cret", "nats://nats:4222?token=xxxxx"},
		{"nats://u:p1@h1:4222, nats://u:p2@h2:4222,nats://h3:4222", "nats://u:xxxxx@h1:4222, nats://u:xxxxx@h2:4222,nats://h3:4222"},
		{"nats://tok1@h1:4222,tok2@h2:4222", "nats://xxxxx@h1:4222,xxxxx@h2:4222"},
		{"h1:4222,h2:4222", "h1:4222,h2:4222"},
		{"nats://[::1]:4222,nats://u:p@[::1]:4223", "nats://xxxxx@[::1]:4223"}, // see below
		// Lists that do not split cleanly are masked as one string.
		{"nats://u:pa,ss@h1:4222", "nats://xxxxx@h1:4222"},
		{"nats://h1:4222,nats://u:p@h2:4222", "nats://xxxxx@h2:4222"},
		{"nats://u:p@ss@h1:4222,nats://h2:4222", "nats://xxxxx@h1:4222,nats://h2:4222"},
		{"nats://tok@h1:4222/x?a=b,nats://h2:4222", "nats://xxxxx@h1:4222/x?a=b,nats://h2:4222"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := redact.URL(tt.in); got != tt.want {
			t.Errorf("URL(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// Forms is every form of DATABASE_URL, APPLY_DATABASE_URL and NATS_URL the
// fuzz test puts a secret in. {raw} is the secret as written, {query} the
// secret escaped for a query string and {quoted} quoted for a key=value
// string.
var forms = []string{
	"postgres://app:{raw}@db.internal:5432/router?sslmode=disable",
	"postgresql://app:{raw}@db1.internal:5432,db2.internal:5433/router",
	"postgres://app@db.internal/router?sslmode=require&password={query}",
	"postgres://db.internal/router?sslpassword={query}&user=app",
	"host=db.internal user=app password={quoted} dbname=router",
	"mysql://app:{raw}@db.internal:3306/router?parseTime=true",
	"mysql://app:{raw}@tcp(db.internal:3306)/router",
	"app:{raw}@tcp(db.internal:3306)/router",
	"sqlite:file:router.db?_auth_pass={query}",
	"nats://router:{raw}@nats.internal:4222",
	"nats://{raw}@nats.internal:4222",
	"{raw}@nats.internal:4222",
	"nats://nats.internal:4222?token={query}",
	"nats://router:{raw}@n1.internal:4222,nats://router:{raw}@n2.internal:4222",
	"nats://{raw}@n1.internal:4222, {raw}@n2.internal:4222",
	"nats://n1.internal:4222,nats://router:{raw}@n2.internal:4222",
}

// Fill puts secret into form.
func Fill(form, secret string) string {
	quoted := "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(secret) + "'"
	return strings.NewReplacer("{raw}", secret, "{query}", url.QueryEscape(secret), "{quoted}", quoted).Replace(form)
}

// FuzzURL checks that no secret, however odd, survives URL in any form the
// router reads one in.
func FuzzURL(f *testing.F) {
	for _, seed := range []string{"s3cret", "p@ss/w#rd?x", "pa%zzss", "a:b:c", "new\nline", "sp ace", "%40%2F", "a,b@c", "it's", `back\slash`, "&x=1"} {
		for i := range forms {
			f.Add(i, seed)
		}
	}
	f.Fuzz(func(t *testing.T, i int, secret string) {
		if i < 0 {
			i = -i
		}
		form := forms[i%len(forms)]
		raw := Fill(form, secret)
		skeleton := Fill(form, redact.Mask)
		got := redact.URL(raw)
		for _, s := range []string{secret, url.QueryEscape(secret)} {
			if len(s) < 4 || strings.Contains(skeleton, s) || strings.Contains(s, redact.Mask) || strings.TrimSpace(s) == "" {
				continue // text the redacted string has anyway, or blanks around a URL
			}
			// The mask's letters must not complete a secret ending in "x".
			if strings.Contains(strings.ReplaceAll(got, redact.Mask, unlike(s)), s) {
				t.Errorf("URL(%q) = %q leaks %q", raw, got, s)
			}
		}
	})
}

// unlike is a character s does not hold.
func unlike(s string) string {
	for c := rune(0); ; c++ {
		if !strings.ContainsRune(s, c) {
			return string(c)
		}
	}
}

func ExampleURL() {
	fmt.Println(redact.URL("postgres://router:s3cret@db.internal:5432/social?sslmode=require"))
	fmt.Println(redact.URL("postgres://router@db.internal/social?password=s3cret"))
	fmt.Println(redact.URL("mysql://root:s3cret@127.0.0.1:3306/social?parseTime=true"))
	fmt.Println(redact.URL("sqlite:/var/lib/router/router.db"))
	fmt.Println(redact.URL("nats://router:s3cret@n1:4222,nats://router:s3cret@n2:4222"))
	fmt.Println(redact.URL("nats://s3cr3t-token@nats:4222"))
	// Output:
	// postgres://router:xxxxx@db.internal:5432/social?sslmode=require
	// postgres://router@db.internal/social?password=xxxxx
	// mysql://root:xxxxx@127.0.0.1:3306/social?parseTime=true
	// sqlite:/var/lib/router/router.db
	// nats://router:xxxxx@n1:4222,nats://router:xxxxx@n2:4222
	// nats://xxxxx@nats:4222
}
