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
	fields := make(map[string]jsonValue, 8)
	ok := scanFlat(data, func(key []byte, kind string, text []byte) bool {
		k := string(key)
		if _, dup := fields[k]; dup {
			return false
		}
		fields[k] = jsonValue{kind: kind, text: string(text)}
		return true
	})
	if !ok {
		return nil, false
	}
	return fields, true
}

// scanFlat walks a clean flat object (see readFlat), calling visit for each
// field in order with the value's kind and text (a string's content, a
// number's literal, nothing for the others); it stops and returns false
// when the body is anything else or visit returns false. key and text are
// only valid during the call.
func scanFlat(data []byte, visit func(key []byte, kind string, text []byte) bool) bool {
	p := flatParser{data: data}
	p.space()
	if !p.consume('{') {
		return false
	}
	p.space()
	if p.consume('}') {
		return p.end()
	}
	for {
		p.space()
		key, ok := p.raw()
		if !ok {
			return false
		}
		p.space()
		if !p.consume(':') {
			return false
		}
		p.space()
		kind, text, ok := p.value()
		if !ok || !visit(key, kind, text) {
			return false
		}
		p.space()
		if p.consume(',') {
			continue
		}
		if p.consume('}') {
			return p.end()
		}
		return false
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

// raw reads a string without escapes or control characters and returns
// its bytes (without the quotes).
func (p *flatParser) raw() ([]byte, bool) {
	if !p.consume('"') {
		return nil, false
	}
	start := p.i
	for p.i < len(p.data) {
		c := p.data[p.i]
		switch {
		case c == '"':
			b := p.data[start:p.i]
			p.i++
			return b, true
		case c == '\\' || c < 0x20:
			return nil, false
		}
		p.i++
	}
	return nil, false
}

func (p *flatParser) literal(word string) bool {
	if len(p.data)-p.i >= len(word) && string(p.data[p.i:p.i+len(word)]) == word {
		p.i += len(word)
		return true
	}
	return false
}

func (p *flatParser) value() (kind string, text []byte, ok bool) {
	if p.i >= len(p.data) {
		return "", nil, false
	}
	switch c := p.data[p.i]; {
	case c == '"':
		b, ok := p.raw()
		return kindString, b, ok
	case c == 't':
		return kindBool, nil, p.literal("true")
	case c == 'f':
		return kindBool, nil, p.literal("false")
	case c == 'n':
		return kindNull, nil, p.literal("null")
	case c == '-' || ('0' <= c && c <= '9'):
		b, ok := p.number()
		return kindNumber, b, ok
	}
	return "", nil, false // object, array or not JSON: the slow path
}

// number reads a JSON number: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
func (p *flatParser) number() ([]byte, bool) {
	start := p.i
	p.consume('-')
	switch {
	case p.consume('0'):
	case p.i < len(p.data) && '1' <= p.data[p.i] && p.data[p.i] <= '9':
		p.digits()
	default:
		return nil, false
	}
	if p.consume('.') {
		if p.digits() == 0 {
			return nil, false
		}
	}
	if p.consume('e') || p.consume('E') {
		if !p.consume('+') {
			p.consume('-')
		}
		if p.digits() == 0 {
			return nil, false
		}
	}
	return p.data[start:p.i], true
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
		// The last of repeated keys wins, as with json.Unmarshal.
		clean := scanFlat(data, func(key []byte, kind string, text []byte) bool {
			switch string(key) {
			case "id":
				id = stringOf(kind, text)
			case "request_id":
				requestID = stringOf(kind, text)
			}
			return true
		})
		if clean {
			return id, requestID
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

func stringOf(kind string, text []byte) string {
	if kind != kindString {
		return ""
	}
	return string(text)
}
