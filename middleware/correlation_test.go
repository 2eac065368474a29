package middleware_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"

	"github.com/social/user-events-router/handlers"
	"github.com/social/user-events-router/middleware"
	"github.com/social/user-events-router/schema"
)

// jsonLogger logs everything, as JSON, to the returned buffer.
func jsonLogger() (*slog.Logger, *bytes.Buffer) {
	var buf bytes.Buffer
	return slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})), &buf
}

// logLines decodes the JSON log lines in buf whose message is one of msgs
// (all lines when msgs is empty).
func logLines(t *testing.T, buf *bytes.Buffer, msgs ...string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if line == "" {
			continue
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line is not JSON: %q: %v", line, err)
		}
		if m, _ := rec["msg"].(string); len(msgs) == 0 || slices.Contains(msgs, m) {
			out = append(out, rec)
		}
	}
	return out
}

// The messages of Correlation's outcome lines.
const (
	logHandled  = "event handled"
	logFailed   = "event not handled; it will be delivered again"
	logPoisoned = "event sent to the poison queue"
)

func TestCorrelationID(t *testing.T) {
	t.Parallel()
	mint := func(body string) string { return handlers.MintCorrelationID([]byte(body)) }
	tests := []struct {
		name     string
		body     string
		existing string // correlation_id the transport set (X-Request-ID)
		want     string
	}{
		{"request_id in body wins over the transport's", `{"request_id":"req-1","action":"created"}`, "hdr-1", "req-1"},
		{"request_id in body", `{"request_id":"req-1"}`, "", "req-1"},
		{"empty request_id keeps the transport's", `{"request_id":"","action":"created"}`, "hdr-1", "hdr-1"},
		{"no request_id keeps the transport's", `{"action":"created"}`, "hdr-1", "hdr-1"},
		{"non-string request_id keeps the transport's", `{"request_id":42}`, "hdr-1", "hdr-1"},
		{"broken body keeps the transport's", `{"request_id":"req-1",`, "hdr-1", "hdr-1"},
		{"request_id read leniently from an otherwise invalid event", `{"request_id":"req-1","timestamp":7,"id":[]}`, "", "req-1"},
		{"neither: minted from the bytes", `{"request_id":"","action":"created"}`, "", mint(`{"request_id":"","action":"created"}`)},
		{"broken body: minted", `{"request_id":"req-1",`, "", mint(`{"request_id":"req-1",`)},
		{"empty body: minted", ``, "", mint(``)},
		{"request_id with ESC is escaped", `{"request_id":"r\u001b[2J"}`, "", `r\x1b[2J`},
		{"request_id with NUL is escaped", `{"request_id":"r\u0000"}`, "", `r\x00`},
		{"request_id with CR LF is escaped", `{"request_id":"r\r\nX-Evil: 1"}`, "", `r\r\nX-Evil: 1`},
		{"request_id with a bidi override is escaped", `{"request_id":"r\u202e1"}`, "", `r\u202e1`},
		{"request_id with a lone surrogate is escaped", `{"request_id":"r\ud800"}`, "", `r\ud800`},
		{"request_id of 1 KB is cut", `{"request_id":"` + strings.Repeat("r", 1024) + `"}`, "", strings.Repeat("r", schema.MaxRequestIDBytes)},
		{"the transport's id is escaped too", `{}`, "hdr\x1b", `hdr\x1b`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			logger, _ := jsonLogger()
			msg := message.NewMessage(watermill.NewUUID(), []byte(tt.body))
			if tt.existing != "" {
				msg.Metadata.Set(handlers.MetaCorrelationID, tt.existing)
			}
			var seen string
			h := middleware.Correlation(logger)(func(m *message.Message) ([]*message.Message, error) {
				seen = m.Metadata.Get(handlers.MetaCorrelationID)
				return nil, nil
			})

			if _, err := h(msg); err != nil {
				t.Fatal(err)
			}
			if seen != tt.want {
				t.Errorf("handler saw correlation_id %q, want %q", seen, tt.want)
			}
			if got := msg.Metadata.Get(handlers.MetaCorrelationID); got != tt.want {
				t.Errorf("correlation_id after = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestCorrelationAgreesWithDecodeEvent: the id chosen before decoding is
// the one the decoded event yields, so a poison entry, the log lines and
// the command of one event share it, however hostile its request_id.
func TestCorrelationAgreesWithDecodeEvent(t *testing.T) {
	t.Parallel()
	for _, raw := range []string{`""`, `"req-1"`, `"\u0000\u001b[31m\u202e\ud800\r\n"`, `"` + strings.Repeat("é", 100) + `"`, `"\u0041\ud83d\ude00"`} {
		body := `{"id":"78af4bc4-afce-4676-b373-5b802a2dfd2e","email":"","username":"u","action":"created","request_id":` + raw + `,"timestamp":"2026-11-28T13:28:17Z"}`
		ev, err := schema.DecodeEvent("", []byte(body))
		if err != nil {
			t.Fatal(err)
		}
		msg := message.NewMessage(watermill.NewUUID(), []byte(body))
		logger, _ := jsonLogger()
		h := middleware.Correlation(logger)(func(*message.Message) ([]*message.Message, error) { return nil, nil })
		if _, err := h(msg); err != nil {
			t.Fatal(err)
		}
		want := handlers.ResolveCorrelationID(ev.RequestID, "", []byte(body))
		if got := msg.Metadata.Get(handlers.MetaCorrelationID); got != want {
			t.Errorf("request_id %s: middleware chose %q, the decoded event gives %q", raw, got, want)
		}
	}
}

// TestCorrelationMintedID checks that a minted id follows the bytes, not the
// message: every delivery of one event gets the same id.
func TestCorrelationMintedID(t *testing.T) {
	t.Parallel()
	const body = `{"action":"created","id":"78af4bc4-afce-4676-b373-5b802a2dfd2e"}`
	tests := []struct {
		name        string
		first, then string
		wantSame    bool
	}{
		{"same bytes, another delivery", body, body, true},
		{"other bytes", body, body + " ", false},
		{"same broken bytes", `{"request_id":`, `{"request_id":`, true},
		{"other broken bytes", `{"request_id":`, `{"request_id"`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			logger, _ := jsonLogger()
			h := middleware.Correlation(logger)(func(*message.Message) ([]*message.Message, error) { return nil, nil })
			ids := make([]string, 2)
			for i, b := range []string{tt.first, tt.then} {
				msg := message.NewMessage(watermill.NewUUID(), []byte(b)) // a new UUID each delivery
				if _, err := h(msg); err != nil {
					t.Fatal(err)
				}
				ids[i] = msg.Metadata.Get(handlers.MetaCorrelationID)
				if _, err := uuid.Parse(ids[i]); err != nil {
					t.Errorf("minted id %q is not a UUID: %v", ids[i], err)
				}
			}
			if same := ids[0] == ids[1]; same != tt.wantSame {
				t.Errorf("ids %q and %q: same = %v, want %v", ids[0], ids[1], same, tt.wantSame)
			}
		})
	}
}

func TestCorrelationLogsOutcome(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		err       error
		poisoned  bool
		wantLevel string
		wantMsg   string
		wantExtra map[string]any
	}{
		{"success", nil, false, "DEBUG", logHandled, nil},
		{"failure", errTransient, false, "WARN", logFailed, map[string]any{"error": "database is down"}},
		{"poisoned", nil, true, "ERROR", logPoisoned, map[string]any{"error_class": "permanent", "reason": "email is not valid"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			logger, buf := jsonLogger()
			msg := message.NewMessage("6a1f1f4e-0000-4000-8000-000000000001", []byte(`{"request_id":"req-7"}`))
			msg.Metadata.Set(handlers.MetaSubject, testSubject)
			msg.Metadata.Set(handlers.MetaStreamSeq, "42")
			msg.Metadata.Set(handlers.MetaDeliveryAttempt, "2")
			msg.Metadata.Set(handlers.MetaIngress, "nats")
			// The dispatcher sets handler and user_id once the event decoded,
			// so the outcome line is written after the handler returns.
			h := middleware.Correlation(logger)(func(m *message.Message) ([]*message.Message, error) {
				m.Metadata.Set(handlers.MetaHandler, handlers.HandlerCreated)
				m.Metadata.Set(handlers.MetaUserID, "78af4bc4-afce-4676-b373-5b802a2dfd2e")
				if tt.poisoned {
					m.Metadata.Set(handlers.MetaPoisonClass, "permanent")
					m.Metadata.Set(handlers.MetaPoisonReason, "email is not valid")
				}
				return nil, tt.err
			})

			_, err := h(msg)

			if !errors.Is(err, tt.err) || (tt.err == nil && err != nil) {
				t.Errorf("err = %v, want %v", err, tt.err)
			}
			lines := logLines(t, buf)
			if len(lines) != 1 {
				t.Fatalf("log lines = %v, want exactly one", lines)
			}
			got := lines[0]
			want := map[string]any{
				"level":            tt.wantLevel,
				"msg":              tt.wantMsg,
				"correlation_id":   "req-7",
				"message_uuid":     "6a1f1f4e-0000-4000-8000-000000000001",
				"ingress":          "nats",
				"subject":          testSubject,
				"stream_seq":       float64(42), // numbers, as in the poison queue's JSON
				"delivery_attempt": float64(2),
				"handler":          handlers.HandlerCreated,
				"user_id":          "78af4bc4-afce-4676-b373-5b802a2dfd2e",
			}
			for k, v := range tt.wantExtra {
				want[k] = v
			}
			for k, v := range want {
				if got[k] != v {
					t.Errorf("log %s = %v, want %v (line %v)", k, got[k], v, got)
				}
			}
			if _, ok := got["took"]; !ok {
				t.Errorf("log line has no took: %v", got)
			}
			if _, ok := got["error"]; ok && tt.err == nil {
				t.Errorf("log line has an error: %v", got)
			}
		})
	}
}

// TestCorrelationRestoresContext checks that a context an inner step left on
// the message (Timeout's, cancelled) does not outlive the call.
func TestCorrelationRestoresContext(t *testing.T) {
	t.Parallel()
	logger, _ := jsonLogger()
	type key struct{}
	deliveryCtx := context.WithValue(t.Context(), key{}, "delivery")
	msg := message.NewMessage(watermill.NewUUID(), []byte(`{}`))
	msg.SetContext(deliveryCtx)
	h := middleware.Correlation(logger)(func(m *message.Message) ([]*message.Message, error) {
		ctx, cancel := context.WithCancel(m.Context())
		cancel()
		m.SetContext(ctx)
		return nil, nil
	})

	if _, err := h(msg); err != nil {
		t.Fatal(err)
	}
	if msg.Context().Err() != nil || msg.Context().Value(key{}) != "delivery" {
		t.Errorf("context after = %v (err %v), want the delivery's", msg.Context(), msg.Context().Err())
	}
}
