package schema

import (
	"encoding/json"
	"maps"
	"testing"
)

const producerBytes = `{"id":"78af4bc4-afce-4676-b373-5b802a2dfd2e","email":"alice@example.com","username":"alice01","action":"created","request_id":"","timestamp":"2026-11-28T13:28:17Z","service_name":"gofiber-auth"}`

// The fast path must take what the Auth Service really sends, or it is
// never used.
func TestReadFlatTakesProducerBodies(t *testing.T) {
	for _, body := range []string{
		producerBytes,
		`{"id":"u","displayName":"Zoë","avatar":"","role":"admin","isActive":true,"sequence":42,"x":null,"n":-0.5e+3}`,
		" {\n\t\"a\" : \"b\" } \r\n",
		`{}`,
	} {
		if _, ok := readFlat([]byte(body)); !ok {
			t.Errorf("fast path refused %s", body)
		}
	}
}

// It must leave everything unusual to the token walk.
func TestReadFlatDefersTheRest(t *testing.T) {
	for _, body := range []string{
		`{"a":"b","a":"c"}`, `{"a":"\u0041"}`, `{"a":{"b":1}}`, `{"a":[1]}`, `{"a":1}x`, `{"a":01}`,
		`{"a":1.}`, `{"a":-}`, `{"a":1e}`, `{"a":tru}`, `{"a" "b"}`, `{"a":"b",}`, `{"a":"b"`, `["a"]`, "{\"a\":\"\x01\"}",
	} {
		if _, ok := readFlat([]byte(body)); ok {
			t.Errorf("fast path took %s", body)
		}
	}
}

// FuzzReadFlatAgreesWithReadObject: whenever the fast path takes a body,
// the careful token walk finds it clean and reads the same fields.
func FuzzReadFlatAgreesWithReadObject(f *testing.F) {
	for _, s := range []string{producerBytes, `{"a":1,"b":true,"c":null,"d":"e"}`, `{"a":"b","a":"c"}`, `{"a":-0.5E-7}`, `{}`, ` {"a":"ü"} `} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if _, ok := checkBody(data); !ok {
			return
		}
		fast, ok := readFlat(data)
		if !ok {
			return
		}
		slow, problems, ok := readObject(data)
		if !ok || len(problems) > 0 {
			t.Fatalf("fast path took %q, token walk: ok=%v problems=%v", data, ok, problems)
		}
		if !maps.Equal(fast, slow) {
			t.Fatalf("fields differ for %q:\nfast %v\nslow %v", data, fast, slow)
		}
	})
}

func TestPeek(t *testing.T) {
	for body, want := range map[string][2]string{
		producerBytes:                        {"78af4bc4-afce-4676-b373-5b802a2dfd2e", ""},
		`{"id":"u1","request_id":"r1"}`:      {"u1", "r1"},
		`{"id":"u\u0031","request_id":"r1"}`: {"u1", "r1"}, // escapes: the slow path
		`{"id":"u1","extra":{"deep":[1,2]}}`: {"u1", ""},
		`{"id":7,"request_id":null}`:         {"", ""},
		`not json`:                           {"", ""},
		`{"id":"u1","id":"u2"}`:              {"u2", ""}, // Peek does not judge; the decoder will
	} {
		id, req := Peek([]byte(body))
		if id != want[0] || req != want[1] {
			t.Errorf("Peek(%s) = %q, %q; want %q, %q", body, id, req, want[0], want[1])
		}
	}
}

// FuzzPeekAgreesWithUnmarshal: Peek's fast path reads id and request_id as
// encoding/json does.
func FuzzPeekAgreesWithUnmarshal(f *testing.F) {
	for _, s := range []string{producerBytes, `{"id":"a","id":7}`, `{"request_id":"r","id":"ü"}`, `{"id":null}`, `[]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		id, req := Peek(data)
		var probe struct {
			ID        any `json:"id"`
			RequestID any `json:"request_id"`
		}
		if json.Unmarshal(data, &probe) != nil {
			if id != "" || req != "" {
				t.Fatalf("Peek(%q) = %q, %q; encoding/json rejects it", data, id, req)
			}
			return
		}
		wantID, _ := probe.ID.(string)
		wantReq, _ := probe.RequestID.(string)
		if id != wantID || req != wantReq {
			t.Fatalf("Peek(%q) = %q, %q; encoding/json reads %q, %q", data, id, req, wantID, wantReq)
		}
	})
}
