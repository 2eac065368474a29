package main

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// unsafeForTerminal reports a rune that text from outside must not carry to
// a terminal as it is: C0 and C1 controls (ESC starts escape sequences),
// DEL, format characters (category Cf: the bidi overrides and isolates such
// as U+202E, which make a line read in another order than it is written,
// zero-width characters, BOM) and the Unicode line and paragraph
// separators.
func unsafeForTerminal(r rune) bool {
	return unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == '\u2028' || r == '\u2029'
}

// terminalText is the one way the CLI shows text that came from outside
// (subjects, reasons, ids, correlation ids, stacks): every unsafe rune and
// every byte that is not UTF-8 is written as a Go escape (\x1b, \u202e,
// \xff), so what is printed is what is stored, and cannot act on the
// terminal. With layout, newlines and tabs stay (for a stack trace); without,
// they are escaped too, so a value cannot break a table row.
func terminalText(s string, layout bool) string {
	safe := func(r rune) bool { return !unsafeForTerminal(r) || layout && (r == '\n' || r == '\t') }
	clean := utf8.ValidString(s)
	for _, r := range s {
		if !safe(r) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for i, r := range s {
		switch {
		case r == utf8.RuneError && !strings.HasPrefix(s[i:], "\uFFFD"):
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case !safe(r):
			q := strconv.QuoteRuneToASCII(r)
			b.WriteString(q[1 : len(q)-1])
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// cell is terminalText for one line (a table cell, a field of show).
func cell(s string) string { return terminalText(s, false) }
