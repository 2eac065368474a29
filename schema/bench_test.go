package schema_test

import (
	"testing"

	"github.com/social/user-events-router/schema"
)

// The hot path: every event is peeked (ordering, correlation) and decoded
// once. Bodies are the producer's own (DESIGN §2) and a V1 leftover.
var benchBodies = []struct{ name, body string }{
	{"producer", producerPayload},
	{"v1", `{"id":"78af4bc4-afce-4676-b373-5b802a2dfd2e","email":"alice@example.com","username":"alice01","displayName":"Alice A.","avatar":"https://cdn.example.com/a.png","role":"admin","isActive":true,"permissions":["users:write"],"action":"created","timestamp":"2026-11-28T13:28:17Z"}`},
}

func BenchmarkDecodeEvent(b *testing.B) {
	for _, bb := range benchBodies {
		data := []byte(bb.body)
		b.Run(bb.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := schema.DecodeEvent("user.events.created", data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkPeek(b *testing.B) {
	for _, bb := range benchBodies {
		data := []byte(bb.body)
		b.Run(bb.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if id, _ := schema.Peek(data); id == "" {
					b.Fatal("no id")
				}
			}
		})
	}
}
