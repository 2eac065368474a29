package e2e

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/social/user-events-router/middleware"
	"github.com/social/user-events-router/router/routertest"
	"github.com/social/user-events-router/store"
	"github.com/social/user-events-router/store/storetest"
)

// badInput is one malformed event and the words its poison reason must contain.
type badInput struct {
	name    string
	subject string
	body    []byte
	reason  string
}

// good returns the producer payload with fields replaced (old → new pairs).
func good(replacements ...string) []byte {
	return []byte(strings.NewReplacer(replacements...).Replace(producerPayload))
}

// without removes one field (and its value) from the producer payload.
func without(field string) []byte {
	key := `"` + field + `":`
	i := strings.Index(producerPayload, key)
	if i < 0 {
		panic("no field " + field)
	}
	j := i + len(key)
	if producerPayload[j] == '"' {
		j += strings.IndexByte(producerPayload[j+1:], '"') + 2
	}
	for producerPayload[j] != ',' && producerPayload[j] != '}' {
		j++
	}
	if producerPayload[j] == ',' {
		return []byte(producerPayload[:i] + producerPayload[j+1:])
	}
	return []byte(strings.TrimSuffix(producerPayload[:i], ",") + "}")
}

func badInputs() []badInput {
	const created = "user.events.created"
	unclosed := `{"nested":` + strings.Repeat("[", 200) + `,` + strings.TrimPrefix(producerPayload, "{")
	return []badInput{
		{"truncated JSON", created, []byte(producerPayload[:60]), "JSON"},
		{"id is a number", created, good(`"78af4bc4-afce-4676-b373-5b802a2dfd2e"`, `12345`), "id: must be a string, got number"},
		{"email is null", created, good(`"alice@example.com"`, `null`), "email: must be a string, got null"},
		{"email is an array", created, good(`"alice@example.com"`, `["alice@example.com"]`), "email: must be a string, got array"},
		{"action is a number", created, good(`"action":"created"`, `"action":1`), "action: must be a string"},
		{"id missing", created, without("id"), "id: missing"},
		{"email missing", created, without("email"), "email: missing"},
		{"username missing", created, without("username"), "username: missing"},
		{"action missing", created, without("action"), "action: missing"},
		{"timestamp missing", created, without("timestamp"), "timestamp: missing"},
		{"invalid UUID", created, good("78af4bc4-afce-4676-b373-5b802a2dfd2e", "not-a-uuid"), "id: not a UUID"},
		{"NUL in email", created, good(`"alice@example.com"`, `"alice\u0000@example.com"`), "email: contains NUL"},
		{"NUL in username", created, good(`"alice01"`, `"alice\u000001"`), "username: contains NUL"},
		{"lone surrogate in username", created, good(`"alice01"`, `"alice\ud800"`), "username: lone surrogate"},
		{"unknown action", "user.events.renamed", good(`"created"`, `"renamed"`), `unknown action "renamed"`},
		{"subject/action mismatch", "user.events.deleted", []byte(producerPayload), "does not match subject"},
		{"timestamp offset +24:00", created, good("2026-11-28T13:28:17Z", "2026-11-28T13:28:17+24:00"), "timestamp"},
		{"timestamp not RFC 3339", created, good("2026-11-28T13:28:17Z", "2026-11-28 13:28:17"), "timestamp"},
		{"timestamp is words", created, good("2026-11-28T13:28:17Z", "yesterday"), "timestamp"},
		{"binary garbage", created, []byte{0x00, 0xff, 0xfe, 0x13, 0x37, 0x80, 0x81}, "UTF-8"},
		{"UTF-8 BOM", created, append([]byte("\xef\xbb\xbf"), producerPayload...), "byte-order mark"},
		{"unclosed deep nesting", created, []byte(unclosed), "JSON"},
		{"duplicated key", created, good(`"username":"alice01"`, `"username":"alice01","username":"mallory"`), "duplicate"},
		{"empty body", created, []byte{}, "empty"},
		{"top-level array", created, []byte(`[` + producerPayload + `]`), "array"},
		{"top-level string", created, []byte(`"hello"`), "string"},
		{"JSON null", created, []byte(`null`), "null"},
		{"trailing data", created, []byte(producerPayload + producerPayload), "after the JSON object"},
		{"invalid UTF-8 in a value", created, good(`"alice01"`, "\"al\xffce\""), "UTF-8"},
		{"oversized body", created, good(`"alice01"`, `"alice01","pad":"`+strings.Repeat("x", 70<<10)+`"`), "limit"},
	}
}

// TestBadInputCorpus sends every malformed input, each followed by a good
// event, through a real NATS server: each bad one must end in the poison
// queue with a reason naming its problem, each good one must yield its
// command, the router must keep running, and the stream must end empty.
func TestBadInputCorpus(t *testing.T) {
	t.Parallel()
	storetest.EachBackend(t, func(t *testing.T, backend store.Dialect) {
		srv := routertest.StartServer(t)
		dbURL := storetest.URL(t, backend)
		db := openDB(t, dbURL)
		p := startRouter(t, testEnv(t, srv.URL, dbURL))
		js := routertest.JetStream(t, srv.URL)
		waitForConsumer(t, js)

		corpus := badInputs()
		for i, in := range corpus {
			routertest.Publish(t, js, in.subject, in.body)
			id := fmt.Sprintf("%08d-0000-4000-8000-000000000000", i)
			routertest.Publish(t, js, "user.events.created", good("78af4bc4-afce-4676-b373-5b802a2dfd2e", id))
		}
		routertest.Eventually(t, 60*time.Second, "the stream to drain", func() bool {
			return routertest.StreamMsgs(t, js, "USER_EVENTS") == 0
		})
		select {
		case err := <-p.done:
			t.Fatalf("the router stopped during the corpus: %v", err)
		default:
		}
		if n := countCommands(t, db); n != len(corpus) {
			t.Errorf("%d commands, want %d (one per good event)", n, len(corpus))
		}
		entries := storetest.PoisonEntries(t, db)
		if len(entries) != len(corpus) {
			t.Errorf("%d poison entries, want %d", len(entries), len(corpus))
		}
		byID := map[string]store.PoisonEntry{}
		for _, e := range entries {
			byID[e.ID] = e
		}
		for _, in := range corpus {
			e, ok := byID[middleware.PoisonID(in.subject, in.body)]
			if !ok {
				t.Errorf("%s: not in the poison queue", in.name)
				continue
			}
			if !strings.Contains(e.Reason, in.reason) {
				t.Errorf("%s: reason %q does not contain %q", in.name, e.Reason, in.reason)
			}
			if !bytes.Equal(e.Payload, in.body) {
				t.Errorf("%s: poison payload differs from the original bytes", in.name)
			}
			if e.Class != middleware.ClassPermanent || e.Subject != in.subject || e.StreamSeq == 0 || e.DeliveryCount != 1 ||
				e.Ingress != "nats" || e.CorrelationID == "" || e.FirstFailure.IsZero() || e.LastFailure.IsZero() {
				t.Errorf("%s: entry lacks facts: %+v", in.name, withoutPayload(e))
			}
		}
	})
}

func withoutPayload(e store.PoisonEntry) store.PoisonEntry {
	e.Payload = nil
	return e
}
