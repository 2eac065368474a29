package schema

import (
	"bytes"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// JSON kinds of a value.
type kind uint8

const (
	kindNone kind = iota
	kindString
	kindNumber
	kindBool
	kindNull
	kindObject
	kindArray
)

// String names the kind as problem messages do.
func (k kind) String() string {
	switch k {
	case kindString:
		return "string"
	case kindNumber:
		return "number"
	case kindBool:
		return "boolean"
	case kindNull:
		return "null"
	case kindObject:
		return "object"
	case kindArray:
		return "array"
	}
	return "nothing"
}

// value is where one JSON value lies in the body. For a string, start and
// end bound its content without the quotes, and escaped tells whether it
// holds backslash escapes (without any, the content is the string); for a
// number they bound its literal; for the other kinds the whole value.
type value struct {
	kind       kind
	escaped    bool
	start, end int
}

var utf8BOM = []byte{0xEF, 0xBB, 0xBF}

// checkBody rejects bodies that are not worth scanning: too large, empty,
// BOM-prefixed or not UTF-8. It returns the problem and false for such a
// body.
func checkBody(data []byte) (Problem, bool) {
	switch {
	case len(data) > MaxEventBytes:
		return Problem{Message: fmt.Sprintf("body is %d bytes, limit is %d", len(data), MaxEventBytes)}, false
	case len(data) == 0:
		return Problem{Message: "body is empty"}, false
	case bytes.HasPrefix(data, utf8BOM):
		return Problem{Message: "body starts with a UTF-8 byte-order mark"}, false
	case !utf8.Valid(data):
		return Problem{Message: fmt.Sprintf("body is not valid UTF-8 at byte %d", firstInvalidUTF8(data)+1)}, false
	case len(bytes.Trim(data, " \t\r\n")) == 0:
		return Problem{Message: "body is empty (white space only)"}, false
	}
	return Problem{}, true
}

// firstInvalidUTF8 returns the offset of the first byte that does not start
// a valid UTF-8 sequence, or -1.
func firstInvalidUTF8(data []byte) int {
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		if r == utf8.RuneError && size == 1 {
			return i
		}
		i += size
	}
	return -1
}

// syntaxError says where and why a body is not JSON.
type syntaxError struct {
	msg string
	// at is the 0-based offset of the offending byte; eof marks a body that
	// ended early, which has no such byte.
	at  int
	eof bool
}

func (e *syntaxError) problem() Problem {
	if e.eof {
		return Problem{Message: "not valid JSON: unexpected end of JSON input"}
	}
	// 1-based, as an editor counts, and as encoding/json's SyntaxError.Offset.
	return Problem{Message: fmt.Sprintf("not valid JSON: %s at byte %d", e.msg, e.at+1)}
}

// scanner walks one body as a JSON object, member by member, and checks
// every nested value without recursing: however deep a value nests costs
// one bit of a stack per level, so the body's size limit bounds the work.
// It yields each top-level member's key and value position and decodes
// nothing itself; strings are decoded only for the fields a caller wants
// (unquote). The body must not be trusted to be UTF-8: content bytes of
// 0x80 and above are passed through, and checkBody judges them.
//
// Usage: begin, then next until it returns false, then err and end.
type scanner struct {
	data []byte
	i    int
	err  *syntaxError
	// more is set after the first member: a ',' or '}' must come next.
	more bool
	// key and val are the current member.
	key, val value
	// deep holds the bits of containers nested more than 64 levels, low
	// those of the first 64: set for an object, clear for an array.
	low   uint64
	deep  []uint64
	depth int
}

// begin reads the opening brace. When the body is another kind of JSON
// value, it returns that kind (after checking the value is well formed); a
// syntax error leaves s.err set.
func (s *scanner) begin() kind {
	s.space()
	if s.i < len(s.data) && s.data[s.i] == '{' {
		s.i++
		return kindObject
	}
	v := s.value()
	if s.err != nil {
		return kindNone
	}
	return v.kind
}

