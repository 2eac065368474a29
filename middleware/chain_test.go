package middleware_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/social/user-events-router/handlers"
	"github.com/social/user-events-router/middleware"
	"github.com/social/user-events-router/store"
)

// retryMax is the chain's in-process retries in these tests.
const retryMax = 2

// observation is what the Observe hook saw of one delivery.
type observation struct {
	correlationID string // on the way in
	err           error
	poisonClass   string
}

// chainBundle is a chain with a real poison queue and everything it reports.
type chainBundle struct {
	chain    []message.HandlerMiddleware
	db       *store.DB
	logs     *bytes.Buffer
	retries  atomic.Int32
	observed []observation
}

func setupChain(t *testing.T, maxDeliver int, handlerTimeout time.Duration) *chainBundle {
	t.Helper()
	b := &chainBundle{}
	var logger *slog.Logger
	logger, b.logs = jsonLogger()
	var poison *middleware.Poison
	poison, b.db = setupPoison(t, maxDeliver, time.Now())
	chain, err := middleware.Chain(middleware.ChainOptions{
		Logger:               logger,
		Poison:               poison,
		RetryMax:             retryMax,
		RetryInitialInterval: time.Millisecond,
		RetryMaxInterval:     2 * time.Millisecond,
		HandlerTimeout:       handlerTimeout,
		Observe: func(h message.HandlerFunc) message.HandlerFunc {
			return func(msg *message.Message) ([]*message.Message, error) {
				corr := msg.Metadata.Get(handlers.MetaCorrelationID)
				out, err := h(msg)
				b.observed = append(b.observed, observation{corr, err, msg.Metadata.Get(handlers.MetaPoisonClass)})
				return out, err
			}
		},
		OnRetryFunc: func() { b.retries.Add(1) },
	})
	if err != nil {
		t.Fatalf("Chain: %v", err)
	}
	b.chain = chain
	return b
}

