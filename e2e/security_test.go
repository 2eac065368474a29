package e2e

import (
	"context"
	"crypto/rand"
	"errors"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/crypto/bcrypt"

	"github.com/social/user-events-router/cli"
	"github.com/social/user-events-router/router/broker"
	"github.com/social/user-events-router/router/routertest"
	"github.com/social/user-events-router/store"
	"github.com/social/user-events-router/store/storetest"
)

// leastPrivilegeConf is the broker configuration the README tells operators
// to deploy; these tests run it as shipped, passwords aside.
const leastPrivilegeConf = "../configs/nats/router-least-privilege.conf"

// The users of leastPrivilegeConf, and the one the tests add.
const (
	authServiceUser = "auth-service"
	routerUser      = "router"
	// adminUser is a test fixture, not part of the deployed file: an
	// unrestricted user in the same account, standing in for the operator
	// and for the monolith's old subscriber.
	adminUser = "test-admin"
)

// securedBroker is an in-process NATS server running leastPrivilegeConf.
type securedBroker struct {
	srv       *server.Server
	url       string
	passwords map[string]string
}

// startSecuredBroker runs leastPrivilegeConf with real passwords in place of
// its placeholders, on a random port with its store in a temporary
// directory. flags are server feature flags (nil for the defaults).
func startSecuredBroker(t *testing.T, flags map[string]bool) *securedBroker {
	t.Helper()
	b := &securedBroker{passwords: map[string]string{
		authServiceUser: rand.Text(),
		routerUser:      rand.Text(),
		adminUser:       rand.Text(),
	}}
	conf, err := os.ReadFile(leastPrivilegeConf)
	if err != nil {
		t.Fatal(err)
	}
	text := string(conf)
	for placeholder, user := range map[string]string{
		"password: $AUTH_SERVICE_PASSWORD": authServiceUser,
		"password: $ROUTER_PASSWORD":       routerUser,
	} {
		if n := strings.Count(text, placeholder); n != 1 {
			t.Fatalf("%s: %q appears %d times, want once", leastPrivilegeConf, placeholder, n)
		}
		text = strings.Replace(text, placeholder, "password: "+strconv.Quote(b.passwords[user]), 1)
	}
	path := filepath.Join(t.TempDir(), "nats.conf")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	opts := processConf(t, path)
	opts.FeatureFlags = flags
	opts.Users = append(opts.Users, &server.User{
		Username: adminUser, Password: b.passwords[adminUser], Account: accountOf(t, opts, routerUser),
	})
	b.srv = startConfiguredServer(t, opts)
	b.url = b.srv.ClientURL()
	return b
}

// processConf reads the server configuration at path and overrides what a
// test cannot share: a random loopback port, a store in a temporary
// directory, no signal handlers, no log.
func processConf(t *testing.T, path string) *server.Options {
	t.Helper()
	opts, err := server.ProcessConfigFile(path)
	if err != nil {
		t.Fatalf("%s: %v", leastPrivilegeConf, err)
	}
	opts.Host, opts.Port = "127.0.0.1", server.RANDOM_PORT
	opts.StoreDir = t.TempDir()
	opts.NoSigs, opts.NoLog = true, true
	return opts
}

// startConfiguredServer starts a server from opts and stops it when the test ends.
func startConfiguredServer(t *testing.T, opts *server.Options) *server.Server {
	t.Helper()
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("nats server: %v", err)
	}
	go srv.Start()
	t.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready within 10s")
	}
	if !srv.JetStreamEnabled() {
		t.Fatal("JetStream is not enabled")
	}
	return srv
}

// accountOf is the account the configuration puts user in.
func accountOf(t *testing.T, opts *server.Options, user string) *server.Account {
	t.Helper()
	for _, u := range opts.Users {
		if u.Username == user {
			return u.Account
		}
	}
	t.Fatalf("%s has no user %q", leastPrivilegeConf, user)
	return nil
}

