package handlers

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/social/user-events-router/schema"
)

const producerPayload = `{"id":"78af4bc4-afce-4676-b373-5b802a2dfd2e","email":"alice@example.com","username":"alice01","action":"created","request_id":"","timestamp":"2026-11-28T13:28:17Z","service_name":"gofiber-auth"}`

// recorder is a message.Publisher that keeps what it was given.
type recorder struct {
	mu   sync.Mutex
	msgs []*message.Message
	err  error
}

func (r *recorder) Publish(topic string, msgs ...*message.Message) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return r.err
	}
	r.msgs = append(r.msgs, msgs...)
	return nil
}
func (r *recorder) Close() error { return nil }

func incoming(subject, body string, md map[string]string) *message.Message {
	m := message.NewMessage("m1", []byte(body))
	m.Metadata.Set(MetaSubject, subject)
	for k, v := range md {
		m.Metadata.Set(k, v)
	}
	return m
}

func build(t *testing.T, msg *message.Message) schema.Command {
	t.Helper()
	d, err := NewDispatcher(DefaultRegistry(), NewMemoryCommitter(&recorder{}), "profile_sync_commands")
	if err != nil {
		t.Fatal(err)
	}
	cmd, _, err := d.Preview(msg)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	return cmd
}

func TestCommandPerAction(t *testing.T) {
	t.Parallel()
	tests := []struct {
		action  string
		want    schema.CommandType
		handler string
	}{
		{"created", schema.CommandCreateProfile, HandlerCreated},
		{"updated", schema.CommandSyncIdentity, HandlerUpdated},
		{"deleted", schema.CommandDeleteProfile, HandlerDeleted},
	}
	for _, tt := range tests {
		t.Run(tt.action, func(t *testing.T) {
			t.Parallel()
			body := strings.Replace(producerPayload, `"created"`, `"`+tt.action+`"`, 1)
			msg := incoming("user.events."+tt.action, body, map[string]string{MetaStreamSeq: "7", MetaDeliveryAttempt: "2"})
			cmd := build(t, msg)
			if cmd.Type != tt.want || cmd.SchemaVersion != 1 || cmd.UserID != "78af4bc4-afce-4676-b373-5b802a2dfd2e" ||
				cmd.Email != "alice@example.com" || cmd.Username != "alice01" || cmd.OccurredAt.Format("2006-01-02T15:04:05Z07:00") != "2026-11-28T13:28:17Z" {
				t.Errorf("command = %+v", cmd)
			}
			if cmd.Source != (schema.Source{Service: "gofiber-auth", Subject: "user.events." + tt.action, Ingress: "nats", StreamSequence: 7, DeliveryAttempt: 2}) {
				t.Errorf("source = %+v", cmd.Source)
			}
			if got := msg.Metadata.Get(MetaHandler); got != tt.handler {
				t.Errorf("handler metadata = %q, want %q", got, tt.handler)
			}
			if (cmd.ProfileDefaults != nil) != (tt.action == "created") {
				t.Errorf("profile defaults = %+v", cmd.ProfileDefaults)
			}
		})
	}
}

func TestCreatedProfileDefaults(t *testing.T) {
	t.Parallel()
	cmd := build(t, incoming("user.events.created", producerPayload, nil))
	if *cmd.ProfileDefaults != (schema.ProfileDefaults{DisplayName: "alice01"}) {
		t.Errorf("defaults for a minimal event = %+v, want display_name = username and empty avatar, bio", *cmd.ProfileDefaults)
	}
	v1 := `{"id":"78af4bc4-afce-4676-b373-5b802a2dfd2e","email":"alice@example.com","username":"alice01","action":"created","request_id":"r-1","timestamp":"2026-11-28T13:28:17Z","service_name":"gofiber-auth","displayName":"Alice A.","avatar":"https://cdn.example.com/a.png","role":"admin","isActive":true,"permissions":["all"]}`
	cmd = build(t, incoming("user.events.created", v1, nil))
	if *cmd.ProfileDefaults != (schema.ProfileDefaults{DisplayName: "Alice A.", Avatar: "https://cdn.example.com/a.png"}) {
		t.Errorf("defaults for a V1 event = %+v", *cmd.ProfileDefaults)
	}
	b, _ := json.Marshal(cmd)
	for _, leaked := range []string{"role", "isActive", "permissions", "admin"} {
		if strings.Contains(string(b), leaked) {
			t.Errorf("command carries the Auth Service's %q: %s", leaked, b)
		}
	}
}

