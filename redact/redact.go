// Package redact hides the secrets in connection strings before they reach
// a log line, an error or a command's output. It is the one redactor for
// every URL the router is configured with (DATABASE_URL, APPLY_DATABASE_URL,
// NATS_URL and the flags that stand in for them), so that the "starting"
// line, `check` and every error mask the same things. It sits in a package
// of its own because both configs (which logs the configuration) and store
// (which names the database in its errors) need it, and neither should
// import the other.
package redact

import (
	"net/url"
	"regexp"
	"strings"
)

// Mask replaces every secret. It is the mask net/url's URL.Redacted uses, so
// both spellings look alike.
const Mask = "xxxxx"

var (
	// schemePrefix is "scheme://" or "scheme:" (mysql:user:pass@host, or
	// the "user:" of a scheme-less user:pass@host).
	schemePrefix = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.-]*:(?://)?`)
	// queryParam finds a secret-named query parameter (password=,
	// sslpassword=, passwd=, token=, auth_token=, client_secret=, pwd=, …).
	// The value runs to the next "&": a raw "#" or space in it is still
	// masked rather than read as the end of the URL.
	queryParam = regexp.MustCompile(`(?i)([?&][^=&]*(?:pass|pwd|token|secret)[^=&]*=)[^&]*`)
	// keywordForm is a key=value connection string.
	keywordForm = regexp.MustCompile(`^\s*[A-Za-z_][A-Za-z0-9_.-]*\s*=`)
	// keywordParam finds the same names in a key=value connection string
	// (PostgreSQL's "host=db password=s3cret"), with libpq's quoting.
	keywordParam = regexp.MustCompile(`(?i)((?:^|\s)[A-Za-z0-9_.-]*(?:pass|pwd|token|secret)[A-Za-z0-9_.-]*\s*=\s*)(?:'(?:[^'\\]|\\.)*'?|\S*)`)
)

// URL returns s with every secret replaced by Mask:
//
//   - the password of the user information (scheme://user:PASSWORD@host),
//     up to the last "@", so that a password net/url cannot parse, or parses
//     differently than meant (an unescaped "@", "/", "?" or "#"), is still
//     hidden;
//   - a user that is itself the credential: a NATS token
//     (nats://TOKEN@host), and any user without a password under a scheme
//     that is not a database's (postgres, postgresql, mysql and sqlite users
//     are names, shown);
//   - the value of every secret-named parameter, in a query string
//     (?password=, &sslpassword=, ?token=) or a key=value string
//     (password='…');
//   - in a comma-separated list of NATS URLs, each URL's secrets, URL by URL
//     as the NATS client splits the list. A list that does not split
//     cleanly into URLs with one user information each is masked as one
//     string, from the first user information to the last "@", users and
//     hosts included.
//
// It works on the text rather than on a parsed URL so that it also masks
// what net/url cannot parse, and so that the rest reads exactly as written.
// When the text is ambiguous it hides more than the secret rather than less.
func URL(s string) string {
	out, _ := redact(s)
	return out
}

// Secrets returns the strings URL masks in s, each as written and, where it
// differs, percent-decoded (as a driver may quote it in an error), so that
// text that repeats them can be scrubbed too.
func Secrets(s string) []string {
	_, found := redact(s)
	var secrets []string
	for _, f := range found {
		secrets = append(secrets, f)
		for _, unescape := range []func(string) (string, error){url.PathUnescape, url.QueryUnescape} {
			if d, err := unescape(f); err == nil && d != f {
				secrets = append(secrets, d)
			}
		}
	}
	return secrets
}

// masker replaces secrets with Mask and keeps what it replaced.
type masker struct{ found []string }

func (m *masker) mask(secret string) string {
	if secret != "" {
		m.found = append(m.found, secret)
	}
	return Mask
}

