package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/social/user-events-router/cli"
	"github.com/social/user-events-router/router/admin"
	"github.com/social/user-events-router/router/broker"
	"github.com/social/user-events-router/router/routertest"
	"github.com/social/user-events-router/store"
	"github.com/social/user-events-router/store/storetest"
)

func TestRouterTurnsEachActionIntoOneCommand(t *testing.T) {
	t.Parallel()
	storetest.EachBackend(t, func(t *testing.T, backend store.Dialect) {
		srv := routertest.StartServer(t)
		dbURL := storetest.URL(t, backend)
		db := openDB(t, dbURL) // first: two processes creating one SQLite file race
		startRouter(t, testEnv(t, srv.URL, dbURL))
		js := routertest.JetStream(t, srv.URL)

		// The router creates the stream; wait for it before publishing.
		routertest.Eventually(t, 20*time.Second, "stream USER_EVENTS", func() bool {
			_, err := js.Stream(context.Background(), "USER_EVENTS")
			return err == nil
		})
		events := map[string]string{
			"created": producerPayload,
			"updated": eventFor("updated", "11111111-1111-4111-8111-111111111111"),
			"deleted": eventFor("deleted", "22222222-2222-4222-8222-222222222222"),
		}
		seqs := map[string]uint64{}
		for action, body := range events {
			seqs[action] = routertest.Publish(t, js, "user.events."+action, []byte(body))
		}
		routertest.Eventually(t, 20*time.Second, "3 commands", func() bool { return countCommands(t, db) == 3 })

		// The same event again, published anew: still one command per event.
		routertest.Publish(t, js, "user.events.created", []byte(producerPayload))
		routertest.Eventually(t, 20*time.Second, "the stream to drain", func() bool {
			return routertest.StreamMsgs(t, js, "USER_EVENTS") == 0
		})
		if n := countCommands(t, db); n != 3 {
			t.Fatalf("after a duplicate event: %d commands, want 3", n)
		}

		wantType := map[string]string{"created": "create_profile", "updated": "sync_identity", "deleted": "delete_profile"}
		byType := map[string]commandRow{}
		for _, r := range commandRows(t, db) {
			byType[fmt.Sprint(r.Payload["type"])] = r
		}
		for action, body := range events {
			r, ok := byType[wantType[action]]
			if !ok {
				t.Fatalf("no %s command for %s", wantType[action], action)
			}
			var ev map[string]any
			_ = json.Unmarshal([]byte(body), &ev)
			p := r.Payload
			if p["command_id"] != r.UUID {
				t.Errorf("%s: command_id %v differs from the row uuid %s", action, p["command_id"], r.UUID)
			}
			for field, want := range map[string]any{
				"schema_version": float64(1), "user_id": ev["id"], "email": "alice@example.com",
				"username": "alice01", "occurred_at": "2026-11-28T13:28:17Z",
			} {
				if p[field] != want {
					t.Errorf("%s: %s = %v, want %v", action, field, p[field], want)
				}
			}
			corr, _ := p["correlation_id"].(string)
			if corr == "" || r.Metadata["correlation_id"] != corr {
				t.Errorf("%s: correlation_id %q in payload, %q in metadata; want the same non-empty id", action, corr, r.Metadata["correlation_id"])
			}
			src, _ := p["source"].(map[string]any)
			if src["service"] != "gofiber-auth" || src["subject"] != "user.events."+action || src["ingress"] != "nats" ||
				src["request_id"] != "" || src["delivery_attempt"] != float64(1) {
				t.Errorf("%s: source = %v", action, src)
			}
			if seq, _ := src["stream_sequence"].(float64); uint64(seq) != seqs[action] && action != "created" {
				t.Errorf("%s: stream_sequence = %v, want %d", action, src["stream_sequence"], seqs[action])
			}
			_, hasDisplay := p["display_name"]
			if action == "created" {
				if p["display_name"] != "alice01" || p["avatar"] != "" || p["bio"] != "" {
					t.Errorf("created: profile defaults = %v/%v/%v, want alice01 and empty avatar, bio", p["display_name"], p["avatar"], p["bio"])
				}
			} else if hasDisplay {
				t.Errorf("%s: carries profile defaults: %v", action, p)
			}
		}
	})
}

