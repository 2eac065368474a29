package schema

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

const producerBytes = `{"id":"78af4bc4-afce-4676-b373-5b802a2dfd2e","email":"alice@example.com","username":"alice01","action":"created","request_id":"","timestamp":"2026-11-28T13:28:17Z","service_name":"gofiber-auth"}`

// scanned is what the scanner makes of a body: each top-level key's last
// value (as encoding/json keeps it), with strings decoded.
type scanned struct {
	kind kind
	text string
	lone bool
}

// errNotAnObject stands for a well-formed value of another kind.
var errNotAnObject = &syntaxError{msg: "not an object"}

func scanAll(data []byte) (map[string]scanned, int, *syntaxError) {
	s := scanner{data: data}
	if k := s.begin(); k != kindObject {
		if s.err == nil {
			return nil, 0, errNotAnObject
		}
		return nil, 0, s.err
	}
	out := map[string]scanned{}
	for s.next() {
		key, _ := text(data, s.key)
		v := scanned{kind: s.val.kind}
		switch s.val.kind {
		case kindString:
			var lone int
			v.text, lone = text(data, s.val)
			v.lone = lone >= 0
		case kindNumber:
			v.text = string(data[s.val.start:s.val.end])
		}
		out[key] = v
	}
	if s.err != nil {
		return nil, 0, s.err
	}
	return out, s.end(), nil
}

func TestScannerSkipsAnyDepthWithoutRecursion(t *testing.T) {
	t.Parallel()
	for _, depth := range []int{1, 64, 65, 1000, 20000, MaxEventBytes/2 - 20} {
		for _, open := range []string{"[", `{"k":`} {
			closer := "]"
			if open != "[" {
				closer = "}"
			}
			inner := strings.Repeat(open, depth) + `"x"` + strings.Repeat(closer, depth)
			body := `{"a":` + inner + `,"b":"after"}`
			got, end, err := scanAll([]byte(body))
			if err != nil || end != len(body) || got["b"].text != "after" {
				t.Errorf("depth %d of %q: err %v, end %d of %d, b = %+v", depth, open, err, end, len(body), got["b"])
			}
			if err := scanErr(body[:len(body)-3]); err == nil || !err.eof {
				t.Errorf("depth %d of %q, truncated: err %v, want end of input", depth, open, err)
			}
		}
	}
	// Mixed nesting, closed in the wrong order, is an error at the right byte.
	body := `{"a":` + strings.Repeat(`[{"k":`, 100) + "1]" + `}`
	if err := scanErr(body); err == nil || err.at != len(body)-2 {
		t.Errorf("mismatched brackets: %+v, want an error at byte %d", err, len(body)-1)
	}
}

func scanErr(body string) *syntaxError {
	_, _, err := scanAll([]byte(body))
	return err
}

func TestUnquote(t *testing.T) {
	t.Parallel()
	tests := []struct {
		raw  string
		want string
		lone int
	}{
		{`plain`, "plain", -1},
		{`a\"b\\c\/d\b\f\n\r\t`, "a\"b\\c/d\b\f\n\r\t", -1},
		{`\u00fc\u0000\u001b\u202e`, "ü\x00\x1b\u202e", -1},
		{`\ud83d\ude00`, "😀", -1},
		{`\uD83D\uDE00`, "😀", -1},
		{`x\ud800`, "x\xed\xa0\x80", 1},
		{`\ud800\u0041`, "\xed\xa0\x80A", 0},
		{`\udc00`, "\xed\xb0\x80", 0},
		{`ok\ud800\ud800\udc00`, "ok\xed\xa0\x80𐀀", 2},
		{`\udbff\udfff`, "\U0010ffff", -1},
	}
	for _, tt := range tests {
		got, lone := unquote(nil, []byte(tt.raw))
		if string(got) != tt.want || lone != tt.lone {
			t.Errorf("unquote(%s) = %q, %d; want %q, %d", tt.raw, got, lone, tt.want, tt.lone)
		}
	}
}