// next reads the next member into s.key and s.val; it returns false at the
// closing brace or on a syntax error (s.err).
func (s *scanner) next() bool {
	s.space()
	if s.i >= len(s.data) {
		s.failEOF()
		return false
	}
	switch c := s.data[s.i]; {
	case c == '}':
		s.i++
		return false
	case s.more && c == ',':
		s.i++
		s.space()
	case s.more:
		s.fail("after object key:value pair")
		return false
	}
	s.more = true
	key, ok := s.member()
	if !ok {
		return false
	}
	s.key, s.val = key, s.value()
	return s.err == nil
}

// member reads a key and its colon, leaving s at the value.
func (s *scanner) member() (key value, ok bool) {
	if s.i >= len(s.data) {
		s.failEOF()
		return value{}, false
	}
	if s.data[s.i] != '"' {
		s.fail("looking for beginning of object key string")
		return value{}, false
	}
	key = s.str()
	if s.err != nil {
		return value{}, false
	}
	s.space()
	if s.i >= len(s.data) {
		s.failEOF()
		return value{}, false
	}
	if s.data[s.i] != ':' {
		s.fail("after object key")
		return value{}, false
	}
	s.i++
	s.space()
	return key, true
}

// end returns the offset of the first byte after the object and the white
// space that follows it: len(data) when nothing else follows.
func (s *scanner) end() int {
	s.space()
	return s.i
}

func (s *scanner) space() {
	data, i := s.data, s.i
	for i < len(data) && (data[i] == ' ' || data[i] == '\t' || data[i] == '\r' || data[i] == '\n') {
		i++
	}
	s.i = i
}

func (s *scanner) fail(context string) {
	s.err = &syntaxError{msg: "invalid character " + quoteChar(s.data[s.i:]) + " " + context, at: s.i}
}

func (s *scanner) failEOF() {
	s.err = &syntaxError{eof: true, at: len(s.data)}
}

// value reads one value; objects and arrays are checked to their end.
func (s *scanner) value() value {
	if s.i >= len(s.data) {
		s.failEOF()
		return value{}
	}
	start := s.i
	switch c := s.data[s.i]; c {
	case '"':
		return s.str()
	case '{', '[':
		s.container()
		k := kindObject
		if c == '[' {
			k = kindArray
		}
		return value{kind: k, start: start, end: s.i}
	case 't':
		s.literal("true")
		return value{kind: kindBool, start: start, end: s.i}
	case 'f':
		s.literal("false")
		return value{kind: kindBool, start: start, end: s.i}
	case 'n':
		s.literal("null")
		return value{kind: kindNull, start: start, end: s.i}
	}
	return s.number()
}

// stringStop marks the bytes that end a run of plain string content: the
// closing quote, a backslash, and the control characters JSON forbids raw.
var stringStop = func() (t [256]bool) {
	for c := range 0x20 {
		t[c] = true
	}
	t['"'], t['\\'] = true, true
	return t
}()

// str reads a string, s.i at its opening quote.
func (s *scanner) str() value {
	data, i := s.data, s.i+1
	v := value{kind: kindString, start: i}
	for {
		for i < len(data) && !stringStop[data[i]] {
			i++
		}
		s.i = i
		if i >= len(data) {
			s.failEOF()
			return value{}
		}
		switch data[i] {
		case '"':
			v.end = i
			s.i = i + 1
			return v
		case '\\':
			v.escaped = true
			if !s.escape() {
				return value{}
			}
			i = s.i
		default:
			s.fail("in string literal")
			return value{}
		}
	}
}

// escape checks one escape sequence, s.i at its backslash.
func (s *scanner) escape() bool {
	s.i++
	if s.i >= len(s.data) {
		s.failEOF()
		return false
	}
	switch s.data[s.i] {
	case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		s.i++
		return true
	case 'u':
		s.i++
		for range 4 {
			if s.i >= len(s.data) {
				s.failEOF()
				return false
			}
			if unhex(s.data[s.i]) < 0 {
				s.fail(`in \u hexadecimal character escape`)
				return false
			}
			s.i++
		}
		return true
	}
	s.fail("in string escape code")
	return false
}