func redact(s string) (string, []string) {
	m := &masker{}
	var out string
	switch parts := strings.Split(s, ","); {
	case keywordForm.MatchString(s):
		// Its values may hold an "@" or a ",": mask them before the user
		// information is looked for, and never split it.
		out = m.userinfo(m.params(s), false)
	case len(parts) > 1 && !databaseScheme(s) && !cleanList(parts):
		// The first ":" may be a port and the first "@" inside a secret:
		// mask all of it.
		out = m.params(m.userinfo(s, true))
	case len(parts) > 1 && !databaseScheme(s):
		for i, p := range parts {
			parts[i] = m.params(m.userinfo(p, false))
		}
		out = strings.Join(parts, ",")
	default:
		out = m.params(m.userinfo(s, false))
	}
	return out, m.found
}

func (m *masker) params(s string) string {
	for _, re := range []*regexp.Regexp{queryParam, keywordParam} {
		s = re.ReplaceAllStringFunc(s, func(match string) string {
			sub := re.FindStringSubmatchIndex(match)
			return match[:sub[3]] + m.mask(match[sub[3]:])
		})
	}
	return s
}

// userinfo masks the secret part of the user information: everything after
// the user's ":" up to the last "@", or the whole user when it stands alone
// and is not a database user name. whole masks the user too.
func (m *masker) userinfo(s string, whole bool) string {
	start := len(s) - len(strings.TrimLeft(s, " \t"))
	scheme := ""
	if loc := schemePrefix.FindStringIndex(s[start:]); loc != nil {
		name := strings.ToLower(s[start : start+strings.IndexByte(s[start:], ':')])
		// "name:" without "//" is a scheme only when it is one the router
		// reads; otherwise it is the user of user:password@host.
		if strings.HasSuffix(s[start:start+loc[1]], "//") || knownScheme(name) {
			scheme = name
			start += loc[1]
		}
	}
	at := strings.LastIndexByte(s, '@')
	if at < start {
		return s
	}
	info := s[start:at]
	// An empty password ("user:@host") may be a token with a ":" in it:
	// then the user goes too.
	if colon := strings.IndexByte(info, ':'); colon >= 0 && colon < len(info)-1 && !whole {
		return s[:start+colon+1] + m.mask(info[colon+1:]) + s[at:]
	}
	if userIsName(scheme) && !whole && !strings.Contains(info, ":") {
		return s
	}
	return s[:start] + m.mask(info) + s[at:]
}

// databaseScheme reports whether s is a database URL: never a list (a
// PostgreSQL URL may name several hosts, h1,h2, within one authority).
func databaseScheme(s string) bool {
	scheme, _, ok := strings.Cut(strings.TrimSpace(s), ":")
	return ok && userIsName(strings.ToLower(scheme))
}

// knownScheme reports whether scheme is one DATABASE_URL or NATS_URL takes.
func knownScheme(scheme string) bool {
	switch scheme {
	case "nats", "tls", "ws", "wss":
		return true
	}
	return userIsName(scheme)
}

// userIsName reports whether a user without a password is a name rather
// than a credential under scheme.
func userIsName(scheme string) bool {
	switch scheme {
	case "postgres", "postgresql", "mysql", "sqlite":
		return true
	}
	return false
}

// cleanList reports whether parts, a comma-split NATS_URL, are URLs that can
// be redacted one by one without the risk that a secret spans a comma: no
// parameters (a value may hold a comma), at most one "@" per URL, the URLs
// with user information first, and each user information one that net/url
// reads as such, with a non-empty secret.
func cleanList(parts []string) bool {
	sawPlain := false
	for _, p := range parts {
		p = strings.TrimSpace(p)
		if strings.ContainsAny(p, "= \t\n") {
			return false
		}
		switch strings.Count(p, "@") {
		case 0:
			sawPlain = true
			continue
		case 1:
		default:
			return false
		}
		if sawPlain {
			// "nats://h1,nats://u:p@h2" may be "nats://h1,nats://u:" and a
			// password ",p": mask the whole.
			return false
		}
		if !strings.Contains(p, "://") {
			p = "nats://" + p // the NATS client's reading of host:port
		}
		u, err := url.Parse(p)
		if err != nil || u.User == nil {
			return false
		}
		if pw, ok := u.User.Password(); (ok && pw == "") || (!ok && u.User.Username() == "") {
			return false
		}
	}
	return true
}
