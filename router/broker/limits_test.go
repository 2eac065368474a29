package broker

import (
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/social/user-events-router/configs"
)

// MemoryBound says which bound holds: the budget on a durable that
// redelivers without limit (the router creates its own so), the durable's
// max ack pending on one with a max deliver.
func TestMemoryBound(t *testing.T) {
	cfg := configs.Defaults()
	const mib = 1 << 20
	own := LimitsOf(ConsumerConfig(cfg), mib)
	if !own.ByteBounded() {
		t.Fatalf("the durable the router creates: %+v, want byte-bounded", own)
	}
	for _, c := range []struct {
		name      string
		d         DurableLimits
		want, not []string
	}{
		{"the router's own durable", own,
			[]string{"bounded by MAX_IN_FLIGHT_BYTES=16777216: at most 16 MiB of messages held, plus one of up to 1 MiB parked", "handed back to it with a delay as it arrives", "1000 × 1 MiB = 1000 MiB"},
			[]string{"NATS client also keeps"}},
		{"own durable, more pending than in flight", DurableLimits{MaxDeliver: -1, MaxAckPending: 3000, MaxMsgBytes: mib},
			[]string{"bounded by MAX_IN_FLIGHT_BYTES", "the NATS client also keeps what the broker pushes meanwhile (the durable's max ack pending is 3000)"}, nil},
		{"a legacy durable", DurableLimits{MaxDeliver: 3, MaxAckPending: 1000, MaxMsgBytes: mib},
			[]string{"bounded by the durable, not by MAX_IN_FLIGHT_BYTES", "1000 × 1 MiB = 1000 MiB", "max deliver 3"}, nil},
		{"a legacy durable without max ack pending", DurableLimits{MaxDeliver: 3, MaxAckPending: -1, MaxMsgBytes: mib},
			[]string{"the whole backlog (its max ack pending is unlimited)"}, nil},
	} {
		got := MemoryBound(cfg, c.d)
		for _, w := range c.want {
			if !strings.Contains(got, w) {
				t.Errorf("%s: %q lacks %q", c.name, got, w)
			}
		}
		for _, n := range c.not {
			if strings.Contains(got, n) {
				t.Errorf("%s: %q says %q", c.name, got, n)
			}
		}
	}
	if got := MaxMessageBytes(jetstream.StreamConfig{MaxMsgSize: 4096}, mib); got != 4096 {
		t.Errorf("MaxMessageBytes with a stream limit = %d", got)
	}
	if got := MaxMessageBytes(jetstream.StreamConfig{MaxMsgSize: -1}, mib); got != mib {
		t.Errorf("MaxMessageBytes without a stream limit = %d", got)
	}
}
