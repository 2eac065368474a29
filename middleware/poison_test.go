package middleware_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	wmmiddleware "github.com/ThreeDotsLabs/watermill/message/router/middleware"

	"github.com/social/user-events-router/handlers"
	"github.com/social/user-events-router/middleware"
	"github.com/social/user-events-router/schema"
	"github.com/social/user-events-router/store"
	"github.com/social/user-events-router/store/storetest"
)

// badPayload is an event no handler can use, byte for byte as it came:
// broken JSON with a byte that is not even UTF-8.
const badPayload = "{\"action\":\"created\",\"email\":\"not-an-email\xff\",\n  "

// testSubject is the subject every test delivery came on.
const testSubject = "user.events.created"

// delivery is a message as the NATS transport hands it over; attempt is its
// delivery_attempt metadata ("" for a transport that has none, like HTTP).
func delivery(payload, attempt string) *message.Message {
	msg := message.NewMessage(watermill.NewUUID(), []byte(payload))
	msg.Metadata.Set(handlers.MetaSubject, testSubject)
	msg.Metadata.Set(handlers.MetaStream, "USER_EVENTS")
	msg.Metadata.Set(handlers.MetaStreamSeq, "42")
	msg.Metadata.Set(handlers.MetaIngress, "nats")
	msg.Metadata.Set(handlers.MetaCorrelationID, "req-7")
	msg.Metadata.Set(handlers.MetaHandler, handlers.HandlerCreated)
	if attempt != "" {
		msg.Metadata.Set(handlers.MetaDeliveryAttempt, attempt)
	}
	return msg
}

// setupPoison returns a Poison writing to a fresh SQLite database, with a
// fixed clock.
func setupPoison(t *testing.T, maxDeliver int, now time.Time) (*middleware.Poison, *store.DB) {
	t.Helper()
	db := storetest.Open(t, store.SQLite)
	p, err := middleware.NewPoison(db, maxDeliver)
	if err != nil {
		t.Fatalf("NewPoison: %v", err)
	}
	p.Now = func() time.Time { return now }
	return p, db
}

func failWith(err error) message.HandlerFunc {
	return func(*message.Message) ([]*message.Message, error) { return nil, err }
}

// listPoison returns every entry in db's poison queue.
func listPoison(t *testing.T, db *store.DB) []store.PoisonEntry {
	t.Helper()
	return storetest.PoisonEntries(t, db)
}

var errTransient = errors.New("database is down")

