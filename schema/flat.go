package schema

import (
	"encoding/json"
	"unicode/utf8"
)

// readFlat is the fast path of readObject for the bodies the Auth Service
// really sends: one flat object whose values are strings without escape
// sequences, numbers, booleans or null, with no duplicate key and nothing
// after it. For such a body it returns exactly what readObject would (the
// fuzz test FuzzReadFlatAgreesWithReadObject holds it to that) at a
// fraction of the cost; for anything else it returns false and the caller
// takes the careful token walk, which names the problem. data must already
// have passed checkBody (valid UTF-8), so a string without escapes is its
// own bytes.
func readFlat(data []byte) (map[string]jsonValue, bool) {
	p := flatParser{data: data}
	p.space()
	if !p.consume('{') {
		return nil, false
	}
	fields := make(map[string]jsonValue, 8)
	p.space()
	if p.consume('}') {
		return fields, p.end()
	}
	for {
		p.space()
		key, ok := p.str()
		if !ok {
			return nil, false
		}
		if _, dup := fields[key]; dup {
			return nil, false
		}
		p.space()
		if !p.consume(':') {
			return nil, false
		}
		p.space()
		val, ok := p.value()
		if !ok {
			return nil, false
		}
		fields[key] = val
		p.space()
		if p.consume(',') {
			continue
		}
		if p.consume('}') {
			return fields, p.end()
		}
		return nil, false
	}
}

type flatParser struct {
	data []byte
	i    int
}

func (p *flatParser) space() {
	for p.i < len(p.data) {
		switch p.data[p.i] {
		case ' ', '\t', '\r', '\n':
			p.i++
		default:
			return
		}
	}
}

func (p *flatParser) consume(c byte) bool {
	if p.i < len(p.data) && p.data[p.i] == c {
		p.i++
		return true
	}
	return false
}

// end reports whether only white space is left.
func (p *flatParser) end() bool {
	p.space()
	return p.i == len(p.data)
}

// str reads a string without escapes or control characters.
func (p *flatParser) str() (string, bool) {
	if !p.consume('"') {
		return "", false
	}
	start := p.i
	for p.i < len(p.data) {
		c := p.data[p.i]
		switch {
		case c == '"':
			s := string(p.data[start:p.i])
			p.i++
			return s, true
		case c == '\\' || c < 0x20:
			return "", false
		}
		p.i++
	}
	return "", false
}

func (p *flatParser) literal(word string) bool {
	if len(p.data)-p.i >= len(word) && string(p.data[p.i:p.i+len(word)]) == word {
		p.i += len(word)
		return true
	}
	return false
}

func (p *flatParser) value() (jsonValue, bool) {
	if p.i >= len(p.data) {
		return jsonValue{}, false
	}
	switch c := p.data[p.i]; {
	case c == '"':
		s, ok := p.str()
		return jsonValue{kind: kindString, text: s}, ok
	case c == 't':
		return jsonValue{kind: kindBool}, p.literal("true")
	case c == 'f':
		return jsonValue{kind: kindBool}, p.literal("false")
	case c == 'n':
		return jsonValue{kind: kindNull}, p.literal("null")
	case c == '-' || ('0' <= c && c <= '9'):
		return p.number()
	}
	return jsonValue{}, false // object, array or not JSON: the slow path
}

// number reads a JSON number: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
func (p *flatParser) number() (jsonValue, bool) {
	start := p.i
	p.consume('-')
	switch {
	case p.consume('0'):
	case p.i < len(p.data) && '1' <= p.data[p.i] && p.data[p.i] <= '9':
		p.digits()
	default:
		return jsonValue{}, false
	}
	if p.consume('.') {
		if p.digits() == 0 {
			return jsonValue{}, false
		}
	}
	if p.consume('e') || p.consume('E') {
		if !p.consume('+') {
			p.consume('-')
		}
		if p.digits() == 0 {
			return jsonValue{}, false
		}
	}
	return jsonValue{kind: kindNumber, text: string(p.data[start:p.i])}, true
}

func (p *flatParser) digits() int {
	n := 0
	for p.i < len(p.data) && '0' <= p.data[p.i] && p.data[p.i] <= '9' {
		p.i++
		n++
	}
	return n
}

// Peek returns the user id and request_id of an event body when they are
// strings, without validating the rest: for ordering events per user and
// choosing a correlation id before the body is decoded. Either is "" when
// absent, not a string, or the body is not a JSON object.
func Peek(data []byte) (id, requestID string) {
	if utf8.Valid(data) {
		if fields, ok := readFlat(data); ok {
			return stringField(fields["id"]), stringField(fields["request_id"])
		}
	}
	var probe struct {
		ID        any `json:"id"`
		RequestID any `json:"request_id"`
	}
	if json.Unmarshal(data, &probe) != nil {
		return "", ""
	}
	id, _ = probe.ID.(string)
	requestID, _ = probe.RequestID.(string)
	return id, requestID
}

func stringField(v jsonValue) string {
	if v.kind != kindString {
		return ""
	}
	return v.text
}
