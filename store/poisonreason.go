package store

import (
	"regexp"
	"strings"
	"unicode/utf8"
)

// maxReasonKind bounds a reason kind, which is indexed.
const maxReasonKind = 200

// ReasonKind is what a poison reason says without the values it quotes: the
// field and the rule, so that `email: not an email address: "x"` and the
// same for "y" count as one kind in stats and can be listed together. It
// drops the "decode <subject>: " and "invalid event: " prefixes (the subject
// and class are counted on their own), writes quoted values and ids as "…"
// and numbers as "N", and keeps the rest, problem by problem:
//
//	decode user.events.created: invalid event: email: not an email address: "x" (domain has no dot)
//	→ email: not an email address: … (domain has no dot)
//
// It is idempotent: a kind is its own kind.
func ReasonKind(reason string) string {
	s := strings.Join(strings.Fields(reason), " ")
	if rest, ok := strings.CutPrefix(s, "decode "); ok {
		// The subject has no spaces (NATS subjects cannot), HTTP's is "event".
		if subject, after, ok := strings.Cut(rest, ": "); ok && !strings.Contains(subject, " ") {
			s = after
		}
	}
	s = strings.TrimPrefix(s, "invalid event: ")
	s = replaceQuoted(s)
	s = uuidPattern.ReplaceAllString(s, "…")
	s = replaceNumbers(s)
	if utf8.RuneCountInString(s) > maxReasonKind {
		s = string([]rune(s)[:maxReasonKind-1]) + "…"
	}
	return s
}

var uuidPattern = regexp.MustCompile(`(?i)[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`)

// replaceQuoted writes every Go-quoted string ("…", with backslash escapes)
// and every short single-quoted character ('\x00') as "…". An unterminated
// quote runs to the end.
func replaceQuoted(s string) string {
	if !strings.ContainsAny(s, `"'`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '"' && c != '\'' {
			b.WriteByte(c)
			continue
		}
		end := closingQuote(s, i)
		if c == '\'' && (end < 0 || end-i > 12) {
			b.WriteByte(c) // an apostrophe, not a quoted character
			continue
		}
		b.WriteString("…")
		if end < 0 {
			break
		}
		i = end
	}
	return b.String()
}

// closingQuote is the index of the quote that closes the one at s[open],
// or -1.
func closingQuote(s string, open int) int {
	for j := open + 1; j < len(s); j++ {
		switch s[j] {
		case '\\':
			j++
		case s[open]:
			return j
		}
	}
	return -1
}

var numberPattern = regexp.MustCompile(`^(-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?|0x[0-9a-fA-F]+)$`)

// replaceNumbers writes every number that stands as a word of its own
// (sizes, byte offsets, counts) as "N", except names such as "RFC 3339".
func replaceNumbers(s string) string {
	words := strings.Split(s, " ")
	for i, w := range words {
		core := strings.TrimLeft(w, "([")
		core = strings.TrimRight(core, ",;:)]")
		if core == "" || !numberPattern.MatchString(core) {
			continue
		}
		if i > 0 {
			if prev := strings.TrimLeft(words[i-1], "(["); prev == "RFC" || prev == "SQLSTATE" {
				continue
			}
		}
		words[i] = strings.Replace(w, core, "N", 1)
	}
	return strings.Join(words, " ")
}
