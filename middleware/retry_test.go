package middleware

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
)

// retryLog runs retry with a handler that fails every try, recording the
// log lines; ctx is the message's.
func retryLog(t *testing.T, ctx context.Context, max int, initial, ceil time.Duration) (calls int, err error, lines []map[string]any) {
	t.Helper()
	var buf bytes.Buffer
	mw := retry(retryOptions{
		max: max, initial: initial, ceil: ceil, multiplier: 2, randomization: 0.5,
		logger:          slog.New(slog.NewJSONHandler(&buf, nil)),
		shouldRetryFunc: func(error) bool { return true },
	})
	msg := message.NewMessage("m-1", nil)
	msg.SetContext(ctx)
	_, err = mw(func(m *message.Message) ([]*message.Message, error) {
		calls++
		if m.Context() != ctx {
			t.Errorf("try %d did not start from the message's own context", calls)
		}
		// What Timeout does: the next try must not inherit it.
		m.SetContext(context.WithoutCancel(ctx))
		return nil, errors.New("database away")
	})(msg)
	for _, l := range bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n")) {
		if len(l) == 0 {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(l, &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		lines = append(lines, m)
	}
	return calls, err, lines
}

// TestRetryWaitsDouble: the waits are initial × 2^k within the jitter,
// capped at the ceiling, one log line per retry naming it, and the last
// error comes back.
func TestRetryWaitsDouble(t *testing.T) {
	const initial, ceil = time.Millisecond, 4 * time.Millisecond
	calls, err, lines := retryLog(t, t.Context(), 4, initial, ceil)
	if calls != 5 || err == nil || err.Error() != "database away" {
		t.Fatalf("calls = %d, err = %v; want 5 and the handler's error", calls, err)
	}
	if len(lines) != 4 {
		t.Fatalf("%d log lines, want one per retry (4): %v", len(lines), lines)
	}
	for i, l := range lines {
		base := min(initial<<i, ceil)
		ns, ok := l["wait"].(float64) // slog's JSON writes a duration in ns
		if !ok {
			t.Fatalf("line %d: wait %v is not a number", i, l["wait"])
		}
		wait := time.Duration(ns)
		if lo, hi := base/2, base*3/2; wait < lo || wait > hi {
			t.Errorf("retry %d waited %v, want %v–%v (%v ± 50%%)", i+1, wait, lo, hi, base)
		}
		if l["retry"] != float64(i+1) || l["max_retries"] != float64(4) || l["message_uuid"] != "m-1" || l["error"] != "database away" {
			t.Errorf("line %d: %v", i, l)
		}
	}
}

// TestRetryStopsWithTheContext: a context that ends while a retry waits
// ends the retries with its cause, without another try.
func TestRetryStopsWithTheContext(t *testing.T) {
	ctx, cancel := context.WithCancelCause(t.Context())
	stop := errors.New("router stopping")
	time.AfterFunc(20*time.Millisecond, func() { cancel(stop) })
	calls, err, _ := retryLog(t, ctx, 3, time.Hour, time.Hour)
	if calls != 1 || !errors.Is(err, stop) {
		t.Fatalf("calls = %d, err = %v; want 1 and the context's cause", calls, err)
	}
}
