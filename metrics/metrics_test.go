package metrics_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/social/user-events-router/handlers"
	"github.com/social/user-events-router/metrics"
	"github.com/social/user-events-router/middleware"
)

var actions = []string{"created", "updated", "deleted"}

// scrape returns m's exposition text.
func scrape(t *testing.T, m *metrics.Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	if rec.Code != http.StatusOK {
		t.Fatalf("scrape: status %d: %s", rec.Code, body)
	}
	return string(body)
}

// checkLines reports the lines of want missing from body, and the lines of
// body that start with a prefix in absent.
func checkLines(t *testing.T, body string, want, absent []string) {
	t.Helper()
	lines := strings.Split(body, "\n")
	has := map[string]bool{}
	for _, l := range lines {
		has[l] = true
	}
	for _, w := range want {
		if !has[w] {
			t.Errorf("scrape has no line %q", w)
		}
	}
	for _, l := range lines {
		for _, a := range absent {
			if strings.HasPrefix(l, a) {
				t.Errorf("scrape has line %q, want none starting %q", l, a)
			}
		}
	}
}

func TestMiddlewareRecordsOutcome(t *testing.T) {
	t.Parallel()
	const (
		events      = "user_events_router_events_total"
		poison      = "user_events_router_poison_writes_total"
		redelivered = "user_events_router_redeliveries_total"
		lag         = "user_events_router_commit_lag_seconds"
	)
	ninetySecondsAgo := time.Now().Add(-90 * time.Second).Format(time.RFC3339Nano)
	ok := func(*message.Message) ([]*message.Message, error) { return nil, nil }
	poisoned := func(msg *message.Message) ([]*message.Message, error) {
		msg.Metadata.Set(handlers.MetaPoisonClass, middleware.ClassPermanent)
		return nil, nil
	}
	failed := func(*message.Message) ([]*message.Message, error) { return nil, errors.New("database is down") }
	tests := []struct {
		name    string
		md      map[string]string
		handler message.HandlerFunc
		wantErr bool
		want    []string
		absent  []string
	}{
		{
			name:    "committed",
			md:      map[string]string{handlers.MetaAction: "created", handlers.MetaIngress: "nats", handlers.MetaDeliveryAttempt: "1"},
			handler: ok,
			want: []string{
				events + `{action="created",ingress="nats",outcome="committed"} 1`,
				redelivered + " 0",
				lag + "_count 0",
			},
			absent: []string{poison + "{"},
		},
		{
			name:    "unknown action is other",
			md:      map[string]string{handlers.MetaAction: "banned", handlers.MetaIngress: "http"},
			handler: ok,
			want:    []string{events + `{action="other",ingress="http",outcome="committed"} 1`},
			absent:  []string{events + `{action="banned"`},
		},
		{
			name:    "a copy the ledger found carried writes nothing",
			md:      map[string]string{handlers.MetaAction: "updated", handlers.MetaIngress: "http", handlers.MetaVerdict: handlers.VerdictCopy},
			handler: ok,
			want:    []string{events + `{action="updated",ingress="http",outcome="already_carried"} 1`},
			absent:  []string{events + `{action="updated",ingress="http",outcome="committed"}`},
		},
		{
			name:    "no action is undecodable",
			md:      map[string]string{handlers.MetaIngress: "nats"},
			handler: poisoned,
			want: []string{
				events + `{action="undecodable",ingress="nats",outcome="poisoned"} 1`,
				poison + `{class="permanent"} 1`,
			},
		},
		{
			name:    "poisoned: no lag",
			md:      map[string]string{handlers.MetaAction: "deleted", handlers.MetaIngress: "replay", handlers.MetaOccurredAt: ninetySecondsAgo},
			handler: poisoned,
			want: []string{
				events + `{action="deleted",ingress="replay",outcome="poisoned"} 1`,
				poison + `{class="permanent"} 1`,
				lag + "_count 0",
			},
		},
		{
			name:    "error is failed: no poison write, no lag",
			md:      map[string]string{handlers.MetaAction: "updated", handlers.MetaIngress: "nats", handlers.MetaOccurredAt: ninetySecondsAgo},
			handler: failed, wantErr: true,
			want: []string{
				events + `{action="updated",ingress="nats",outcome="failed"} 1`,
				lag + "_count 0",
			},
			absent: []string{poison + "{", events + `{action="updated",ingress="nats",outcome="committed"}`},
		},
		{
			name:    "second delivery is a redelivery",
			md:      map[string]string{handlers.MetaAction: "created", handlers.MetaIngress: "nats", handlers.MetaDeliveryAttempt: "2"},
			handler: failed, wantErr: true,
			want: []string{redelivered + " 1", events + `{action="created",ingress="nats",outcome="failed"} 1`},
		},
		{
			name:    "committed with occurred_at: lag observed",
			md:      map[string]string{handlers.MetaAction: "created", handlers.MetaIngress: "nats", handlers.MetaOccurredAt: ninetySecondsAgo},
			handler: ok,
			want: []string{
				lag + "_count 1",
				lag + `_bucket{le="60"} 0`,
				lag + `_bucket{le="300"} 1`,
			},
		},
		{
			name:    "unreadable occurred_at: no lag",
			md:      map[string]string{handlers.MetaAction: "created", handlers.MetaIngress: "nats", handlers.MetaOccurredAt: "yesterday"},
			handler: ok,
			want: []string{
				events + `{action="created",ingress="nats",outcome="committed"} 1`,
				lag + "_count 0",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := metrics.New(actions)
			msg := message.NewMessage(watermill.NewUUID(), []byte(`{}`))
			for k, v := range tt.md {
				msg.Metadata.Set(k, v)
			}
			_, err := m.Middleware(tt.handler)(msg)

			if (err != nil) != tt.wantErr {
				t.Errorf("err = %v, want the handler's error: %v", err, tt.wantErr)
			}
			checkLines(t, scrape(t, m), tt.want, tt.absent)
		})
	}
}

