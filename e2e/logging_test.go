package e2e

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/social/user-events-router/router/routertest"
	"github.com/social/user-events-router/store"
	"github.com/social/user-events-router/store/storetest"
)

// logLines parses JSON log output, one object per line.
func logLines(t *testing.T, out string) []map[string]any {
	t.Helper()
	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line is not JSON: %v: %s", err, l)
		}
		lines = append(lines, m)
	}
	return lines
}

// TestLogsOneLinePerFailure: a failing event is logged once per delivery,
// by the router, with its correlation id, stream_seq as a number (as in the
// poison queue's JSON) and the duration as a Go duration string (as in the
// "starting" line) — not a second time by Watermill ("Handler returned
// error", without the correlation id).
func TestLogsOneLinePerFailure(t *testing.T) {
	t.Parallel()
	srv := routertest.StartServer(t)
	dbURL := storetest.URL(t, store.SQLite)
	db := openDB(t, dbURL)
	p := startRouter(t, testEnv(t, srv.URL, dbURL))
	js := routertest.JetStream(t, srv.URL)
	waitForConsumer(t, js)
	mustExec(t, db, `ALTER TABLE watermill_profile_sync_commands RENAME TO parked_commands`)
	seq := routertest.Publish(t, js, "user.events.created", []byte(producerPayload))
	// Two deliveries handled and failed (the server's redelivery count
	// goes up before the router has handled the redelivery).
	routertest.Eventually(t, 20*time.Second, "a redelivery of the failing event, handled", func() bool {
		return strings.Count(p.logs.String(), "event not handled; it will be delivered again") >= 2
	})
	p.stop(t)

	failures := 0
	for _, l := range logLines(t, p.logs.String()) {
		switch l["msg"] {
		case "starting":
			cfg, _ := l["config"].(map[string]any)
			if cfg["close_timeout"] != "10s" || cfg["handler_timeout"] != "5s" {
				t.Errorf("starting line: durations %v and %v, want Go duration strings", cfg["close_timeout"], cfg["handler_timeout"])
			}
		case "Handler returned error":
			t.Errorf("Watermill logged the failure again: %v", l)
		case "event not handled; it will be delivered again":
			failures++
			if l["correlation_id"] == "" || l["correlation_id"] == nil {
				t.Errorf("failure line without correlation_id: %v", l)
			}
			if n, ok := l["stream_seq"].(float64); !ok || uint64(n) != seq {
				t.Errorf("stream_seq = %#v, want the number %d", l["stream_seq"], seq)
			}
			if _, ok := l["delivery_attempt"].(float64); !ok {
				t.Errorf("delivery_attempt = %#v, want a number", l["delivery_attempt"])
			}
			if d, _ := l["took"].(string); d == "" {
				t.Errorf("took = %#v, want a Go duration string", l["took"])
			} else if _, err := time.ParseDuration(d); err != nil {
				t.Errorf("took = %q: %v", d, err)
			}
		}
		if lvl := l["level"]; (lvl == "WARN" || lvl == "ERROR") && l["message_uuid"] != nil && l["correlation_id"] == nil {
			t.Errorf("a line about a message without correlation_id: %v", l)
		}
	}
	if failures < 2 {
		t.Errorf("%d failure lines, want one per delivery (at least 2)", failures)
	}
}