// FuzzScannerAgreesWithEncodingJSON holds the scanner to encoding/json on
// every UTF-8 body: both take the same objects, read the same top-level
// values (strings without a lone surrogate, which encoding/json makes
// U+FFFD), and place a syntax error at the same byte. The one licensed
// difference: encoding/json refuses nesting beyond 10000 levels.
func FuzzScannerAgreesWithEncodingJSON(f *testing.F) {
	for _, s := range []string{
		producerBytes, `{"a":1,"b":true,"c":null,"d":"e"}`, `{"a":"b","a":"c"}`, `{"a":-0.5E-7}`, `{}`, ` {"a":"ü"} `,
		`{"a":{"b":[1,{"c":[]}]}}`, `{"a":"\u00fc\ud83d\ude00\n"}`, `{"a":"\ud800"}`, `{"a":01}`, `{"a":1.}`, `{"a":[1,]}`,
		`{"a":{"b":1,}}`, `{"a":tru}`, `{"a" 1}`, `{"a":1}x`, `{"a":"\x"}`, `{"a":"\u12"}`, "{\"a\":\"\x01\"}", `[1]`, `"s"`, `{"\u0069d":1}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if !utf8.Valid(data) {
			return
		}
		var want map[string]json.RawMessage
		jsonErr := json.Unmarshal(data, &want)
		got, end, err := scanAll(data)

		var syntax *json.SyntaxError
		switch {
		case jsonErr != nil && strings.Contains(jsonErr.Error(), "exceeded max depth"):
			return
		case jsonErr == nil && want == nil:
			return // "null": not an object, nothing to compare
		case jsonErr == nil:
			if err != nil || end != len(data) {
				t.Fatalf("encoding/json takes %q; scanner: %+v, end %d of %d", data, err, end, len(data))
			}
			for k, w := range want {
				g, ok := got[k]
				if !ok {
					t.Fatalf("%q: scanner has no %q", data, k)
				}
				if !sameValue(g, w) {
					t.Fatalf("%q: key %q: scanner %+v, encoding/json %#v", data, k, g, w)
				}
			}
			if len(got) != len(want) {
				t.Fatalf("%q: scanner keys %v, encoding/json %v", data, got, want)
			}
		case err == errNotAnObject:
			return // a number, string, array…: refused whatever follows it
		case errors.As(jsonErr, &syntax):
			// The scanner stops at the object; what follows it is the
			// caller's "unexpected data" problem, at the same byte.
			at := -1
			switch {
			case err != nil && !err.eof:
				at = err.at + 1
			case err == nil && end < len(data):
				at = end + 1
			}
			// encoding/json finds a body that ends inside a top-level
			// literal or number by feeding it one more space.
			fedSpace := syntax.Offset == int64(len(data)) && strings.HasPrefix(syntax.Error(), "invalid character ' '")
			if fedSpace && err != nil && err.eof {
				return
			}
			if syntax.Error() == "unexpected end of JSON input" {
				if err == nil || !err.eof {
					t.Fatalf("%q: encoding/json: %v; scanner: %+v, want end of input", data, jsonErr, err)
				}
				return
			}
			if at != int(syntax.Offset) {
				t.Fatalf("%q: encoding/json: %v at %d; scanner: %+v (end %d)", data, jsonErr, syntax.Offset, err, end)
			}
		default:
			// Valid JSON but not an object.
			if err == nil {
				t.Fatalf("%q: encoding/json: %v; scanner took it", data, jsonErr)
			}
		}
	})
}

// sameValue compares what the scanner read with encoding/json's raw value.
func sameValue(g scanned, raw json.RawMessage) bool {
	var k kind
	switch raw[0] {
	case '"':
		var w string
		if err := json.Unmarshal(raw, &w); err != nil || g.kind != kindString {
			return false
		}
		return g.lone || g.text == w
	case '{':
		k = kindObject
	case '[':
		k = kindArray
	case 't', 'f':
		k = kindBool
	case 'n':
		k = kindNull
	default:
		return g.kind == kindNumber && g.text == string(raw)
	}
	return g.kind == k
}

func TestPeek(t *testing.T) {
	t.Parallel()
	for body, want := range map[string][2]string{
		producerBytes:                                  {"78af4bc4-afce-4676-b373-5b802a2dfd2e", ""},
		`{"id":"u1","request_id":"r1"}`:                {"u1", "r1"},
		`{"id":"u\u0031","request_id":"r1"}`:           {"u1", "r1"},
		`{"\u0069d":"u1","request_\u0069d":"r\u001b"}`: {"u1", "r\x1b"},
		`{"id":"u1","extra":{"deep":[1,2]}}`:           {"u1", ""},
		`{"id":"u1","x":` + strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + `}`: {"u1", ""},
		`{"id":7,"request_id":null}`: {"", ""},
		`{"request_id":"\ud800"}`:    {"", "\xed\xa0\x80"}, // as DecodeEvent reads it
		`not json`:                   {"", ""},
		`{"id":"u1"} {}`:             {"", ""},
		`{"id":"u1",`:                {"", ""},
		`{"id":"u1","id":"u2"}`:      {"u2", ""}, // Peek does not judge; the decoder will
		`["id","u1"]`:                {"", ""},
	} {
		id, req := Peek([]byte(body))
		if id != want[0] || req != want[1] {
			t.Errorf("Peek(%.80s) = %q, %q; want %q, %q", body, id, req, want[0], want[1])
		}
	}
}

// FuzzPeekAgreesWithUnmarshal: Peek reads id and request_id as
// encoding/json does, but for lone surrogates, which it keeps (WTF-8)
// where encoding/json writes U+FFFD, and nesting beyond encoding/json's
// 10000 levels.
func FuzzPeekAgreesWithUnmarshal(f *testing.F) {
	for _, s := range []string{producerBytes, `{"id":"a","id":7}`, `{"request_id":"r","id":"ü"}`, `{"id":null}`, `[]`, `{"id":"\ud800x"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if !utf8.Valid(data) {
			return
		}
		id, req := Peek(data)
		var probe struct {
			ID        any `json:"id"`
			RequestID any `json:"request_id"`
		}
		if err := json.Unmarshal(data, &probe); err != nil {
			if id != "" || req != "" {
				if strings.Contains(err.Error(), "exceeded max depth") {
					return
				}
				t.Fatalf("Peek(%q) = %q, %q; encoding/json rejects it", data, id, req)
			}
			return
		}
		wantID, _ := probe.ID.(string)
		wantReq, _ := probe.RequestID.(string)
		if surrogatesAsFFFD(id) != wantID || surrogatesAsFFFD(req) != wantReq {
			t.Fatalf("Peek(%q) = %q, %q; encoding/json reads %q, %q", data, id, req, wantID, wantReq)
		}
	})
}

// surrogatesAsFFFD writes each WTF-8 surrogate of s as U+FFFD, as
// encoding/json decodes a lone surrogate escape.
func surrogatesAsFFFD(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		if _, ok := wtf8Surrogate(s[i:]); ok {
			b.WriteRune(utf8.RuneError)
			i += 3
			continue
		}
		b.WriteByte(s[i])
		i++
	}
	return b.String()
}
