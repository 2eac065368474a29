package admin_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/social/user-events-router/configs"
	"github.com/social/user-events-router/router"
	"github.com/social/user-events-router/router/admin"
	"github.com/social/user-events-router/router/broker"
	"github.com/social/user-events-router/router/routertest"
	"github.com/social/user-events-router/store"
	"github.com/social/user-events-router/store/storetest"
)

// healthBundle is a Health over a real in-process NATS server with the
// router's stream and durable, and a real SQLite database.
type healthBundle struct {
	health *admin.Health
	srv    *routertest.Server
	db     *store.DB
	logs   *routertest.LockedBuffer
}

// setupHealth starts a Health checking every 50ms. withRouter runs a
// router bound to the durable (its handler commits nothing and succeeds).
func setupHealth(t *testing.T, withRouter bool, timeout time.Duration) *healthBundle {
	t.Helper()
	srv := routertest.StartServer(t)
	js := routertest.JetStream(t, srv.URL)
	cfg := configs.Defaults()
	// A push durable: whether it has a bound subscriber is what these
	// tests watch (a pull durable has none to show; see observeConsumer).
	cfg.Consumer = configs.ConsumerPush
	logs := &routertest.LockedBuffer{}
	logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if _, err := broker.EnsureStream(ctx, js, cfg.Stream, logger); err != nil {
		t.Fatal(err)
	}
	binding, err := broker.EnsureConsumer(ctx, js, cfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	conn := routertest.Conn(t, srv.URL)
	var r *router.Router
	if withRouter {
		r, err = router.New(router.Options{Config: cfg, Binding: binding, Conn: conn, Logger: logger,
			Handle: func(*message.Message) error { return nil }})
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- r.Run(context.Background()) }()
		t.Cleanup(func() {
			if err := r.Close(); err != nil {
				t.Errorf("close router: %v", err)
			}
			if err := <-done; err != nil {
				t.Errorf("run router: %v", err)
			}
		})
	}
	db := storetest.Open(t, store.SQLite)
	h, err := admin.NewHealth(admin.HealthOptions{
		DB: db, JetStream: js, Binding: binding, ConsumerConn: conn, Router: r,
		IngressAddr: "127.0.0.1:3000", Interval: 50 * time.Millisecond, Timeout: timeout, Logger: logger,
	})
	if err != nil {
		t.Fatal(err)
	}
	hctx, stop := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() {
		defer close(ran)
		h.Run(hctx)
	}()
	t.Cleanup(func() {
		stop()
		<-ran
	})
	return &healthBundle{health: h, srv: srv, db: db, logs: logs}
}

// probesAfter waits until n more write probes have finished.
func (b *healthBundle) probesAfter(t *testing.T, n int) {
	t.Helper()
	seen, last := 0, b.health.Status().Database.CheckedAt
	routertest.Eventually(t, 10*time.Second, "more write probes", func() bool {
		at := b.health.Status().Database.CheckedAt
		if at != nil && (last == nil || at.After(*last)) {
			seen, last = seen+1, at
		}
		return seen >= n
	})
}

// TestHealthConsumerOutage: with NATS gone the router stays ready, the
// consumer is reported down with its connection's state, the durable's
// last figures stay (ageing), and it is reported back once NATS is: each
// change logged once.
func TestHealthConsumerOutage(t *testing.T) {
	t.Parallel()
	b := setupHealth(t, true, time.Second)
	h := b.health
	routertest.Eventually(t, 10*time.Second, "the consumer bound and the database ok", func() bool {
		st := h.Status()
		return st.Ready && st.Consumer.State == admin.StateOK && st.Consumer.Info != nil && st.Consumer.Info.Bound
	})
	if n := b.logs.Count("consumer down"); n != 0 {
		t.Errorf("the start logged the consumer down %d times: its subscription just had not shown yet", n)
	}
	routertest.Publish(t, routertest.JetStream(t, b.srv.URL), "user.events.created", []byte(producerPayload))
	routertest.Eventually(t, 10*time.Second, "the ack and the durable's figures", func() bool {
		c := h.Consumer()
		return c.LastAckAt != nil && c.Info.Pending == 0 && c.Info.AckPending == 0
	})

	b.srv.Stop()
	routertest.Eventually(t, 10*time.Second, "the consumer down", func() bool {
		c := h.Consumer()
		return c.State == admin.StateDown && strings.Contains(c.Reason, "consumer connection") && c.Connection != "CONNECTED"
	})
	if err := h.Ready(t.Context()); err != nil {
		t.Errorf("Ready with NATS down = %v, want nil: the HTTP fallback still takes events", err)
	}
	b.probesAfter(t, 3)
	c := h.Consumer()
	if c.Info == nil || c.LastAckAt == nil {
		t.Errorf("consumer during the outage = %+v, want the last figures and ack kept", c)
	}
	routertest.Eventually(t, 10*time.Second, "the durable's figures to show their age", func() bool {
		return h.Consumer().Info.AgeSeconds > 0.2 // four checks' worth: they are not being refreshed
	})
	if n := b.logs.Count("consumer down"); n != 1 {
		t.Errorf("the outage logged %d consumer-down lines, want 1", n)
	}

	b.srv.Start(t)
	routertest.Eventually(t, 20*time.Second, "the consumer back", func() bool {
		c := h.Consumer()
		return c.State == admin.StateOK && c.Info.AgeSeconds < 1
	})
	if n := b.logs.Count("consumer back"); n != 1 {
		t.Errorf("the recovery logged %d consumer-back lines, want 1", n)
	}
}

