package cli

import (
	"github.com/social/user-events-router/schema"
)

// terminalText is the one way the CLI shows text that came from outside
// (subjects, reasons, ids, correlation ids, stacks): every unsafe rune and
// every byte that is not UTF-8 is written as a Go escape (\x1b, \u202e,
// \xff), so what is printed is what is stored, and cannot act on the
// terminal. With layout, newlines and tabs stay (for a stack trace); without,
// they are escaped too, so a value cannot break a table row.
func terminalText(s string, layout bool) string { return schema.VisibleText(s, layout) }

// cell is terminalText for one line (a table cell, a field of show).
func cell(s string) string { return terminalText(s, false) }