// TestFailedCommitLeavesEventInStream proves the ack follows the commit: while
// the commands table is missing, the event stays in the stream, unacked; once
// it is back, the event yields its command and leaves the stream.
func TestFailedCommitLeavesEventInStream(t *testing.T) {
	t.Parallel()
	srv := routertest.StartServer(t)
	dbURL := storetest.URL(t, store.SQLite)
	db := openDB(t, dbURL)
	startRouter(t, testEnv(t, srv.URL, dbURL))
	js := routertest.JetStream(t, srv.URL)
	routertest.Eventually(t, 20*time.Second, "the durable consumer", func() bool {
		_, err := broker.ReadConsumer(context.Background(), js, "USER_EVENTS", "social-backend-consumer")
		return err == nil
	})
	if _, err := db.SQL.Exec(`ALTER TABLE watermill_profile_sync_commands RENAME TO parked_commands`); err != nil {
		t.Fatal(err)
	}
	routertest.Publish(t, js, "user.events.created", []byte(producerPayload))
	routertest.Eventually(t, 20*time.Second, "a redelivery of the failing event", func() bool {
		return routertest.ConsumerInfo(t, js, "USER_EVENTS", "social-backend-consumer").NumRedelivered > 0
	})
	if n := routertest.StreamMsgs(t, js, "USER_EVENTS"); n != 1 {
		t.Fatalf("while the commit fails the stream holds %d messages, want 1 (the event must not be acked)", n)
	}
	if _, err := db.SQL.Exec(`ALTER TABLE parked_commands RENAME TO watermill_profile_sync_commands`); err != nil {
		t.Fatal(err)
	}
	routertest.Eventually(t, 20*time.Second, "the command after the table is back", func() bool { return countCommands(t, db) == 1 })
	routertest.Eventually(t, 20*time.Second, "the stream to drain", func() bool {
		return routertest.StreamMsgs(t, js, "USER_EVENTS") == 0
	})
}

// TestBindsMonolithPushDurable pre-creates the durable the way the monolith's
// old in-process subscriber did, and checks the router consumes from it as found.
func TestBindsMonolithPushDurable(t *testing.T) {
	t.Parallel()
	srv := routertest.StartServer(t)
	monolithWorld(t, srv.URL)

	js := routertest.JetStream(t, srv.URL)
	before := routertest.ConsumerInfo(t, js, "USER_EVENTS", "social-backend-consumer")
	if before.Config.DeliverSubject == "" || before.Config.DeliverGroup != "social-backend-consumer" || before.Config.MaxDeliver != 3 {
		t.Fatalf("pre-created durable is not the monolith's push durable: %+v", before.Config)
	}
	routertest.Publish(t, js, "user.events.created", []byte(producerPayload))

	dbURL := storetest.URL(t, store.SQLite)
	db := openDB(t, dbURL)
	startRouter(t, testEnv(t, srv.URL, dbURL))
	routertest.Eventually(t, 20*time.Second, "the command", func() bool { return countCommands(t, db) == 1 })
	routertest.Eventually(t, 20*time.Second, "the stream to drain", func() bool {
		return routertest.StreamMsgs(t, js, "USER_EVENTS") == 0
	})
	after := routertest.ConsumerInfo(t, js, "USER_EVENTS", "social-backend-consumer")
	if after.Config.DeliverSubject != before.Config.DeliverSubject || after.Config.MaxDeliver != 3 || after.Created != before.Created {
		t.Errorf("the router changed the existing durable: before %+v, after %+v", before.Config, after.Config)
	}
}