func (s *scanner) literal(word string) {
	for j := 0; j < len(word); j++ {
		if s.i >= len(s.data) {
			s.failEOF()
			return
		}
		if s.data[s.i] != word[j] {
			s.fail(fmt.Sprintf("in literal %s (expecting %s)", word, quoteChar([]byte{word[j]})))
			return
		}
		s.i++
	}
}

// number reads -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?; what
// follows it is for the caller to judge, as in encoding/json ("01" is the
// number 0 followed by a stray 1).
func (s *scanner) number() value {
	v := value{kind: kindNumber, start: s.i}
	if s.peek() == '-' {
		s.i++
		if s.i >= len(s.data) {
			s.failEOF()
			return value{}
		}
		if !isDigit(s.peek()) {
			s.fail("in numeric literal")
			return value{}
		}
	}
	switch c := s.peek(); {
	case c == '0':
		s.i++
	case '1' <= c && c <= '9':
		s.digits()
	default:
		s.fail("looking for beginning of value")
		return value{}
	}
	if s.peek() == '.' {
		s.i++
		if !s.needDigit("after decimal point in numeric literal") {
			return value{}
		}
	}
	if c := s.peek(); c == 'e' || c == 'E' {
		s.i++
		if c := s.peek(); c == '+' || c == '-' {
			s.i++
		}
		if !s.needDigit("in exponent of numeric literal") {
			return value{}
		}
	}
	v.end = s.i
	return v
}

func (s *scanner) needDigit(context string) bool {
	if s.i >= len(s.data) {
		s.failEOF()
		return false
	}
	if !isDigit(s.data[s.i]) {
		s.fail(context)
		return false
	}
	s.digits()
	return true
}

// peek returns the current byte, or 0 at the end.
func (s *scanner) peek() byte {
	if s.i < len(s.data) {
		return s.data[s.i]
	}
	return 0
}

