package schema

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Bounds on the delivery fields an event carries into commands, log lines
// and headers (UserEvent.RequestID, UserEvent.ServiceName). Real values are
// "" and "gofiber-auth".
const (
	MaxRequestIDBytes   = 128
	MaxServiceNameBytes = 64
)

// PrintableText returns s as text that is safe to write into a command, a
// log line or a terminal: printable characters (strconv.IsPrint: letters,
// marks, numbers, punctuation, symbols and the ASCII space) are kept as they
// are; anything else is escaped the way Go writes it in a quoted string —
// control characters (\x00, \x1b, \n, …), format characters such as the bidi
// override U+202E (\u202e), other spaces (\u00a0), bytes that are not UTF-8
// (\xff) and the WTF-8 form of a lone surrogate that a JSON \ud800 escape
// decodes to (\ud800). The result is then cut to at most maxBytes bytes,
// never inside a character or an escape; maxBytes < 1 yields "".
//
// It escapes rather than replaces, so that what was odd about a value stays
// visible to whoever reads it, and a value that was fine is unchanged. The
// backslash itself is printable and kept: the result is for reading, not
// for undoing (a literal `\x1b` and an ESC look alike), and no caller needs
// the original back — it is in the event's payload.
//
// The result is a fixed point: PrintableText(PrintableText(s, n), n) equals
// PrintableText(s, n).
func PrintableText(s string, maxBytes int) string {
	return printable(s, maxBytes, false)
}

// PrintableASCII is PrintableText for places that take only ASCII, such as
// an HTTP header value: every character outside printable ASCII is escaped
// too (é becomes \u00e9), and so is a space at either end, which an HTTP
// reader would trim. Every byte of the result is in 0x20–0x7e, none at
// either end is a space, so any HTTP/1.1 client parses it as a header
// value, and reads exactly the string sent.
func PrintableASCII(s string, maxBytes int) string {
	return printable(s, maxBytes, true)
}

func printable(s string, maxBytes int, ascii bool) string {
	if maxBytes < 1 {
		return ""
	}
	if len(s) <= maxBytes && isPrintable(s, ascii) {
		return s
	}
	b := make([]byte, 0, min(maxBytes, 2*len(s)))
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		before := len(b)
		switch {
		case r == utf8.RuneError && size == 1:
			if sur, ok := wtf8Surrogate(s[i:]); ok {
				b, size = appendEscape(b, sur), 3
			} else {
				b = appendByteEscape(b, s[i])
			}
		case ascii && r == ' ' && (before == 0 || i+size == len(s)):
			b = append(b, `\x20`...)
		case keep(r, ascii):
			b = append(b, s[i:i+size]...)
		default:
			b = appendEscape(b, r)
		}
		if len(b) > maxBytes {
			b = b[:before]
			break
		}
		i += size
	}
	if ascii {
		// A cut can leave an inner space at the end: an HTTP reader would
		// trim it, and the header would not read back as sent.
		for len(b) > 0 && b[len(b)-1] == ' ' {
			b = b[:len(b)-1]
		}
	}
	return string(b)
}

// isPrintable reports whether printable keeps every byte of s.
func isPrintable(s string, ascii bool) bool {
	for i := 0; i < len(s); {
		if c := s[i]; c >= 0x20 && c <= 0x7e {
			i++
			continue
		} else if ascii || c < 0x80 {
			return false
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 || !strconv.IsPrint(r) {
			return false
		}
		i += size
	}
	return !ascii || s == "" || s[0] != ' ' && s[len(s)-1] != ' '
}

func keep(r rune, ascii bool) bool {
	if ascii {
		return r >= 0x20 && r <= 0x7e
	}
	return strconv.IsPrint(r)
}

// wtf8Surrogate recognises the three bytes a UTF-16 surrogate takes when
// encoded like any other code point (WTF-8): what the router's JSON string
// decoder writes for a lone \ud800 escape, so that it can be reported.
func wtf8Surrogate(s string) (rune, bool) {
	if len(s) < 3 || s[0] != 0xED || s[1] < 0xA0 || s[1] > 0xBF || s[2] < 0x80 || s[2] > 0xBF {
		return 0, false
	}
	return 0xD000 | rune(s[1]&0x3F)<<6 | rune(s[2]&0x3F), true
}

const hexDigits = "0123456789abcdef"

// appendEscape writes r as Go writes it in a quoted string.
func appendEscape(b []byte, r rune) []byte {
	switch r {
	case '\a':
		return append(b, `\a`...)
	case '\b':
		return append(b, `\b`...)
	case '\f':
		return append(b, `\f`...)
	case '\n':
		return append(b, `\n`...)
	case '\r':
		return append(b, `\r`...)
	case '\t':
		return append(b, `\t`...)
	case '\v':
		return append(b, `\v`...)
	}
	switch {
	case r < 0x80:
		return appendByteEscape(b, byte(r))
	case r < 0x10000:
		b = append(b, '\\', 'u')
		for shift := 12; shift >= 0; shift -= 4 {
			b = append(b, hexDigits[r>>uint(shift)&0xF])
		}
		return b
	default:
		b = append(b, '\\', 'U')
		for shift := 28; shift >= 0; shift -= 4 {
			b = append(b, hexDigits[r>>uint(shift)&0xF])
		}
		return b
	}
}

func appendByteEscape(b []byte, c byte) []byte {
	return append(b, '\\', 'x', hexDigits[c>>4], hexDigits[c&0xF])
}

// VisibleText shows outside text where a person reads it — a terminal, a
// web page — as what is stored, unable to act on or reorder what is around
// it: control and format characters (ESC, NUL, the bidi override U+202E,
// …), the Unicode line separators and bytes that are not UTF-8 are written
// as Go escapes (\x1b, \u202e, \xff); everything else, non-ASCII letters
// included, stays. With layout, newlines and tabs stay too (a stack trace, a
// payload). Unlike PrintableText it does not cut, and keeps other spaces.
func VisibleText(s string, layout bool) string {
	shown := func(r rune) bool {
		if layout && (r == '\n' || r == '\t') {
			return true
		}
		return !unicode.IsControl(r) && !unicode.Is(unicode.Cf, r) && r != '\u2028' && r != '\u2029'
	}
	if utf8.ValidString(s) && strings.IndexFunc(s, func(r rune) bool { return !shown(r) }) < 0 {
		return s
	}
	var b strings.Builder
	for i, r := range s {
		switch {
		case r == utf8.RuneError && !strings.HasPrefix(s[i:], "\uFFFD"):
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case !shown(r):
			q := strconv.QuoteRuneToASCII(r)
			b.WriteString(q[1 : len(q)-1])
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}
