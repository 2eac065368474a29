package schema

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"
)

// maxDepth is the deepest nesting of objects and arrays accepted anywhere in
// a body; the top-level object is level 1. Identity events are flat, so
// anything deep is abuse or a producer bug.
const maxDepth = 32

// JSON kinds, as named in problem messages.
const (
	kindString = "string"
	kindNumber = "number"
	kindBool   = "boolean"
	kindNull   = "null"
	kindObject = "object"
	kindArray  = "array"
)

// jsonValue is a top-level field's value as the token walk saw it.
type jsonValue struct {
	kind string
	// text is the value of a string or the literal of a number; empty for
	// other kinds, whose content no field of an event needs.
	text string
}

var utf8BOM = []byte{0xEF, 0xBB, 0xBF}

// checkBody rejects bodies that are not worth tokenising: too large, empty,
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
	case len(trimJSONSpace(data)) == 0:
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

// trimJSONSpace drops the white space JSON allows around values.
func trimJSONSpace(data []byte) []byte {
	return bytes.Trim(data, " \t\r\n")
}

// readObject walks a body with json.Decoder tokens, never recursing, and
// returns the first occurrence of each top-level field. Duplicate keys,
// excessive depth and trailing data are problems, but the walk goes on so
// that field problems are reported too; ok is false only when the body is
// not a complete JSON object, and then problems holds the one reason.
func readObject(data []byte) (fields map[string]jsonValue, problems []Problem, ok bool) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()

	tok, err := dec.Token()
	if err != nil {
		return nil, []Problem{syntaxProblem(data, err)}, false
	}
	if kind := kindOf(tok); kind != kindObject {
		return nil, []Problem{{Message: notAnObject(kind)}}, false
	}

	fields = make(map[string]jsonValue)
	seen := make(map[string]int)
	for {
		tok, err := dec.Token()
		if err != nil {
			return nil, []Problem{syntaxProblem(data, err)}, false
		}
		if tok == json.Delim('}') {
			break
		}
		key, isKey := tok.(string)
		if !isKey {
			// The decoder only yields strings in key position; be safe anyway.
			return nil, []Problem{{Message: fmt.Sprintf("not valid JSON: object key is %v", tok)}}, false
		}
		val, tooDeep, err := readValue(dec)
		if err != nil {
			return nil, []Problem{syntaxProblem(data, err)}, false
		}
		if tooDeep {
			problems = append(problems, Problem{Field: truncate(key), Message: fmt.Sprintf("nested deeper than %d levels", maxDepth)})
		}
		seen[key]++
		switch seen[key] {
		case 1:
			fields[key] = val
		case 2:
			problems = append(problems, Problem{Field: truncate(key), Message: "duplicate key"})
		}
	}

	if rest := trimJSONSpace(data[dec.InputOffset():]); len(rest) > 0 {
		at := len(data) - len(rest) + 1
		problems = append(problems, Problem{Message: fmt.Sprintf("unexpected data after the JSON object at byte %d", at)})
	}
	return fields, problems, true
}

// readValue reads one value after an object key. Objects and arrays are
// consumed by counting delimiters, so depth costs no stack; tooDeep reports
// whether any of them went past maxDepth.
func readValue(dec *json.Decoder) (val jsonValue, tooDeep bool, err error) {
	tok, err := dec.Token()
	if err != nil {
		return jsonValue{}, false, err
	}
	val.kind = kindOf(tok)
	switch v := tok.(type) {
	case string:
		val.text = v
	case json.Number:
		val.text = v.String()
	}
	if val.kind != kindObject && val.kind != kindArray {
		return val, false, nil
	}
	// The top-level object is level 1, this container level 2.
	for open := 1; open > 0; {
		if 1+open > maxDepth {
			tooDeep = true
		}
		tok, err := dec.Token()
		if err != nil {
			return jsonValue{}, false, err
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			open++
		case json.Delim('}'), json.Delim(']'):
			open--
		}
	}
	return val, tooDeep, nil
}

// kindOf names the JSON kind of the value a token starts.
func kindOf(tok json.Token) string {
	switch v := tok.(type) {
	case json.Delim:
		if v == '[' {
			return kindArray
		}
		return kindObject
	case string:
		return kindString
	case json.Number, float64:
		return kindNumber
	case bool:
		return kindBool
	default:
		return kindNull
	}
}

func notAnObject(kind string) string {
	switch kind {
	case kindNull:
		return "body is JSON null, not an object"
	case kindArray:
		return "body is a JSON array, not an object"
	default:
		return "body is a JSON " + kind + ", not an object"
	}
}

// syntaxProblem describes why the token walk failed. The decoder's own
// offsets are relative to its buffer, so for a position the body is checked
// again with json.Unmarshal, whose scanner counts from the first byte.
func syntaxProblem(data []byte, walkErr error) Problem {
	if errors.Is(walkErr, io.EOF) || errors.Is(walkErr, io.ErrUnexpectedEOF) {
		return Problem{Message: "not valid JSON: unexpected end of JSON input"}
	}
	var raw json.RawMessage
	var syntaxErr *json.SyntaxError
	if err := json.Unmarshal(data, &raw); errors.As(err, &syntaxErr) {
		// Offset counts the bytes read including the bad one: a 1-based position.
		return Problem{Message: fmt.Sprintf("not valid JSON: %s at byte %d", syntaxErr, syntaxErr.Offset)}
	}
	return Problem{Message: "not valid JSON: " + walkErr.Error()}
}