// One dispatcher sees every arrival of a user's events, as the router does:
// copies of one event yield one command, distinct events one each.
func TestOneCommandPerEvent(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	d, err := NewDispatcher(DefaultRegistry(), NewMemoryCommitter(rec), "profile_sync_commands")
	if err != nil {
		t.Fatal(err)
	}
	handle := func(subject, body string, md map[string]string) {
		t.Helper()
		if err := d.Handle(incoming(subject, body, md)); err != nil {
			t.Fatalf("Handle: %v", err)
		}
	}
	retry := strings.Replace(producerPayload, "13:28:17Z", "13:28:23Z", 1)
	handle("user.events.created", producerPayload, map[string]string{MetaStreamSeq: "1"})
	handle("user.events.created", producerPayload, map[string]string{MetaStreamSeq: "1", MetaDeliveryAttempt: "3"})              // redelivery
	handle("", producerPayload, map[string]string{MetaIngress: "http", MetaCorrelationID: "from-header"})                        // HTTP copy
	handle("", retry, map[string]string{MetaIngress: "http"})                                                                    // the producer's retry
	handle("user.events.created", strings.Replace(producerPayload, `"request_id":""`, `"request_id":"req-9"`, 1), nil)           // another try
	handle("user.events.created", strings.Replace(producerPayload, `2026-11-28T13:28:17Z`, `2026-11-28T15:28:17+02:00`, 1), nil) // another zone
	if len(rec.msgs) != 1 {
		t.Fatalf("one registration gave %d commands, want 1", len(rec.msgs))
	}
	// A → B → A within one second: three real changes.
	updated := func(email string, seq string) {
		handle("user.events.updated", strings.NewReplacer(`"created"`, `"updated"`, "13:28:17Z", "13:29:00Z", "alice@example.com", email).Replace(producerPayload),
			map[string]string{MetaStreamSeq: seq})
	}
	updated("a@example.com", "10")
	updated("b@example.com", "11")
	updated("a@example.com", "12")
	updated("a@example.com", "12") // a redelivery of the third
	if len(rec.msgs) != 4 {
		t.Fatalf("A → B → A gave %d commands in all, want 1 + 3", len(rec.msgs))
	}
	ids := map[string]bool{}
	for i, m := range rec.msgs {
		var cmd schema.Command
		if err := json.Unmarshal(m.Payload, &cmd); err != nil {
			t.Fatal(err)
		}
		if cmd.UserSequence != uint64(i+1) || cmd.Generation != 1 || ids[cmd.CommandID] || m.UUID != cmd.CommandID {
			t.Errorf("command %d: sequence %d, generation %d, id %s (seen before: %v)", i, cmd.UserSequence, cmd.Generation, cmd.CommandID, ids[cmd.CommandID])
		}
		ids[cmd.CommandID] = true
	}
}

func TestCorrelationID(t *testing.T) {
	t.Parallel()
	withID := build(t, incoming("user.events.created", strings.Replace(producerPayload, `"request_id":""`, `"request_id":"req-42"`, 1), nil))
	if withID.CorrelationID != "req-42" || withID.Source.RequestID != "req-42" {
		t.Errorf("request_id not used: %q / %q", withID.CorrelationID, withID.Source.RequestID)
	}
	minted := build(t, incoming("user.events.created", producerPayload, nil))
	mintedAgain := build(t, incoming("user.events.created", producerPayload, map[string]string{MetaDeliveryAttempt: "2"}))
	if minted.CorrelationID == "" || minted.CorrelationID != mintedAgain.CorrelationID {
		t.Errorf("minted correlation ids %q and %q: want one stable non-empty id", minted.CorrelationID, mintedAgain.CorrelationID)
	}
	if minted.Source.RequestID != "" {
		t.Errorf("source.request_id = %q, want the original empty string", minted.Source.RequestID)
	}
	fromHeader := build(t, incoming("", producerPayload, map[string]string{MetaCorrelationID: "hdr-1"}))
	if fromHeader.CorrelationID != "hdr-1" {
		t.Errorf("correlation from metadata = %q", fromHeader.CorrelationID)
	}
}