func TestChain(t *testing.T) {
	t.Parallel()
	errBad := handlers.Permanent(errors.New("email is not valid"))
	tests := []struct {
		name       string
		maxDeliver int
		attempt    string
		// fail is the outcome of attempt n (1-based); it may panic.
		fail        func(n int) error
		wantCalls   int
		wantRetries int32
		wantErr     error // nil: acked
		wantClass   string
	}{
		{
			name: "success", maxDeliver: -1, attempt: "1",
			fail:      func(int) error { return nil },
			wantCalls: 1,
		},
		{
			name: "permanent error: one attempt, poisoned", maxDeliver: -1, attempt: "1",
			fail:      func(int) error { return errBad },
			wantCalls: 1, wantClass: middleware.ClassPermanent,
		},
		{
			name: "transient error: retried, then handed back", maxDeliver: -1, attempt: "1",
			fail:      func(int) error { return errTransient },
			wantCalls: retryMax + 1, wantRetries: retryMax, wantErr: errTransient,
		},
		{
			name: "transient error, then success", maxDeliver: -1, attempt: "1",
			fail: func(n int) error {
				if n == 1 {
					return errTransient
				}
				return nil
			},
			wantCalls: 2, wantRetries: 1,
		},
		{
			name: "transient error on the last delivery: retried, then poisoned", maxDeliver: 3, attempt: "3",
			fail:      func(int) error { return errTransient },
			wantCalls: retryMax + 1, wantRetries: retryMax, wantClass: middleware.ClassTransientExhausted,
		},
		{
			name: "panic: retried, then poisoned", maxDeliver: -1, attempt: "1",
			fail:      func(int) error { panic("boom") },
			wantCalls: retryMax + 1, wantRetries: retryMax, wantClass: middleware.ClassPanic,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setupChain(t, tt.maxDeliver, 5*time.Second)
			calls := 0
			h := middleware.Wrap(func(*message.Message) ([]*message.Message, error) {
				calls++
				return nil, tt.fail(calls)
			}, b.chain)
			msg := delivery(badPayload, tt.attempt)
			delete(msg.Metadata, handlers.MetaCorrelationID) // Correlation mints one

			_, err := h(msg)

			if tt.wantErr == nil && err != nil {
				t.Fatalf("err = %v, want nil (acked)", err)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if calls != tt.wantCalls {
				t.Errorf("handler called %d times, want %d", calls, tt.wantCalls)
			}
			if got := b.retries.Load(); got != tt.wantRetries {
				t.Errorf("OnRetryFunc called %d times, want %d", got, tt.wantRetries)
			}
			if got := msg.Metadata.Get(handlers.MetaPoisonClass); got != tt.wantClass {
				t.Errorf("poison_class = %q, want %q", got, tt.wantClass)
			}
			entries := listPoison(t, b.db)
			switch {
			case tt.wantClass == "" && len(entries) != 0:
				t.Errorf("poison entries = %+v, want none", entries)
			case tt.wantClass != "" && (len(entries) != 1 || entries[0].Class != tt.wantClass):
				t.Errorf("poison entries = %+v, want one of class %s", entries, tt.wantClass)
			case tt.wantClass == middleware.ClassPanic && entries[0].Stack == "":
				t.Errorf("panic entry has no stack")
			}

			// Observe runs inside Correlation and outside Poison: it sees
			// the correlation id and the final verdict, once.
			corr := msg.Metadata.Get(handlers.MetaCorrelationID)
			want := []observation{{corr, err, tt.wantClass}}
			if corr == "" || !reflect.DeepEqual(b.observed, want) {
				t.Errorf("observed %+v, want %+v", b.observed, want)
			}
			// Correlation is outermost: one outcome line per delivery, and
			// it names the poison entry on every path that has one.
			lines := logLines(t, b.logs, logHandled, logFailed, logPoisoned)
			if len(lines) != 1 {
				t.Fatalf("outcome log lines = %v, want one", lines)
			}
			if tt.wantClass != "" && lines[0]["poison_id"] != entries[0].ID {
				t.Errorf("the poison line's poison_id = %v, want %s: %v", lines[0]["poison_id"], entries[0].ID, lines[0])
			}
			if _, ok := lines[0]["poison_id"]; tt.wantClass == "" && ok {
				t.Errorf("a line without a poison entry names one: %v", lines[0])
			}
		})
	}
}

// TestChainDeadlinePerAttempt checks that Timeout sits inside Retry (each
// attempt gets a fresh deadline) and that the delivery's own context is back
// for the poison write and for the caller.
func TestChainDeadlinePerAttempt(t *testing.T) {
	t.Parallel()
	const timeout = 30 * time.Millisecond
	tests := []struct {
		name       string
		maxDeliver int
		attempt    string
		wantErr    error
		wantClass  string
	}{
		{"not the last delivery: handed back", 3, "2", context.DeadlineExceeded, ""},
		{"last delivery: poisoned", 3, "3", nil, middleware.ClassTransientExhausted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setupChain(t, tt.maxDeliver, timeout)
			type attempt struct {
				deadline   time.Time
				errAtStart error
				errAtEnd   error
			}
			var attempts []attempt
			h := middleware.Wrap(func(msg *message.Message) ([]*message.Message, error) {
				ctx := msg.Context()
				a := attempt{errAtStart: ctx.Err()}
				a.deadline, _ = ctx.Deadline()
				<-ctx.Done()
				a.errAtEnd = ctx.Err()
				attempts = append(attempts, a)
				return nil, fmt.Errorf("insert command: %w", ctx.Err())
			}, b.chain)
			type key struct{}
			deliveryCtx := context.WithValue(t.Context(), key{}, "delivery")
			msg := delivery(badPayload, tt.attempt)
			msg.SetContext(deliveryCtx)

			_, err := h(msg)

			if tt.wantErr == nil && err != nil {
				t.Fatalf("err = %v, want nil (poisoned and acked)", err)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if len(attempts) != retryMax+1 {
				t.Fatalf("attempts = %d, want %d", len(attempts), retryMax+1)
			}
			for i, a := range attempts {
				if a.deadline.IsZero() || a.errAtStart != nil || !errors.Is(a.errAtEnd, context.DeadlineExceeded) {
					t.Errorf("attempt %d: deadline %v, err at start %v, at end %v; want a live deadline that expires", i+1, a.deadline, a.errAtStart, a.errAtEnd)
				}
				if i > 0 && !a.deadline.After(attempts[i-1].deadline) {
					t.Errorf("attempt %d's deadline %v is not after attempt %d's %v", i+1, a.deadline, i, attempts[i-1].deadline)
				}
			}
			if msg.Context().Err() != nil || msg.Context().Value(key{}) != "delivery" {
				t.Errorf("message context after = %v (err %v), want the delivery's", msg.Context(), msg.Context().Err())
			}
			entries := listPoison(t, b.db)
			if tt.wantClass == "" {
				if len(entries) != 0 {
					t.Errorf("poison entries = %+v, want none", entries)
				}
				return
			}
			if len(entries) != 1 || entries[0].Class != tt.wantClass || entries[0].Reason != "insert command: context deadline exceeded" {
				t.Errorf("poison entries = %+v, want one %s entry for the deadline", entries, tt.wantClass)
			}
		})
	}
}