// TestEmbeddedDefaults starts the router with no NATS_URL and no
// DATABASE_URL: an embedded NATS server and SQLite under DATA_DIR.
func TestEmbeddedDefaults(t *testing.T) {
	t.Parallel()
	dataDir := t.TempDir()
	listen, adminAddr := freeAddr(t), freeAddr(t)
	p := startRouter(t, map[string]string{"DATA_DIR": dataDir, "NATS_LISTEN": listen, "LOG_LEVEL": "debug",
		"HTTP_ADDR": "127.0.0.1:0", "ADMIN_ADDR": adminAddr})
	var js jetstream.JetStream
	routertest.Eventually(t, 20*time.Second, "the embedded server and its stream", func() bool {
		nc, err := nats.Connect("nats://" + listen)
		if err != nil {
			return false
		}
		t.Cleanup(nc.Close)
		js, _ = jetstream.New(nc)
		_, err = broker.ReadConsumer(context.Background(), js, "USER_EVENTS", "social-backend-consumer")
		return err == nil
	})
	routertest.Publish(t, js, "user.events.created", []byte(producerPayload))
	db := openDB(t, "sqlite:"+dataDir+"/router.db")
	routertest.Eventually(t, 20*time.Second, "the command in the SQLite file", func() bool { return countCommands(t, db) == 1 })
	if e := getStatus(t, adminAddr).EmbeddedNATS; e == nil || e.State != admin.StateOK || !strings.Contains(e.URL, listen) {
		t.Errorf("/status embedded_nats = %+v, want ok on %s", e, listen)
	}

	// The quick start's second terminal: the same DATA_DIR, NATS_LISTEN
	// not exported there (here: another free port, so that nothing else
	// is touched). publish and check find the router's server by the
	// address it recorded.
	addrFile := filepath.Join(dataDir, broker.AddrFileName)
	if got, err := broker.ReadAddrFile(addrFile); err != nil || got != "nats://"+listen {
		t.Errorf("%s: %q, %v; want nats://%s", addrFile, got, err, listen)
	}
	terminal2 := map[string]string{"DATA_DIR": dataDir, "NATS_LISTEN": freeAddr(t)}
	out, err := runCommand(terminal2, "publish", "-action", "updated")
	if err != nil {
		t.Fatalf("publish in terminal 2: %v\n%s", err, out)
	}
	routertest.Eventually(t, 20*time.Second, "the published event's command", func() bool { return countCommands(t, db) == 2 })
	out, err = runCommand(terminal2, "check")
	if err != nil || !strings.Contains(out, "nats: embedded server of the running serve reached (nats://"+listen) ||
		!strings.Contains(out, "consumer social-backend-consumer: pending") {
		t.Errorf("check in terminal 2: %v\n%s", err, out)
	}

	// A second router on the same port fails at once with a clear error.
	err = cli.Run(context.Background(), nil, func(k string) string {
		return map[string]string{"DATA_DIR": t.TempDir(), "NATS_LISTEN": listen}[k]
	}, &syncBuffer{}, &syncBuffer{})
	if err == nil || !strings.Contains(err.Error(), "NATS_LISTEN") {
		t.Errorf("second router on a busy port: err = %v, want one naming NATS_LISTEN", err)
	}
	p.stop(t)
	if _, err := os.Stat(addrFile); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("after a clean shutdown %s: %v, want it removed", addrFile, err)
	}
	out, err = runCommand(terminal2, "check")
	if err != nil || !strings.Contains(out, "none running with this DATA_DIR") {
		t.Errorf("check after serve stopped: %v\n%s", err, out)
	}
}

// TestCheckTellsReachedFromAssumed: with NATS_URL unset, check says which
// broker it reached and how it knows, and never calls a server it did not
// reach, or another process's, the router's embedded one.
func TestCheckTellsReachedFromAssumed(t *testing.T) {
	t.Parallel()
	other := routertest.StartServer(t) // a NATS server that is not the router's
	otherAddr := strings.TrimPrefix(other.URL, "nats://")
	tests := []struct {
		name     string
		addrFile string // "" = none
		listen   string
		wantErr  string
		want     string
	}{
		{name: "nothing runs", listen: freeAddr(t), want: "none running with this DATA_DIR"},
		{name: "another server on NATS_LISTEN", listen: otherAddr, wantErr: "answers: another server"},
		{name: "stale file, nothing answers", addrFile: "nats://" + freeAddr(t), listen: freeAddr(t), want: "does not answer: serve is not running"},
		{name: "stale file, another server answers", addrFile: other.URL, listen: freeAddr(t), wantErr: "not a router's embedded server"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dataDir := t.TempDir()
			// The database as serve leaves it: this is about the broker.
			openDB(t, "sqlite:"+filepath.Join(dataDir, "router.db"))
			if tt.addrFile != "" {
				if err := os.WriteFile(filepath.Join(dataDir, broker.AddrFileName), []byte(tt.addrFile+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			out, err := runCommand(map[string]string{"DATA_DIR": dataDir, "NATS_LISTEN": tt.listen}, "check")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("err = %v, want one saying %q\n%s", err, tt.wantErr, out)
				}
			} else if err != nil || !strings.Contains(out, tt.want) {
				t.Errorf("err = %v, output:\n%s\nwant it to say %q", err, out, tt.want)
			} else if !strings.Contains(out, "the durable is a pull consumer") {
				// serve creates a pinned pull durable on its embedded
				// server (NATS_CONSUMER=auto, a server that can pin).
				t.Errorf("check bounds the memory of another durable than serve creates:\n%s", out)
			}
			if strings.Contains(out, "started by serve") || strings.Contains(out, "reached") {
				t.Errorf("check claims a router's server:\n%s", out)
			}
		})
	}
}