func TestHandleCommitsOrFails(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	d, err := NewDispatcher(DefaultRegistry(), NewMemoryCommitter(rec), "profile_sync_commands")
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Handle(incoming("user.events.created", producerPayload, nil)); err != nil {
		t.Fatal(err)
	}
	if len(rec.msgs) != 1 {
		t.Fatalf("published %d messages, want 1", len(rec.msgs))
	}
	out := rec.msgs[0]
	var cmd schema.Command
	if err := json.Unmarshal(out.Payload, &cmd); err != nil {
		t.Fatal(err)
	}
	if out.UUID != cmd.CommandID || out.Metadata.Get(MetaCorrelationID) != cmd.CorrelationID || cmd.CorrelationID == "" {
		t.Errorf("message uuid %s / metadata %v, command %+v", out.UUID, out.Metadata, cmd)
	}

	err = d.Handle(incoming("user.events.deleted", producerPayload, nil))
	if !IsPermanent(err) || !strings.Contains(err.Error(), "does not match subject") {
		t.Errorf("subject/action mismatch: err = %v, want a permanent error naming it", err)
	}
	rec.err = errors.New("database is down")
	other := strings.Replace(producerPayload, "78af4bc4-afce-4676-b373-5b802a2dfd2e", "0a6b3c1e-2f4d-4e5a-8b9c-7d6e5f4a3b2c", 1)
	err = d.Handle(incoming("user.events.created", other, nil))
	if err == nil || IsPermanent(err) {
		t.Errorf("commit failure: err = %v, want a transient error", err)
	}
}

func TestNewDispatcherValidates(t *testing.T) {
	t.Parallel()
	if _, err := NewDispatcher(nil, NewMemoryCommitter(&recorder{}), "t"); err == nil {
		t.Error("empty registry accepted")
	}
	if _, err := NewDispatcher(Registry{"created": Updated}, NewMemoryCommitter(&recorder{}), "t"); err == nil {
		t.Error("mismatched registration accepted")
	}
	if _, err := NewDispatcher(DefaultRegistry(), nil, "t"); err == nil {
		t.Error("nil committer accepted")
	}
}

// A registration newer than everything carried is held back only while the
// broker says an earlier message is unacked, and never on its last allowed
// delivery.
func TestDispatcherHoldsOnlyWhileAnEarlierMessageIsUnacked(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	base, err := NewDispatcher(DefaultRegistry(), NewMemoryCommitter(rec), "profile_sync_commands")
	if err != nil {
		t.Fatal(err)
	}
	unacked := true
	d := base.WithHold(HoldOptions{EarlierUnacked: func(context.Context, uint64) bool { return unacked }, MaxHolds: 3, MaxDeliver: 3})
	if err := d.Handle(incoming("user.events.created", producerPayload, map[string]string{MetaStreamSeq: "1", MetaDeliveryAttempt: "1"})); err != nil {
		t.Fatal(err)
	}
	retry := strings.Replace(producerPayload, "13:28:17Z", "13:28:23Z", 1) // re-stamped, newer than all carried
	msg := func(attempt string) *message.Message {
		return incoming("user.events.created", retry, map[string]string{MetaStreamSeq: "5", MetaDeliveryAttempt: attempt})
	}
	if err := d.Handle(msg("1")); !IsHold(err) || IsPermanent(err) {
		t.Fatalf("with an earlier message unacked: err = %v, want a hold", err)
	}
	if err := d.Handle(msg("3")); err != nil {
		t.Fatalf("on the last allowed delivery: err = %v, want it decided", err)
	}
	unacked = false
	m := msg("2")
	if err := d.Handle(m); err != nil || m.Metadata.Get(MetaVerdict) != VerdictRegistered {
		t.Fatalf("with nothing earlier unacked: err = %v, verdict %q; want another try of the registration", err, m.Metadata.Get(MetaVerdict))
	}
	if len(rec.msgs) != 1 {
		t.Errorf("%d commands, want the registration's one", len(rec.msgs))
	}
}