func TestChainValidates(t *testing.T) {
	t.Parallel()
	logger, _ := jsonLogger()
	poison, _ := setupPoison(t, -1, time.Now())
	valid := middleware.ChainOptions{Logger: logger, Poison: poison, RetryInitialInterval: time.Millisecond, HandlerTimeout: time.Second}
	tests := []struct {
		name    string
		edit    func(*middleware.ChainOptions)
		wantErr bool
	}{
		{"valid", func(*middleware.ChainOptions) {}, false},
		{"no logger", func(o *middleware.ChainOptions) { o.Logger = nil }, true},
		{"no poison", func(o *middleware.ChainOptions) { o.Poison = nil }, true},
		{"no handler timeout", func(o *middleware.ChainOptions) { o.HandlerTimeout = 0 }, true},
		{"negative handler timeout", func(o *middleware.ChainOptions) { o.HandlerTimeout = -time.Second }, true},
		{"no retry interval", func(o *middleware.ChainOptions) { o.RetryInitialInterval = 0 }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			o := valid
			tt.edit(&o)
			chain, err := middleware.Chain(o)
			if (err != nil) != tt.wantErr {
				t.Fatalf("Chain() err = %v, want error: %v", err, tt.wantErr)
			}
			if err == nil && len(chain) == 0 {
				t.Error("Chain() returned no middleware")
			}
		})
	}
}

func TestWrapOrder(t *testing.T) {
	t.Parallel()
	tests := []struct {
		names []string
		want  []string
	}{
		{nil, []string{"handler"}},
		{[]string{"a"}, []string{"a in", "handler", "a out"}},
		{[]string{"a", "b", "c"}, []string{"a in", "b in", "c in", "handler", "c out", "b out", "a out"}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.names), func(t *testing.T) {
			t.Parallel()
			var calls []string
			var mws []message.HandlerMiddleware
			for _, name := range tt.names {
				mws = append(mws, func(h message.HandlerFunc) message.HandlerFunc {
					return func(msg *message.Message) ([]*message.Message, error) {
						calls = append(calls, name+" in")
						defer func() { calls = append(calls, name+" out") }()
						return h(msg)
					}
				})
			}
			h := middleware.Wrap(func(*message.Message) ([]*message.Message, error) {
				calls = append(calls, "handler")
				return nil, nil
			}, mws)

			if _, err := h(message.NewMessage("1", nil)); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(calls, tt.want) {
				t.Errorf("calls = %q, want %q", calls, tt.want)
			}
		})
	}
}