func (s *scanner) digits() {
	for s.i < len(s.data) && isDigit(s.data[s.i]) {
		s.i++
	}
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// container checks an object or array to its end, s.i at its opening
// bracket, keeping the kind of each open container on a bit stack instead
// of the call stack.
func (s *scanner) container() {
	base := s.depth
	s.push(s.data[s.i] == '{')
	s.i++
	opened := true // just after an opening bracket
	for {
		s.space()
		if s.i >= len(s.data) {
			s.failEOF()
			return
		}
		c := s.data[s.i]
		inObject := s.top()
		closer := byte(']')
		if inObject {
			closer = '}'
		}
		switch {
		case c == closer:
			s.i++
			s.depth--
			if s.depth == base {
				return
			}
			opened = false
			continue
		case opened:
			opened = false
		case c == ',':
			s.i++
			s.space()
		case inObject:
			s.fail("after object key:value pair")
			return
		default:
			s.fail("after array element")
			return
		}
		// At a member of an object or an element of an array.
		if inObject {
			if _, ok := s.member(); !ok {
				return
			}
		}
		if s.i < len(s.data) && (s.data[s.i] == '{' || s.data[s.i] == '[') {
			s.push(s.data[s.i] == '{')
			s.i++
			opened = true
			continue
		}
		if s.value(); s.err != nil {
			return
		}
	}
}

func (s *scanner) push(object bool) {
	d := s.depth
	s.depth++
	if d < 64 {
		if object {
			s.low |= 1 << d
		} else {
			s.low &^= 1 << d
		}
		return
	}
	d -= 64
	if d/64 == len(s.deep) {
		s.deep = append(s.deep, 0)
	}
	if object {
		s.deep[d/64] |= 1 << (d % 64)
	} else {
		s.deep[d/64] &^= 1 << (d % 64)
	}
}

// top reports whether the innermost open container is an object.
func (s *scanner) top() bool {
	d := s.depth - 1
	if d < 64 {
		return s.low&(1<<d) != 0
	}
	d -= 64
	return s.deep[d/64]&(1<<(d%64)) != 0
}

// quoteChar renders the byte (or UTF-8 character) at the start of b for a
// syntax error the way encoding/json does, e.g. 'x' or '\n'.
func quoteChar(b []byte) string {
	r, size := utf8.DecodeRune(b)
	if r == utf8.RuneError && size == 1 {
		return fmt.Sprintf("'\\x%02x'", b[0])
	}
	switch r {
	case '\'':
		return `'\''`
	case '"':
		return `'"'`
	}
	q := strconv.QuoteRune(r)
	return "'" + q[1:len(q)-1] + "'"
}

func unhex(c byte) rune {
	switch {
	case '0' <= c && c <= '9':
		return rune(c - '0')
	case 'a' <= c && c <= 'f':
		return rune(c - 'a' + 10)
	case 'A' <= c && c <= 'F':
		return rune(c - 'A' + 10)
	}
	return -1
}

// unquote appends the decoded content of a string value the scanner has
// checked (raw: between the quotes) to dst. A \u escape of a surrogate that
// is not half of a pair is written in its WTF-8 form (three bytes that are
// not UTF-8, which PrintableText shows as \ud800), not silently replaced as
// encoding/json does; lone is the 0-based offset in raw of the first such
// escape, or -1, so callers can refuse or drop the value instead.
func unquote(dst, raw []byte) (out []byte, lone int) {
	lone = -1
	for i := 0; i < len(raw); {
		c := raw[i]
		if c != '\\' {
			j := i + 1
			for j < len(raw) && raw[j] != '\\' {
				j++
			}
			dst = append(dst, raw[i:j]...)
			i = j
			continue
		}
		switch e := raw[i+1]; e {
		case 'u':
			r := hex4(raw[i+2:])
			size := 6
			switch {
			case 0xD800 <= r && r < 0xDC00:
				if i+12 <= len(raw) && raw[i+6] == '\\' && raw[i+7] == 'u' {
					if r2 := hex4(raw[i+8:]); 0xDC00 <= r2 && r2 < 0xE000 {
						r = 0x10000 + (r-0xD800)<<10 + (r2 - 0xDC00)
						size = 12
					}
				}
			}
			if 0xD800 <= r && r < 0xE000 {
				if lone < 0 {
					lone = i
				}
				dst = append(dst, 0xED, byte(0x80|(r>>6)&0x3F), byte(0x80|r&0x3F))
			} else {
				dst = utf8.AppendRune(dst, r)
			}
			i += size
		default:
			dst = append(dst, unescapeByte(e))
			i += 2
		}
	}
	return dst, lone
}

func hex4(b []byte) rune {
	return unhex(b[0])<<12 | unhex(b[1])<<8 | unhex(b[2])<<4 | unhex(b[3])
}

func unescapeByte(e byte) byte {
	switch e {
	case 'b':
		return '\b'
	case 'f':
		return '\f'
	case 'n':
		return '\n'
	case 'r':
		return '\r'
	case 't':
		return '\t'
	}
	return e // '"', '\\', '/'
}

// text returns the decoded string of a string value and the offset in the
// body of its first lone surrogate escape, or -1.
func text(data []byte, v value) (string, int) {
	raw := data[v.start:v.end]
	if !v.escaped {
		// The values every event repeats are not copied.
		for _, a := range actions {
			if string(raw) == a.Name {
				return a.Name, -1
			}
		}
		if string(raw) == ProducerServiceName {
			return ProducerServiceName, -1
		}
		return string(raw), -1
	}
	b, lone := unquote(make([]byte, 0, len(raw)), raw)
	if lone >= 0 {
		lone += v.start
	}
	return string(b), lone
}
