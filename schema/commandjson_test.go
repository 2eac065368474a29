package schema

import (
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// tricky are strings encoding/json escapes in every way it has.
var tricky = []string{"", "alice@example.com", "ไทย_ทดสอบ_1a2b3c4d", "a\"b\\c", "<script>&amp;</script>", "\x00\x01\x1f\x7f",
	"\b\f\n\r\t", "line\u2028sep\u2029", "bad\xffutf8\xc3", "emoji 😀 ok", "\u202eRTL", strings.Repeat("x", 300)}

func randomCommand(rng *rand.Rand) Command {
	s := func() string {
		if rng.IntN(3) == 0 {
			return tricky[rng.IntN(len(tricky))]
		}
		var b strings.Builder
		for range rng.IntN(12) {
			b.WriteRune(rune(rng.IntN(0x3000)))
		}
		if rng.IntN(5) == 0 {
			b.WriteByte(byte(rng.IntN(256)))
		}
		return b.String()
	}
	c := Command{CommandID: s(), Type: CommandType(s()), SchemaVersion: rng.IntN(3) - 1, UserID: s(), Email: s(), Username: s(),
		OccurredAt: time.Unix(rng.Int64N(1<<34), rng.Int64N(1e9)).In(time.FixedZone("", (rng.IntN(5)-2)*1800)),
		Generation: rng.IntN(4) - 1, UserSequence: rng.Uint64N(3) * rng.Uint64(), CorrelationID: s(),
		Source: Source{Service: s(), Subject: s(), Ingress: s(), StreamSequence: rng.Uint64N(2) * rng.Uint64(),
			DeliveryAttempt: rng.Uint64N(2) * rng.Uint64N(10), RequestID: s()}}
	if rng.IntN(2) == 0 {
		c.ProfileDefaults = &ProfileDefaults{DisplayName: s(), Avatar: s(), Bio: s()}
	}
	return c
}

// TestMarshalCommandIsJSON: the hand-written encoding is encoding/json's,
// byte for byte, for commands holding every kind of text a field can.
func TestMarshalCommandIsJSON(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(7, 8))
	for i := range 5000 {
		c := randomCommand(rng)
		want, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		got, err := MarshalCommand(c)
		if err != nil || string(got) != string(want) {
			t.Fatalf("command %d: MarshalCommand (%v)\n%s\nencoding/json\n%s", i, err, got, want)
		}
	}
	// A time encoding/json refuses is refused alike.
	c := randomCommand(rng)
	c.OccurredAt = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
	if _, err := MarshalCommand(c); err == nil {
		t.Error("a year past 9999 was encoded")
	}
}

func FuzzMarshalCommand(f *testing.F) {
	for _, s := range tricky {
		f.Add(s, s, uint64(1))
	}
	f.Fuzz(func(t *testing.T, email, username string, seq uint64) {
		c := Command{CommandID: "id", Type: CommandSyncIdentity, SchemaVersion: CommandSchemaVersion, UserID: username,
			Email: email, Username: username, OccurredAt: time.Unix(int64(seq%(1<<33)), 0).UTC(), UserSequence: seq,
			Source: Source{Subject: email, StreamSequence: seq, RequestID: username}, ProfileDefaults: &ProfileDefaults{DisplayName: email}}
		want, err := json.Marshal(c)
		if err != nil {
			t.Skip()
		}
		got, err := MarshalCommand(c)
		if err != nil || string(got) != string(want) {
			t.Fatalf("MarshalCommand (%v)\n%s\nencoding/json\n%s", err, got, want)
		}
	})
}

func BenchmarkMarshalCommand(b *testing.B) {
	c := Command{CommandID: "4f1c2a56-3b8e-5d7f-9a10-2b3c4d5e6f70", Type: CommandCreateProfile, SchemaVersion: CommandSchemaVersion,
		UserID: "78af4bc4-afce-4676-b373-5b802a2dfd2e", Email: "alice@example.com", Username: "alice01",
		OccurredAt: time.Date(2026, 11, 28, 13, 28, 17, 0, time.UTC), Generation: 1, UserSequence: 1,
		CorrelationID:   "8a25209b-f6a3-5df9-9ebe-9511b23c7d00",
		Source:          Source{Service: "gofiber-auth", Subject: "user.events.created", Ingress: IngressNATS, StreamSequence: 12345, DeliveryAttempt: 1},
		ProfileDefaults: &ProfileDefaults{DisplayName: "alice01"}}
	b.Run("hand", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = MarshalCommand(c)
		}
	})
	b.Run("encoding/json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = json.Marshal(c)
		}
	})
}
