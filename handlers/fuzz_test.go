package handlers

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/social/user-events-router/schema"
)

// FuzzDecodeToCommand drives outside bytes through the whole path a message
// takes — decode, ledger, build, encode — and holds it to DESIGN §3: either
// a command whose JSON parses again and is safe for PostgreSQL's jsonb (no
// \u0000), or a permanent error whose reason is one printable line; never a
// panic.
func FuzzDecodeToCommand(f *testing.F) {
	f.Add("user.events.created", producerPayload, "nats")
	f.Add("", producerPayload, "http")
	f.Add("user.events.updated", strings.Replace(producerPayload, `"created"`, `"updated"`, 1), "replay")
	f.Add("user.events.created", `{"id":"78af4bc4-afce-4676-b373-5b802a2dfd2e","email":"","username":"สมชาย_1a2b3c4d","action":"created","request_id":"\u001b[31m","timestamp":"2026-11-28T13:28:17+07:00","service_name":"x\u0000y","displayName":"a\u0000b","avatar":"javascript:alert(1)"}`, "nats")
	f.Add("user.events.created", `{"id":"78af4bc4-afce-4676-b373-5b802a2dfd2e","email":"a\u0000b","username":"\ud800","action":"created","timestamp":"2026-11-28T13:28:17+24:00","x":[[[[[[[[]]]]]]]]}`, "http")
	f.Add("user.events.deleted", `{"id":"78af4bc4-afce-4676-b373-5b802a2dfd2e","email":"a@b","username":"u","action":"deleted","timestamp":"2026-11-28T13:28:17Z","request_id":7,"sequence":-1}`, "nats")
	f.Add("user.events.created", `[]`, "nats")
	f.Fuzz(func(t *testing.T, subject, body, path string) {
		// The ingress is the router's own metadata, not outside input: one
		// of the three paths.
		ingress := []string{schema.IngressNATS, schema.IngressHTTP, schema.IngressReplay}[len(path)%3]
		rec := &recorder{}
		d, err := NewDispatcher(DefaultRegistry(), NewMemoryCommitter(rec), "profile_sync_commands")
		if err != nil {
			t.Fatal(err)
		}
		md := map[string]string{MetaIngress: ingress, MetaStreamSeq: "3"}
		if ingress == schema.IngressHTTP {
			subject, md[MetaStreamSeq] = "", ""
		}
		err = d.Handle(incoming(subject, body, md))
		if err != nil {
			if !IsPermanent(err) {
				t.Fatalf("not a command and not permanent: %v", err)
			}
			reason := err.Error()
			if !utf8.ValidString(reason) || strings.IndexFunc(reason, unicode.IsControl) >= 0 {
				t.Fatalf("reason is not one printable line: %q", reason)
			}
			return
		}
		if len(rec.msgs) != 1 {
			t.Fatalf("%d commands for one event", len(rec.msgs))
		}
		payload := rec.msgs[0].Payload
		if bytes.Contains(payload, []byte(`\u0000`)) {
			t.Fatalf("command holds \\u0000, which PostgreSQL's jsonb refuses: %s", payload)
		}
		var cmd schema.Command
		if err := json.Unmarshal(payload, &cmd); err != nil || !json.Valid(payload) {
			t.Fatalf("command does not parse again: %v: %s", err, payload)
		}
		if cmd.CommandID == "" || cmd.UserSequence != 1 || cmd.Generation != 1 {
			t.Fatalf("command without its ledger order: %s", payload)
		}
		for _, v := range []string{cmd.CorrelationID, cmd.Source.RequestID, cmd.Source.Service} {
			if strings.IndexFunc(v, unicode.IsControl) >= 0 || len(v) > 256 {
				t.Fatalf("unbounded or unescaped text reaches the command: %q", v)
			}
		}
	})
}