// conn connects as user; the connection closes when the test ends.
func (b *securedBroker) conn(t *testing.T, user string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(b.url, nats.UserInfo(user, b.passwords[user]), nats.Name("test-"+user),
		// Refusals are expected here; tests read them from LastError.
		nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))
	if err != nil {
		t.Fatalf("connect as %s: %v", user, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// jetStream is a JetStream handle acting as user.
func (b *securedBroker) jetStream(t *testing.T, user string) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(b.conn(t, user))
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// routerEnv is the router's configuration against b with the router user's
// credentials, its admin server on a known address.
func (b *securedBroker) routerEnv(t *testing.T, dbURL string) (env map[string]string, adminAddr string) {
	t.Helper()
	env = testEnv(t, b.url, dbURL)
	env["NATS_USER"] = routerUser
	env["NATS_PASSWORD"] = b.passwords[routerUser]
	adminAddr = freeAddr(t)
	env["ADMIN_ADDR"] = adminAddr
	return env, adminAddr
}

// createStreamAsAuthService provisions the stream the way the Auth Service
// does on start-up: create it, or update it to its settings.
func createStreamAsAuthService(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.CreateOrUpdateStream(ctx, broker.AuthServiceStreamConfig("USER_EVENTS")); err != nil {
		t.Fatalf("auth-service provisions the stream: %v", err)
	}
}

// TestSecurityRouterConsumesAsLeastPrivilegeUser runs the router under the
// `router` user of leastPrivilegeConf in every situation it meets at start:
// a stream the Auth Service made, no stream yet, the monolith's old durable,
// and a server with the v2 ack subjects. Each time the event becomes one
// command, the stream drains, and the server refused the router nothing.
func TestSecurityRouterConsumesAsLeastPrivilegeUser(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		flags map[string]bool
		// before runs ahead of the router; it reports whether the stream exists.
		before func(t *testing.T, b *securedBroker, auth jetstream.JetStream) bool
		// wantDeliverPrefix is where the durable pushes once the router
		// runs ("" for a pull durable).
		wantDeliverPrefix string
		env               map[string]string
	}{
		{
			name: "auth service creates the stream, push durable",
			before: func(t *testing.T, _ *securedBroker, auth jetstream.JetStream) bool {
				createStreamAsAuthService(t, auth)
				return true
			},
			wantDeliverPrefix: broker.DeliverSubject("social-backend-consumer"),
			env:               map[string]string{"NATS_CONSUMER": "push"},
		},
		{
			// The default (auto) on this server: the pinned pull durable.
			name: "router creates the stream",
		},
		{
			name: "monolith durable exists",
			before: func(t *testing.T, b *securedBroker, auth jetstream.JetStream) bool {
				createStreamAsAuthService(t, auth)
				createMonolithDurable(t, b.conn(t, adminUser), b.jetStream(t, adminUser))
				return true
			},
			wantDeliverPrefix: nats.InboxPrefix,
		},
		{
			name: "pinned pull durable",
			before: func(t *testing.T, _ *securedBroker, auth jetstream.JetStream) bool {
				createStreamAsAuthService(t, auth)
				return true
			},
			env: map[string]string{"NATS_CONSUMER": "pinned"},
		},
		{
			name:  "v2 ack subjects",
			flags: map[string]bool{server.FeatureFlagJsAckFormatV2: true},
			before: func(t *testing.T, _ *securedBroker, auth jetstream.JetStream) bool {
				createStreamAsAuthService(t, auth)
				return true
			},
			wantDeliverPrefix: broker.DeliverSubject("social-backend-consumer"),
			env:               map[string]string{"NATS_CONSUMER": "push"},
		},
		{
			name:  "v2 ack subjects, pinned pull durable",
			flags: map[string]bool{server.FeatureFlagJsAckFormatV2: true},
			before: func(t *testing.T, _ *securedBroker, auth jetstream.JetStream) bool {
				createStreamAsAuthService(t, auth)
				return true
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := startSecuredBroker(t, tt.flags)
			auth := b.jetStream(t, authServiceUser)
			published := false
			if tt.before != nil && tt.before(t, b, auth) {
				// A backlog: the event waits in the stream for the router.
				routertest.Publish(t, auth, "user.events.created", []byte(producerPayload))
				published = true
			}

			dbURL := storetest.URL(t, store.SQLite)
			// Opened first: two processes opening a new SQLite file at once
			// can find it locked while one switches it to WAL.
			db := openDB(t, dbURL)
			env, adminAddr := b.routerEnv(t, dbURL)
			maps.Copy(env, tt.env)
			p := startRouter(t, env)
			routertest.Eventually(t, 20*time.Second, "/readyz to answer 200 (stream and durable made)", func() bool {
				code, _ := httpGet(t, "http://"+adminAddr+"/readyz")
				return code == http.StatusOK
			})
			if !published {
				// The router made the stream; the Auth Service, starting
				// later, finds it with its own settings and may update it.
				createStreamAsAuthService(t, auth)
				routertest.Publish(t, auth, "user.events.created", []byte(producerPayload))
			}

			routertest.Eventually(t, 20*time.Second, "the command", func() bool { return countCommands(t, db) == 1 })
			routertest.Eventually(t, 20*time.Second, "the stream to drain", func() bool {
				return routertest.StreamMsgs(t, auth, "USER_EVENTS") == 0
			})
			admin := b.jetStream(t, adminUser)
			info := routertest.ConsumerInfo(t, admin, "USER_EVENTS", "social-backend-consumer")
			switch {
			case tt.wantDeliverPrefix == "" && (info.Config.DeliverSubject != "" || info.Config.PriorityPolicy != jetstream.PriorityPolicyPinned):
				t.Errorf("durable delivers to %q with priority policy %v, want a pinned pull durable", info.Config.DeliverSubject, info.Config.PriorityPolicy)
			case !strings.HasPrefix(info.Config.DeliverSubject, tt.wantDeliverPrefix):
				t.Errorf("durable delivers to %q, want %q…", info.Config.DeliverSubject, tt.wantDeliverPrefix)
			}
			if info.AckFloor.Stream != 1 || info.NumAckPending != 0 || info.NumRedelivered != 0 {
				t.Errorf("durable after one event: ack floor %d, ack pending %d, redelivered %d; want 1, 0, 0 (the ack went through)",
					info.AckFloor.Stream, info.NumAckPending, info.NumRedelivered)
			}

			// The pre-flight check works with the same credentials.
			var stdout, stderr syncBuffer
			if err := cli.Run(context.Background(), []string{"check"}, func(k string) string { return env[k] }, &stdout, &stderr); err != nil {
				t.Errorf("check as %s: %v\n%s", routerUser, err, stderr.String())
			}
			if want := "stream USER_EVENTS: 0 messages, retention WorkQueue"; !strings.Contains(stdout.String(), want) {
				t.Errorf("check printed %q, want it to contain %q", stdout.String(), want)
			}
			if want := "consumer social-backend-consumer: pinned pull (priority groups [router]"; tt.wantDeliverPrefix == "" && !strings.Contains(stdout.String(), want) {
				t.Errorf("check printed %q, want it to contain %q", stdout.String(), want)
			}

			p.stop(t)
			if logs := strings.ToLower(p.logs.String()); strings.Contains(logs, "permissions violation") {
				t.Errorf("the server refused the router something it needs:\n%s", p.logs.String())
			}
		})
	}
}

// TestSecurityUsersCannotOverreach checks that each user is refused what its
// role does not need: above all, the router cannot publish a user event, nor
// delete or purge the stream. Each attempt is a publish (or subscription) the
// server answers with a permissions violation; afterwards the stream still
// holds exactly the one event the Auth Service published.
func TestSecurityUsersCannotOverreach(t *testing.T) {
	t.Parallel()
	b := startSecuredBroker(t, nil)
	auth := b.jetStream(t, authServiceUser)
	createStreamAsAuthService(t, auth)
	routertest.Publish(t, auth, "user.events.created", []byte(producerPayload))

	// What each user may do, beyond what the consuming test exercises.
	for _, user := range []string{authServiceUser, routerUser} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if _, err := b.jetStream(t, user).AccountInfo(ctx); err != nil {
			t.Errorf("%s: JetStream account info: %v", user, err)
		}
		cancel()
	}

	// The router counts the cluster's JetStream servers through the one
	// subject of $SYS its account may ask (one server here, not
	// clustered: it answers for itself).
	if n, err := broker.CountJetStreamServers(t.Context(), b.conn(t, routerUser), "", 2*time.Second); n != 1 || err != nil {
		t.Errorf("router: JetStream servers counted %d (%v), want 1", n, err)
	}

	denied := []struct {
		user      string
		subscribe bool
		subject   string
	}{
		{routerUser, false, "user.events.created"},
		{routerUser, false, "user.events.deleted"},
		{routerUser, false, "$JS.API.STREAM.DELETE.USER_EVENTS"},
		{routerUser, false, "$JS.API.STREAM.PURGE.USER_EVENTS"},
		{routerUser, false, "$JS.API.STREAM.UPDATE.USER_EVENTS"},
		{routerUser, false, "$JS.API.STREAM.MSG.DELETE.USER_EVENTS"},
		{routerUser, false, "$JS.API.CONSUMER.DELETE.USER_EVENTS.social-backend-consumer"},
		{routerUser, false, "$JS.API.CONSUMER.CREATE.USER_EVENTS.reader.user.events.*"},
		{routerUser, false, "$JS.API.CONSUMER.DURABLE.CREATE.USER_EVENTS.social-backend-consumer"},
		{routerUser, false, "$JS.API.STREAM.CREATE.OTHER"},
		{routerUser, false, "$JS.ACK.OTHER.reader.1.1.1.1.0"},
		{routerUser, false, "$SYS.REQ.SERVER.PING.STATZ"},
		{routerUser, true, "user.events.>"},
		{routerUser, true, "user.events.created"},
		{routerUser, true, "router.deliver.other"},
		{authServiceUser, false, "$JS.API.STREAM.DELETE.USER_EVENTS"},
		{authServiceUser, false, "$JS.API.STREAM.PURGE.USER_EVENTS"},
		{authServiceUser, false, "$JS.API.CONSUMER.CREATE.USER_EVENTS.social-backend-consumer.user.events.*"},
		{authServiceUser, false, "$JS.ACK.USER_EVENTS.social-backend-consumer.1.1.1.1.0"},
		{authServiceUser, false, "order.placed"},
		{authServiceUser, true, "router.deliver.social-backend-consumer"},
		{authServiceUser, true, "user.events.>"},
	}
	conns := map[string]*nats.Conn{}
	for _, d := range denied {
		nc := conns[d.user]
		if nc == nil {
			nc = b.conn(t, d.user)
			conns[d.user] = nc
		}
		var err error
		if d.subscribe {
			_, err = nc.SubscribeSync(d.subject)
		} else {
			err = nc.PublishRequest(d.subject, nc.NewInbox(), []byte(producerPayload))
		}
		if err != nil {
			t.Fatal(err)
		}
		// The server answers a refused operation before the flush's PONG.
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
		op := "Publish to"
		if d.subscribe {
			op = "Subscription to"
		}
		want := op + ` "` + d.subject + `"`
		if err := nc.LastError(); !errors.Is(err, nats.ErrPermissionViolation) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %s %s was not refused (last error: %v)", d.user, strings.ToLower(op), d.subject, err)
		}
	}

	// The refusals changed nothing: the stream is there with its one event.
	if n := routertest.StreamMsgs(t, auth, "USER_EVENTS"); n != 1 {
		t.Errorf("stream holds %d messages after the refused attempts, want 1", n)
	}

	// Through the JetStream API too, the router cannot delete the stream:
	// the refused request gets no answer.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := b.jetStream(t, routerUser).DeleteStream(ctx, "USER_EVENTS"); err == nil {
		t.Error("router deleted the stream")
	}
	if n := routertest.StreamMsgs(t, auth, "USER_EVENTS"); n != 1 {
		t.Errorf("stream holds %d messages after the router tried to delete it, want 1", n)
	}
}

