package handlers

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/social/user-events-router/schema"
)

func canonicalByMarshal(ev schema.UserEvent) []byte {
	b, _ := json.Marshal([]string{"v1", ev.Action, ev.ID, ev.Email, ev.Username,
		ev.Timestamp.UTC().Format(time.RFC3339Nano), ev.DisplayName, ev.Avatar})
	return b
}

// The canonical bytes name every stored command: the fast path must give
// exactly what json.Marshal of the list gives.
func TestCanonicalIsJSONOfTheList(t *testing.T) {
	ts := time.Date(2026, 11, 28, 13, 28, 17, 0, time.UTC)
	for _, ev := range []schema.UserEvent{
		{Action: "created", ID: "78af4bc4-afce-4676-b373-5b802a2dfd2e", Email: "alice@example.com", Username: "alice01", Timestamp: ts},
		{Action: "updated", ID: "u", Email: "a+b@example.com", Username: "Zoë", Timestamp: ts, DisplayName: "<b>&\"\\", Avatar: "\u2028\x01\x7f"},
		{Action: "deleted", Timestamp: ts.Add(500 * time.Millisecond).In(time.FixedZone("x", 3600))},
	} {
		if got, want := canonical(ev), canonicalByMarshal(ev); !bytes.Equal(got, want) {
			t.Errorf("canonical = %s, json.Marshal = %s", got, want)
		}
	}
}

// A command's id names it in every table that holds it: the rule must never
// change silently.
func TestCommandIDIsStable(t *testing.T) {
	t.Parallel()
	if id := CommandID("78af4bc4-afce-4676-b373-5b802a2dfd2e", 1); id != "63a401bf-43db-5f3d-85c5-3dfebb7abef7" {
		t.Errorf("id of the first command of the example user = %s", id)
	}
	if CommandID("78af4bc4-afce-4676-b373-5b802a2dfd2e", 2) == CommandID("78af4bc4-afce-4676-b373-5b802a2dfd2e", 1) {
		t.Error("two sequence numbers, one id")
	}
}

func FuzzCanonicalIsJSONOfTheList(f *testing.F) {
	f.Add("created", "id", "a@example.com", "alice", "", "", int64(0))
	f.Add("updated", "<&>", "\"\\", "\x00", "\u2028", "\xff", int64(1e9+5))
	f.Fuzz(func(t *testing.T, action, id, email, username, display, avatar string, nanos int64) {
		ev := schema.UserEvent{Action: action, ID: id, Email: email, Username: username,
			DisplayName: display, Avatar: avatar, Timestamp: time.Unix(0, nanos)}
		if got, want := canonical(ev), canonicalByMarshal(ev); !bytes.Equal(got, want) {
			t.Fatalf("canonical = %q, json.Marshal = %q", got, want)
		}
	})
}

// NameUUID names commands, messages and correlation ids: it must be
// uuid.NewSHA1 exactly, on either side of its stack buffer's size.
func TestNameUUIDIsNewSHA1(t *testing.T) {
	t.Parallel()
	for _, n := range []int{0, 1, 63, 239, 240, 241, 1000, 70000} {
		name := bytes.Repeat([]byte{'x', 0xff, 0}, n/3+1)[:n]
		for _, ns := range []uuid.UUID{commandNamespace, correlationNamespace, uuid.NameSpaceOID} {
			if got, want := NameUUID(ns, name), uuid.NewSHA1(ns, name).String(); got != want {
				t.Errorf("%d bytes in %s: NameUUID = %s, uuid.NewSHA1 = %s", n, ns, got, want)
			}
		}
	}
}

func FuzzNameUUIDIsNewSHA1(f *testing.F) {
	f.Add([]byte("v2/78af4bc4-afce-4676-b373-5b802a2dfd2e/1"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, name []byte) {
		if got, want := NameUUID(commandNamespace, name), uuid.NewSHA1(commandNamespace, name).String(); got != want {
			t.Fatalf("NameUUID(%q) = %s, uuid.NewSHA1 = %s", name, got, want)
		}
	})
}