func TestPoison(t *testing.T) {
	t.Parallel()
	// A zone other than UTC: entries are stored in UTC.
	now := time.Date(2026, 11, 28, 13, 28, 17, 123456789, time.FixedZone("CET", 3600))
	panicking := wmmiddleware.Recoverer(func(*message.Message) ([]*message.Message, error) {
		panic("boom")
	})
	tests := []struct {
		name       string
		maxDeliver int
		attempt    string
		handler    message.HandlerFunc
		// wantErr is what the middleware returns (nil: the message is acked).
		wantErr error
		// wantClass and wantReason describe the entry; "" means none is written.
		wantClass  string
		wantReason string
	}{
		{
			name: "success passes through", maxDeliver: 3, attempt: "3",
			handler: failWith(nil),
		},
		{
			name: "permanent error is poisoned at once", maxDeliver: -1, attempt: "1",
			handler:   failWith(fmt.Errorf("decode %s: %w", testSubject, handlers.Permanent(errors.New("email is not valid")))),
			wantClass: middleware.ClassPermanent, wantReason: "decode user.events.created: email is not valid",
		},
		{
			name: "invalid event is permanent, reason on one line", maxDeliver: 3, attempt: "1",
			handler:   failWith(fmt.Errorf("validate:\n%w", schema.ErrInvalidEvent)),
			wantClass: middleware.ClassPermanent, wantReason: "validate: invalid event",
		},
		{
			name: "transient error with unlimited deliveries passes through", maxDeliver: -1, attempt: "9",
			handler: failWith(errTransient), wantErr: errTransient,
		},
		{
			name: "transient error with MaxDeliver 0 (unlimited) passes through", maxDeliver: 0, attempt: "1",
			handler: failWith(errTransient), wantErr: errTransient,
		},
		{
			name: "transient error before the last delivery passes through", maxDeliver: 3, attempt: "2",
			handler: failWith(errTransient), wantErr: errTransient,
		},
		{
			name: "transient error on the last delivery is poisoned", maxDeliver: 3, attempt: "3",
			handler:   failWith(fmt.Errorf("insert command: %w", errTransient)),
			wantClass: middleware.ClassTransientExhausted, wantReason: "insert command: database is down",
		},
		{
			name: "transient error past the last delivery is poisoned", maxDeliver: 3, attempt: "4",
			handler:   failWith(errTransient),
			wantClass: middleware.ClassTransientExhausted, wantReason: "database is down",
		},
		{
			name: "transient error without a delivery count passes through", maxDeliver: 3, attempt: "",
			handler: failWith(errTransient), wantErr: errTransient,
		},
		{
			name: "panic is poisoned with its stack", maxDeliver: -1, attempt: "1",
			handler:   panicking,
			wantClass: middleware.ClassPanic, wantReason: "panic: boom",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, db := setupPoison(t, tt.maxDeliver, now)
			msg := delivery(badPayload, tt.attempt)

			out, err := p.Middleware(tt.handler)(msg)

			if out != nil {
				t.Errorf("produced messages = %v, want none", out)
			}
			if tt.wantErr == nil && err != nil {
				t.Fatalf("err = %v, want nil (the message is acked)", err)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v passed through (the message is redelivered)", err, tt.wantErr)
			}
			entries := listPoison(t, db)
			if tt.wantClass == "" {
				if len(entries) != 0 {
					t.Errorf("poison entries = %+v, want none", entries)
				}
				for _, k := range []string{handlers.MetaPoisonClass, handlers.MetaPoisonReason, handlers.MetaPoisonID} {
					if v := msg.Metadata.Get(k); v != "" {
						t.Errorf("metadata %s = %q, want unset", k, v)
					}
				}
				return
			}
			if len(entries) != 1 {
				t.Fatalf("poison entries = %+v, want one", entries)
			}
			got := entries[0]
			wantID := middleware.PoisonID(testSubject, []byte(badPayload))
			if msg.Metadata.Get(handlers.MetaPoisonClass) != tt.wantClass ||
				msg.Metadata.Get(handlers.MetaPoisonReason) != tt.wantReason ||
				msg.Metadata.Get(handlers.MetaPoisonID) != wantID {
				t.Errorf("metadata = %v, want poison_class %q, poison_reason %q, poison_id %q", msg.Metadata, tt.wantClass, tt.wantReason, wantID)
			}
			if tt.wantClass == middleware.ClassPanic {
				if !strings.Contains(got.Stack, "poison_test.go") {
					t.Errorf("stack = %q, want the panicking handler's stack", got.Stack)
				}
			} else if got.Stack != "" {
				t.Errorf("stack = %q, want none", got.Stack)
			}
			if !got.FirstFailure.Equal(now) || !got.LastFailure.Equal(now) {
				t.Errorf("first/last failure = %v/%v, want %v", got.FirstFailure, got.LastFailure, now)
			}
			deliveries, _ := strconv.ParseUint(tt.attempt, 10, 64) // "" is none
			want := store.PoisonEntry{
				ID:            wantID,
				Payload:       []byte(badPayload),
				Reason:        tt.wantReason,
				ReasonKind:    store.ReasonKind(tt.wantReason),
				Class:         tt.wantClass,
				Subject:       testSubject,
				Handler:       handlers.HandlerCreated,
				Ingress:       "nats",
				CorrelationID: "req-7",
				Stream:        "USER_EVENTS",
				StreamSeq:     42,
				DeliveryCount: deliveries,
				Failures:      1,
			}
			got.FirstFailure, got.LastFailure, got.Stack = time.Time{}, time.Time{}, ""
			if !reflect.DeepEqual(got, want) {
				t.Errorf("entry =\n%+v\nwant\n%+v", got, want)
			}
		})
	}
}

// TestPoisonRepeats checks that entries are keyed by content: the same bad
// message again updates its entry, another message gets its own.
func TestPoisonRepeats(t *testing.T) {
	t.Parallel()
	first := time.Date(2026, 11, 28, 13, 0, 0, 0, time.UTC)
	second := first.Add(90 * time.Minute)
	tests := []struct {
		name          string
		secondPayload string
		secondSubject string
		wantEntries   int
	}{
		{"same message twice", badPayload, testSubject, 1},
		{"other bytes", badPayload + " ", testSubject, 2},
		{"same bytes on another subject", badPayload, "user.events.updated", 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, db := setupPoison(t, -1, first)
			bad := failWith(handlers.Permanent(errors.New("email is not valid")))

			if _, err := p.Middleware(bad)(delivery(badPayload, "1")); err != nil {
				t.Fatalf("first delivery: %v", err)
			}
			p.Now = func() time.Time { return second }
			again := delivery(tt.secondPayload, "2")
			again.Metadata.Set(handlers.MetaSubject, tt.secondSubject)
			again.Metadata.Set(handlers.MetaStreamSeq, "43")
			if _, err := p.Middleware(bad)(again); err != nil {
				t.Fatalf("second delivery: %v", err)
			}

			entries := listPoison(t, db)
			if len(entries) != tt.wantEntries {
				t.Fatalf("entries = %d, want %d: %+v", len(entries), tt.wantEntries, entries)
			}
			if tt.wantEntries != 1 {
				return
			}
			got := entries[0]
			if got.ID != again.Metadata.Get(handlers.MetaPoisonID) {
				t.Errorf("entry id %s, second delivery's poison_id %s", got.ID, again.Metadata.Get(handlers.MetaPoisonID))
			}
			if got.Failures != 2 || !got.FirstFailure.Equal(first) || !got.LastFailure.Equal(second) {
				t.Errorf("failures %d, first %v, last %v; want 2, %v, %v", got.Failures, got.FirstFailure, got.LastFailure, first, second)
			}
			if got.StreamSeq != 43 || got.DeliveryCount != 2 {
				t.Errorf("stream_seq %d, delivery_count %d; want the latest delivery's 43, 2", got.StreamSeq, got.DeliveryCount)
			}
			byID, err := db.GetPoison(t.Context(), got.ID)
			if err != nil || byID.Failures != 2 {
				t.Errorf("GetPoison(%s) = %+v, %v; want the entry with 2 failures", got.ID, byID, err)
			}
		})
	}
}

