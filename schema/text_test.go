package schema_test

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/social/user-events-router/schema"
)

func TestPrintableText(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in    string
		max         int
		text, ascii string
	}{
		{"empty", "", 10, "", ""},
		{"plain", "req-42", 10, "req-42", "req-42"},
		{"uuid", "5b1e0c8e-8f0a-4b9e-a0d4-2f4f3c2a1b00", 128, "5b1e0c8e-8f0a-4b9e-a0d4-2f4f3c2a1b00", "5b1e0c8e-8f0a-4b9e-a0d4-2f4f3c2a1b00"},
		{"inner space kept", "two words", 20, "two words", "two words"},
		{"edge spaces", " a b ", 20, " a b ", `\x20a b\x20`},
		{"only a space", " ", 20, " ", `\x20`},
		{"NUL", "a\x00b", 20, `a\x00b`, `a\x00b`},
		{"ESC sequence", "\x1b[31mred\x1b[0m", 40, `\x1b[31mred\x1b[0m`, `\x1b[31mred\x1b[0m`},
		{"CR LF", "a\r\nb", 20, `a\r\nb`, `a\r\nb`},
		{"tab and DEL", "a\tb\x7f", 20, `a\tb\x7f`, `a\tb\x7f`},
		{"C1 control", "a\u0085", 20, `a\u0085`, `a\u0085`},
		{"bidi override", "abc\u202egnp.exe", 40, `abc\u202egnp.exe`, `abc\u202egnp.exe`},
		{"zero-width space and BOM", "a\u200bb\ufeff", 40, `a\u200bb\ufeff`, `a\u200bb\ufeff`},
		{"non-ASCII printable", "réq-ü-สม-😀", 40, "réq-ü-สม-😀", `r\u00e9q-\u00fc-\u0e2a\u0e21-\U0001f600`},
		{"no-break space", "a\u00a0b", 20, `a\u00a0b`, `a\u00a0b`},
		{"invalid bytes", "a\xffb\xc3", 20, `a\xffb\xc3`, `a\xffb\xc3`},
		{"lone surrogate (WTF-8)", "a\xed\xa0\x80b\xed\xbf\xbf", 40, `a\ud800b\udfff`, `a\ud800b\udfff`},
		{"real U+FFFD", "a\ufffdb", 20, "a\ufffdb", `a\ufffdb`},
		{"backslash kept", `a\b`, 20, `a\b`, `a\b`},
		{"cut", "abcdef", 4, "abcd", "abcd"},
		{"cut on a rune boundary", "ééé", 5, "éé", ""},
		{"cut after an escape", "ééé", 13, "ééé", `\u00e9\u00e9`},
		{"cut before an escape", "abc\x00", 5, "abc", "abc"},
		{"cut leaves no trailing space in a header", "ab cd", 3, "ab ", "ab"},
		{"zero max", "abc", 0, "", ""},
		{"negative max", "abc", -1, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := schema.PrintableText(tt.in, tt.max); got != tt.text {
				t.Errorf("PrintableText(%q, %d) = %q, want %q", tt.in, tt.max, got, tt.text)
			}
			if got := schema.PrintableASCII(tt.in, tt.max); got != tt.ascii {
				t.Errorf("PrintableASCII(%q, %d) = %q, want %q", tt.in, tt.max, got, tt.ascii)
			}
		})
	}
}

func TestPrintableTextKeepsPlainTextWithoutAllocating(t *testing.T) {
	in := "5b1e0c8e-8f0a-4b9e-a0d4-2f4f3c2a1b00"
	if n := testing.AllocsPerRun(100, func() { _ = schema.PrintableText(in, 128) }); n != 0 {
		t.Errorf("PrintableText of a UUID allocates %v times", n)
	}
}

// FuzzPrintableText: the results are bounded, printable, stable under a
// second pass, and equal to the input when it was fine already.
func FuzzPrintableText(f *testing.F) {
	for _, s := range []string{"", "req-1", " a ", "\x00\x1b\u202e", "\xed\xa0\x80", "é", strings.Repeat("\x00", 40)} {
		f.Add(s, 16)
	}
	f.Fuzz(func(t *testing.T, s string, max int) {
		max %= 300
		text, ascii := schema.PrintableText(s, max), schema.PrintableASCII(s, max)
		for _, out := range []string{text, ascii} {
			if len(out) > max && !(max < 1 && out == "") {
				t.Fatalf("%q cut to %d: %d bytes", s, max, len(out))
			}
			if !utf8.ValidString(out) {
				t.Fatalf("%q: result %q is not UTF-8", s, out)
			}
			for _, r := range out {
				if !strconv.IsPrint(r) {
					t.Fatalf("%q: result %q holds %U", s, out, r)
				}
			}
		}
		for i := 0; i < len(ascii); i++ {
			if ascii[i] < 0x20 || ascii[i] > 0x7e {
				t.Fatalf("%q: header text %q holds byte %#x", s, ascii, ascii[i])
			}
		}
		if strings.HasPrefix(ascii, " ") || strings.HasSuffix(ascii, " ") {
			t.Fatalf("%q: header text %q starts or ends with a space", s, ascii)
		}
		if again := schema.PrintableText(text, max); again != text {
			t.Fatalf("PrintableText not stable: %q -> %q -> %q", s, text, again)
		}
		if again := schema.PrintableASCII(ascii, max); again != ascii {
			t.Fatalf("PrintableASCII not stable: %q -> %q -> %q", s, ascii, again)
		}
		if max >= 1 && len(s) <= max && utf8.ValidString(s) && strings.IndexFunc(s, func(r rune) bool { return !strconv.IsPrint(r) }) < 0 && text != s {
			t.Fatalf("printable %q changed to %q", s, text)
		}
		// The longest escape is 10 bytes (\U0001f600): from there on,
		// something of every value is kept.
		if max >= 10 && s != "" && (text == "" || ascii == "") {
			t.Fatalf("%q: nothing kept of it within %d bytes: %q, %q", s, max, text, ascii)
		}
	})
}

func ExamplePrintableText() {
	requestID := "req-1\x1b[2J\u202e\x00"
	fmt.Println(schema.PrintableText(requestID, schema.MaxRequestIDBytes))
	fmt.Println(schema.PrintableASCII("réq 1 ", 64))
	// Output:
	// req-1\x1b[2J\u202e\x00
	// r\u00e9q 1\x20
}