// TestHealthConsumerNotBound: a durable nobody consumes from is reported
// down, with the reason, once the start's grace has passed.
func TestHealthConsumerNotBound(t *testing.T) {
	t.Parallel()
	h := setupHealth(t, false, time.Second).health
	routertest.Eventually(t, 10*time.Second, "the consumer reported unbound", func() bool {
		c := h.Consumer()
		return c.State == admin.StateDown && strings.Contains(c.Reason, "no bound subscriber") && c.Info != nil && !c.Info.Bound
	})
	if err := h.Ready(t.Context()); err != nil {
		t.Errorf("Ready with the durable unbound = %v, want nil", err)
	}
}

// TestHealthDatabase: readiness follows the write probe — a table renamed
// away is not ready, with the table named, until it is back — and a
// database that does not answer in time is not ready either, while Ready
// itself answers at once.
func TestHealthDatabase(t *testing.T) {
	t.Parallel()
	b := setupHealth(t, false, 200*time.Millisecond)
	h := b.health
	routertest.Eventually(t, 10*time.Second, "ready", func() bool { return h.Ready(t.Context()) == nil })

	mustExec := func(q string) {
		t.Helper()
		if _, err := b.db.SQL.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	// Counted from here: on a loaded machine a probe before the rename
	// may miss its 200 ms and log the database down (and back) on its own.
	before := b.logs.Count("database down")
	mustExec(`ALTER TABLE watermill_profile_sync_commands RENAME TO parked`)
	routertest.Eventually(t, 10*time.Second, "not ready, naming the table", func() bool {
		err := h.Ready(t.Context())
		return err != nil && strings.Contains(err.Error(), "table watermill_profile_sync_commands")
	})
	st := h.Status()
	if st.Ready || st.Database.State != admin.StateDown || st.Ingress.State != admin.StateDown || !strings.Contains(st.Ingress.Reason, "503") {
		t.Errorf("status with the table away: ready %v, database %+v, ingress %+v", st.Ready, st.Database, st.Ingress)
	}
	b.probesAfter(t, 3)
	if n := b.logs.Count("database down") - before; n != 1 {
		t.Errorf("several failed probes logged %d database-down lines, want 1", n)
	}
	mustExec(`ALTER TABLE parked RENAME TO watermill_profile_sync_commands`)
	routertest.Eventually(t, 10*time.Second, "ready with the table back", func() bool { return h.Ready(t.Context()) == nil })

	// Another writer holds SQLite's write lock: the probe waits for it
	// (busy_timeout is 10 s) and gives up at its timeout.
	tx, err := b.db.SQL.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback() //nolint:errcheck // rolled back below
	routertest.Eventually(t, 10*time.Second, "not ready while the database does not answer", func() bool {
		err := h.Ready(t.Context())
		return err != nil && strings.Contains(err.Error(), "did not finish within")
	})
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	routertest.Eventually(t, 10*time.Second, "ready once the database answers", func() bool { return h.Ready(t.Context()) == nil })
}

// TestAdminStatus: /status is the Status as JSON, behind the admin token
// like the poison API, and absent without a StatusFunc.
func TestAdminStatus(t *testing.T) {
	t.Parallel()
	db := storetest.Open(t, store.SQLite)
	logger := slog.New(slog.DiscardHandler)
	since := time.Date(2026, 11, 28, 13, 28, 17, 0, time.UTC)
	want := admin.Status{
		Ready:    true,
		Database: admin.DatabaseStatus{ComponentStatus: admin.ComponentStatus{State: admin.StateOK, Since: since}, Dialect: "sqlite", Tables: db.WrittenTables()},
		Consumer: admin.ConsumerStatus{ComponentStatus: admin.ComponentStatus{State: admin.StateDown, Reason: "consumer connection RECONNECTING", Since: since},
			Stream: "USER_EVENTS", Durable: "social-backend-consumer", Connection: "RECONNECTING"},
		Ingress: admin.IngressStatus{ComponentStatus: admin.ComponentStatus{State: admin.StateOK, Since: since}, Addr: "127.0.0.1:3000"},
	}
	handler := func(token string, status func() admin.Status) *adminBundle {
		h, err := admin.NewHandler(admin.Options{DB: db, Replayer: newReplayer(t, db, logger), Token: token,
			Logger: logger, ReadyFunc: db.Ping, StatusFunc: status})
		if err != nil {
			t.Fatal(err)
		}
		return &adminBundle{db: db, handler: h}
	}
	guarded := handler("s3cret", func() admin.Status { return want })
	if r := guarded.do(t, "GET", "/status", ""); r.code != 401 {
		t.Errorf("/status without the token = %d, want 401", r.code)
	}
	var got admin.Status
	guarded.do(t, "GET", "/status", "Bearer s3cret").want(t, "status", 200, &got)
	if !jsonEqual(got, want) {
		t.Errorf("/status = %+v\nwant      %+v", got, want)
	}
	r := handler("", func() admin.Status { return want }).do(t, "GET", "/status", "")
	var fields map[string]json.RawMessage
	r.want(t, "status without a token", 200, &fields)
	for _, key := range []string{"ready", "database", "consumer", "ingress"} {
		if _, ok := fields[key]; !ok {
			t.Errorf("/status lacks %q: %s", key, r.body)
		}
	}
	if strings.Contains(r.body, "embedded_nats") {
		t.Errorf("/status reports an embedded server that is not there: %s", r.body)
	}
	if r := handler("", nil).do(t, "GET", "/status", ""); r.code != 404 {
		t.Errorf("/status without a StatusFunc = %d, want 404", r.code)
	}
}

// TestHealthFollowsStreamRedundancy: on a cluster of three, Health sees
// the Auth Service's R1 stream as weaker, the operator's R3 as not, and
// the Auth Service's next start (UpdateStream, Replicas: 1) as weaker
// again, logging each change once.
func TestHealthFollowsStreamRedundancy(t *testing.T) {
	t.Parallel()
	c := routertest.StartCluster(t, 3)
	js := routertest.JetStream(t, c.URLs())
	cfg := broker.AuthServiceStreamConfig("USER_EVENTS")
	if _, err := js.CreateStream(t.Context(), cfg); err != nil {
		t.Fatal(err)
	}
	logs := &routertest.LockedBuffer{}
	h, err := admin.NewHealth(admin.HealthOptions{
		DB: storetest.Open(t, store.SQLite), JetStream: js, Binding: broker.Binding{Stream: "USER_EVENTS", Durable: "social-backend-consumer"},
		ConsumerConn: routertest.Conn(t, c.URLs()), Interval: 50 * time.Millisecond, RedundancyInterval: 50 * time.Millisecond,
		Logger: slog.New(slog.NewJSONHandler(logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() {
		defer close(ran)
		h.Run(ctx)
	}()
	t.Cleanup(func() {
		stop()
		<-ran
	})
	await := func(what string, replicas int, weaker bool) {
		t.Helper()
		routertest.Eventually(t, 20*time.Second, what, func() bool {
			st := h.Status().Stream
			return st != nil && st.Replicas == replicas && st.JetStreamServers == 3 && st.Weaker == weaker
		})
	}
	setReplicas := func(n int) {
		t.Helper()
		cfg.Replicas = n
		if _, err := js.UpdateStream(t.Context(), cfg); err != nil {
			t.Fatalf("update stream to R%d: %v", n, err)
		}
	}

	await("the R1 stream reported weaker", 1, true)
	setReplicas(3)
	await("the R3 stream reported as wanted", 3, false)
	setReplicas(1)
	await("the stream scaled back reported weaker again", 1, true)
	if n := logs.Count("stream has fewer replicas than its cluster could hold"); n != 2 {
		t.Errorf("the weaker stream was logged %d times, want twice (once per change)\n%s", n, logs)
	}
	if n := logs.Count("stream redundancy as wanted"); n != 1 {
		t.Errorf("the R3 stream was logged %d times, want once", n)
	}
}