func TestRetried(t *testing.T) {
	t.Parallel()
	tests := []struct{ retries int }{{0}, {1}, {3}}
	for _, tt := range tests {
		t.Run(strconv.Itoa(tt.retries), func(t *testing.T) {
			t.Parallel()
			m := metrics.New(actions)
			for range tt.retries {
				m.Retried()
			}
			checkLines(t, scrape(t, m), []string{"user_events_router_retries_total " + strconv.Itoa(tt.retries)}, nil)
		})
	}
}

func TestInstrumentIngress(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		codes []int // 0: the handler writes a body without a status
		want  []string
	}{
		{"one of each", []int{202, 400, 503}, []string{
			`user_events_router_ingress_requests_total{code="202"} 1`,
			`user_events_router_ingress_requests_total{code="400"} 1`,
			`user_events_router_ingress_requests_total{code="503"} 1`,
		}},
		{"repeats add up", []int{202, 202, 202, 503}, []string{
			`user_events_router_ingress_requests_total{code="202"} 3`,
			`user_events_router_ingress_requests_total{code="503"} 1`,
		}},
		{"implicit 200", []int{0}, []string{`user_events_router_ingress_requests_total{code="200"} 1`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := metrics.New(actions)
			h := m.InstrumentIngress(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if code, _ := strconv.Atoi(r.URL.Query().Get("code")); code != 0 {
					w.WriteHeader(code)
				}
				_, _ = io.WriteString(w, "ok")
			}))
			for _, code := range tt.codes {
				h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, "/events?code="+strconv.Itoa(code), nil))
			}
			checkLines(t, scrape(t, m), tt.want, nil)
		})
	}
}

func TestAddGauge(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&logs, nil))
	m := metrics.New(actions)
	var depth atomic.Int64
	depth.Store(3)
	var noDeadline atomic.Bool
	m.AddGauge("poison_queue_depth", "Entries in the poison queue.", func(ctx context.Context) (float64, error) {
		if _, ok := ctx.Deadline(); !ok {
			noDeadline.Store(true)
		}
		return float64(depth.Load()), nil
	}, logger)
	m.AddGauge("consumer_pending_messages", "Unreachable.", func(context.Context) (float64, error) {
		return 0, errors.New("nats: no responders")
	}, logger)

	tests := []struct {
		name  string
		depth int64
		want  string
	}{
		{"read at scrape time", 3, "user_events_router_poison_queue_depth 3"},
		{"read again at the next scrape", 7, "user_events_router_poison_queue_depth 7"},
		{"zero is a value", 0, "user_events_router_poison_queue_depth 0"},
	}
	for _, tt := range tests { // sequential: the scrapes share m
		t.Run(tt.name, func(t *testing.T) {
			depth.Store(tt.depth)
			checkLines(t, scrape(t, m), []string{
				tt.want,
				"user_events_router_retries_total 0", // the rest of the scrape is intact
			}, []string{"user_events_router_consumer_pending_messages"})
		})
	}
	if noDeadline.Load() {
		t.Error("gauge read without a deadline")
	}
	if !strings.Contains(logs.String(), "metric not collected") || !strings.Contains(logs.String(), "nats: no responders") {
		t.Errorf("failing gauge not logged: %s", logs.String())
	}
}

// TestAddGaugeLogsChangesOnly: a source failing on every scrape (a broker
// outage) is logged when it starts failing and when it is back, not on
// every scrape; a source with no value yet is skipped without a word.
func TestAddGaugeLogsChangesOnly(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&logs, nil))
	m := metrics.New(actions)
	var failing atomic.Bool
	failing.Store(true)
	m.AddGauge("consumer_pending_messages", "Pending.", func(context.Context) (float64, error) {
		if failing.Load() {
			return 0, errors.New("nats: timeout")
		}
		return 5, nil
	}, logger)
	m.AddGauge("consumer_info_age_seconds", "Not polled yet.", func(context.Context) (float64, error) {
		return 0, metrics.ErrNoValue
	}, logger)

	for range 3 {
		checkLines(t, scrape(t, m), nil, []string{"user_events_router_consumer_pending_messages", "user_events_router_consumer_info_age_seconds"})
	}
	if n := strings.Count(logs.String(), "metric not collected"); n != 1 {
		t.Errorf("3 failing scrapes logged %d warnings, want 1:\n%s", n, logs.String())
	}
	failing.Store(false)
	for range 2 {
		checkLines(t, scrape(t, m), []string{"user_events_router_consumer_pending_messages 5"}, nil)
	}
	if n := strings.Count(logs.String(), "metric collected again"); n != 1 {
		t.Errorf("recovery logged %d times, want 1:\n%s", n, logs.String())
	}
	if strings.Contains(logs.String(), "consumer_info_age_seconds") {
		t.Errorf("a gauge without a value yet was logged:\n%s", logs.String())
	}
}