// TestPoisonReplayFailure: a replay that fails again updates the entry's
// reason and counts the replay, and keeps where the event first came from.
func TestPoisonReplayFailure(t *testing.T) {
	t.Parallel()
	first := time.Date(2026, 11, 28, 13, 0, 0, 0, time.UTC)
	p, db := setupPoison(t, -1, first)
	bad := failWith(handlers.Permanent(errors.New("email is not valid")))
	if _, err := p.Middleware(bad)(delivery(badPayload, "2")); err != nil {
		t.Fatal(err)
	}
	replayAt := first.Add(time.Hour)
	p.Now = func() time.Time { return replayAt }
	replay := message.NewMessage(middleware.PoisonID(testSubject, []byte(badPayload)), []byte(badPayload))
	replay.Metadata.Set(handlers.MetaSubject, testSubject)
	replay.Metadata.Set(handlers.MetaIngress, schema.IngressReplay)
	if _, err := p.Middleware(bad)(replay); err != nil {
		t.Fatal(err)
	}
	entries := listPoison(t, db)
	if len(entries) != 1 {
		t.Fatalf("entries = %+v, want one", entries)
	}
	e := entries[0]
	if e.Ingress != "nats" || e.StreamSeq != 42 || e.DeliveryCount != 2 || e.Stream != "USER_EVENTS" || e.CorrelationID != "req-7" {
		t.Errorf("the replay lost where the entry came from: %+v", e)
	}
	if e.Replays != 1 || !e.LastReplayAt.Equal(replayAt) || e.Failures != 2 || !e.FirstFailure.Equal(first) || !e.LastFailure.Equal(replayAt) {
		t.Errorf("replay facts: replays %d at %v, failures %d, first %v, last %v", e.Replays, e.LastReplayAt, e.Failures, e.FirstFailure, e.LastFailure)
	}
}

// TestPoisonSinkFailure checks that nothing is acked without a committed
// entry: when the write fails, the handler's failure is returned.
func TestPoisonSinkFailure(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		maxDeliver int
		attempt    string
		handler    message.HandlerFunc
		wantInErr  string
	}{
		{"permanent", -1, "1", failWith(handlers.Permanent(errors.New("email is not valid"))), "email is not valid"},
		{"transient on the last delivery", 3, "3", failWith(errTransient), errTransient.Error()},
		{"panic", -1, "1", wmmiddleware.Recoverer(func(*message.Message) ([]*message.Message, error) { panic("boom") }), "boom"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, db := setupPoison(t, tt.maxDeliver, time.Now())
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			msg := delivery(badPayload, tt.attempt)

			_, err := p.Middleware(tt.handler)(msg)

			if err == nil {
				t.Fatal("err = nil: the message would be acked without a poison entry")
			}
			if !strings.Contains(err.Error(), tt.wantInErr) {
				t.Errorf("err = %q, want it to carry the handler's failure %q", err, tt.wantInErr)
			}
			if v := msg.Metadata.Get(handlers.MetaPoisonClass); v != "" {
				t.Errorf("poison_class = %q, want unset: nothing was written", v)
			}
			// The id of the entry that could not be written: the log line
			// of the failure names it.
			if id := msg.Metadata.Get(handlers.MetaPoisonID); id != middleware.PoisonID(testSubject, []byte(badPayload)) || !strings.Contains(err.Error(), id) {
				t.Errorf("poison_id = %q, error %q; want the entry's id on both", id, err)
			}
			if tt.name == "permanent" && !handlers.IsPermanent(err) {
				t.Errorf("err = %v: the original permanent failure must stay matchable with errors.Is", err)
			}
		})
	}
}

// TestPoisonWriteSurvivesCancelledDelivery: a shutdown that cancels the
// delivery on its last attempt must not strand it: the entry is written.
func TestPoisonWriteSurvivesCancelledDelivery(t *testing.T) {
	t.Parallel()
	p, db := setupPoison(t, 3, time.Now())
	msg := delivery(badPayload, "3")
	ctx, cancel := context.WithCancel(context.Background())
	msg.SetContext(ctx)
	_, err := p.Middleware(func(m *message.Message) ([]*message.Message, error) {
		cancel()
		return nil, m.Context().Err()
	})(msg)
	if err != nil {
		t.Fatalf("err = %v, want the message poisoned", err)
	}
	if n, err := db.CountPoison(context.Background()); err != nil || n != 1 {
		t.Errorf("poison entries = %d (%v), want 1", n, err)
	}
}

func TestNewPoisonValidates(t *testing.T) {
	t.Parallel()
	if _, err := middleware.NewPoison(nil, 3); err == nil {
		t.Error("NewPoison(nil sink) succeeded")
	}
}