func TestCommandLine(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args   []string
		env    map[string]string
		code   int
		stdout string
		stderr string
	}{
		{args: []string{"version"}, code: 0, stdout: "user-events-router"},
		{args: []string{"help"}, code: 0, stdout: "usage:"},
		{args: []string{"frobnicate"}, code: 2, stderr: `unknown command "frobnicate"`},
		{args: []string{"serve", "extra"}, code: 2, stderr: "serve takes no arguments"},
		{args: []string{"serve"}, env: map[string]string{"MAX_IN_FLIGHT": "lots"}, code: 2, stderr: `MAX_IN_FLIGHT="lots"`},
		{args: []string{"publish", "-action", "renamed"}, code: 2, stderr: "-action must be"},
		{args: []string{"publish", "-bogus"}, code: 2, stderr: "flag provided but not defined"},
		// Each command's help is asked for, not a mistake: exit 0, on stdout.
		{args: []string{"serve", "--help"}, code: 0, stdout: "usage: user-events-router [serve]"},
		{args: []string{"serve", "-h"}, code: 0, stdout: "Runs the router"},
		{args: []string{"publish", "-h"}, code: 0, stdout: "-payload BYTES"},
		{args: []string{"publish", "--help"}, code: 0, stdout: "usage: user-events-router publish"},
		{args: []string{"check", "--help"}, code: 0, stdout: "usage: user-events-router check"},
		{args: []string{"apply", "-h"}, code: 0, stdout: "usage: user-events-router apply"},
		{args: []string{"prune", "--help"}, code: 0, stdout: "-dry-run"},
		{args: []string{"poison", "list", "-h"}, code: 0, stdout: "usage: user-events-router poison list"},
		{args: []string{"healthcheck", "-h"}, code: 0, stdout: "Asks the router on this host"},
		{args: []string{"version", "-h"}, code: 0, stdout: "usage: user-events-router version"},
		{args: []string{"version", "extra"}, code: 2, stderr: "version takes no arguments"},
		{args: []string{"healthcheck", "--timeout=soon"}, code: 2, stderr: "(see: user-events-router healthcheck -h)"},
		{args: []string{"poison", "list", "--bogus"}, code: 2, stderr: "(see: user-events-router poison list -h)"},
		{args: []string{"publish", "-payload", "{}"}, code: 2, stderr: "need -subject"},
		{args: []string{"publish", "-payload", "{}", "-file", "x", "-subject", "s"}, code: 2, stderr: "give one body"},
		{args: []string{"publish", "-payload", "{}", "-action", "deleted", "-subject", "s"}, code: 2, stderr: "-action describes a generated event"},
		{args: []string{"publish", "-http", "http://127.0.0.1:1/", "-subject", "s"}, code: 2, stderr: "the HTTP fallback has no subject"},
		{args: []string{"publish", "-file", "/nonexistent/event.json", "-subject", "s"}, code: 2, stderr: "-file: open /nonexistent/event.json"},
		{args: []string{"check"}, env: map[string]string{"DATABASE_URL": "postgres://127.0.0.1:1/none?connect_timeout=1"}, code: 1, stderr: "database"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			t.Parallel()
			var stdout, stderr syncBuffer
			err := cli.Run(context.Background(), tt.args, func(k string) string { return tt.env[k] }, &stdout, &stderr)
			code := cli.ExitCode(err, &stderr)
			if code != tt.code {
				t.Errorf("exit code %d, want %d (err %v)", code, tt.code, err)
			}
			if !strings.Contains(stdout.String(), tt.stdout) || !strings.Contains(stderr.String(), tt.stderr) {
				t.Errorf("stdout %q, stderr %q; want them to contain %q and %q", stdout.String(), stderr.String(), tt.stdout, tt.stderr)
			}
			// A mistake is one line; only an unknown command prints the
			// commands before it.
			if code != 0 && tt.args[0] != "frobnicate" && strings.Count(strings.TrimSuffix(stderr.String(), "\n"), "\n") > 0 {
				t.Errorf("error is not one line: %q", stderr.String())
			}
		})
	}
}

func lastLine(s string) string {
	s = strings.TrimRight(s, "\n")
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}
