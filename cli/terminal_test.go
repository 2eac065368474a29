package cli

import "testing"

func TestTerminalText(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ in, line, layout string }{
		{"plain text, ünïcode", "plain text, ünïcode", "plain text, ünïcode"},
		{"a\u202eb", `a\u202eb`, `a\u202eb`},
		{"\u2066iso\u2069 \u200f", `\u2066iso\u2069 \u200f`, `\u2066iso\u2069 \u200f`},
		{"zero\u200bwidth\ufeff", `zero\u200bwidth\ufeff`, `zero\u200bwidth\ufeff`},
		{"esc\x1b[31m bel\a del\x7f c1\u009b", `esc\x1b[31m bel\a del\x7f c1\u009b`, `esc\x1b[31m bel\a del\x7f c1\u009b`},
		{"line\nbreak\ttab\r", `line\nbreak\ttab\r`, "line\nbreak\ttab\\r"},
		{"sep\u2028", `sep\u2028`, `sep\u2028`},
		{"bad \xff\xfe bytes", `bad \xff\xfe bytes`, `bad \xff\xfe bytes`},
		{"nul\x00", `nul\x00`, `nul\x00`},
		{"\ufffd is fine", "\ufffd is fine", "\ufffd is fine"},
	} {
		if got := terminalText(tt.in, false); got != tt.line {
			t.Errorf("terminalText(%q, false) = %q, want %q", tt.in, got, tt.line)
		}
		if got := terminalText(tt.in, true); got != tt.layout {
			t.Errorf("terminalText(%q, true) = %q, want %q", tt.in, got, tt.layout)
		}
	}
}
