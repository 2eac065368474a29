package handlers

import (
	"strings"
	"testing"
)

// TestAdmitDecodesOnce: once admitted, a message is not decoded again — the
// dispatcher takes the admitted event, on every attempt — and its
// correlation id is Admit's, which the dispatcher only reads.
func TestAdmitDecodesOnce(t *testing.T) {
	t.Parallel()
	msg := incoming("user.events.created", strings.Replace(producerPayload, `"request_id":""`, `"request_id":"req-7"`, 1), nil)
	Admit(msg)
	if got := CorrelationID(msg.Metadata); got != "req-7" {
		t.Fatalf("correlation id after Admit = %q, want the request_id", got)
	}
	// Were the body decoded again, this would fail to decode.
	msg.Payload = []byte("not an event")
	Admit(msg)
	if got := CorrelationID(msg.Metadata); got != "req-7" {
		t.Errorf("correlation id after a second Admit = %q, want it unchanged", got)
	}
	rec := &recorder{}
	d, err := NewDispatcher(DefaultRegistry(), NewMemoryCommitter(rec), "profile_sync_commands")
	if err != nil {
		t.Fatal(err)
	}
	for attempt := range 2 {
		if err := d.Handle(msg); err != nil {
			t.Fatalf("attempt %d: %v", attempt+1, err)
		}
	}
	if len(rec.msgs) != 1 || CorrelationID(rec.msgs[0].Metadata) != "req-7" {
		t.Errorf("commands %d (want 1), metadata %v", len(rec.msgs), rec.msgs)
	}
}

// TestAdmitReadsRequestIDLeniently: a body that does not decode, or whose
// request_id the decoder drops, still has its request_id found for the
// correlation id; the decode error reaches the dispatcher.
func TestAdmitReadsRequestIDLeniently(t *testing.T) {
	t.Parallel()
	d, err := NewDispatcher(DefaultRegistry(), NewMemoryCommitter(&recorder{}), "profile_sync_commands")
	if err != nil {
		t.Fatal(err)
	}
	broken := incoming("user.events.created", `{"id":"not-a-uuid","action":"created","request_id":"req-broken"}`, nil)
	Admit(broken)
	if got := CorrelationID(broken.Metadata); got != "req-broken" {
		t.Errorf("correlation id of an undecodable body = %q, want its request_id", got)
	}
	if err := d.Handle(broken); !IsPermanent(err) || !strings.Contains(err.Error(), "decode") {
		t.Errorf("undecodable body: err = %v, want the permanent decode error", err)
	}
	twice := incoming("user.events.created", strings.Replace(producerPayload, `"request_id":""`, `"request_id":"first","request_id":"second"`, 1), nil)
	Admit(twice)
	if got := CorrelationID(twice.Metadata); got != "second" {
		t.Errorf("correlation id with a repeated request_id = %q, want the lenient reading's %q", got, "second")
	}
	if err := d.Handle(twice); err != nil {
		t.Errorf("repeated request_id (dropped): %v", err)
	}
}