// TestSecurityConfigReadsPasswordsFromEnvironment runs leastPrivilegeConf
// unmodified, its passwords taken from the environment as in a deployment:
// a bcrypt hash for the router (what the README recommends) and a plain
// password for the Auth Service. (t.Setenv rules out t.Parallel here.)
func TestSecurityConfigReadsPasswordsFromEnvironment(t *testing.T) {
	routerPassword, authPassword := rand.Text(), rand.Text()
	hash, err := bcrypt.GenerateFromPassword([]byte(routerPassword), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("ROUTER_PASSWORD", string(hash))
	t.Setenv("AUTH_SERVICE_PASSWORD", authPassword)
	srv := startConfiguredServer(t, processConf(t, leastPrivilegeConf))

	for _, tt := range []struct {
		user, password string
		wantErr        error
	}{
		{routerUser, routerPassword, nil},
		{authServiceUser, authPassword, nil},
		{routerUser, string(hash), nats.ErrAuthorization},
		{routerUser, authPassword, nats.ErrAuthorization},
	} {
		nc, err := nats.Connect(srv.ClientURL(), nats.UserInfo(tt.user, tt.password))
		if err == nil {
			nc.Close()
		}
		if !errors.Is(err, tt.wantErr) {
			t.Errorf("connect as %s: err = %v, want %v", tt.user, err, tt.wantErr)
		}
	}
}
