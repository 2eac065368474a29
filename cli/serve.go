package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/social/user-events-router/apply"
	"github.com/social/user-events-router/configs"
	"github.com/social/user-events-router/handlers"
	"github.com/social/user-events-router/metrics"
	"github.com/social/user-events-router/middleware"
	"github.com/social/user-events-router/redact"
	"github.com/social/user-events-router/router"
	"github.com/social/user-events-router/router/admin"
	"github.com/social/user-events-router/router/broker"
	"github.com/social/user-events-router/router/consume"
	"github.com/social/user-events-router/router/ingress"
	"github.com/social/user-events-router/store"
)

const serveUsage = `usage: user-events-router [serve]

Runs the router: consumes the user events from NATS JetStream (NATS_URL, or
an embedded server on NATS_LISTEN, persisted under DATA_DIR, whose address
it records in DATA_DIR/nats.addr while it runs) and the HTTP fallback
(HTTP_ADDR), and writes profile-sync commands to DATABASE_URL. Admin API,
health and metrics on ADMIN_ADDR. Configuration comes from the environment;
see README.md, "Configuration". Logs go to stderr.
`

func serveCommand(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newCommandFlags("serve", serveUsage)
	if err := fs.parseNoArgs(args, stdout); err != nil {
		return err
	}
	cfg, err := loadConfig(getenv)
	if err != nil {
		return err
	}
	logger := newLogger(cfg, stderr)
	gogc := getenv("GOGC")
	if gogc == "" {
		// The live heap is small (tens of MB with MAX_IN_FLIGHT messages in
		// flight) and every message allocates: at Go's default of 100 the
		// collector took a fifth of the router's CPU draining a backlog.
		// 200 bought ~10% more events/s for ~15 MB more peak RSS (400: a
		// little more speed, but a peak near 140 MB). A GOGC (or
		// GOMEMLIMIT) in the environment wins.
		debug.SetGCPercent(defaultGOGC)
		gogc = strconv.Itoa(defaultGOGC) + " (router default)"
	}
	memLimit := getenv("GOMEMLIMIT")
	if memLimit == "" {
		// At GOGC=200 the heap grows to three times what is live before a
		// collection; with a backlog of large messages, where what is live
		// is mostly the MAX_IN_FLIGHT_BYTES held and every message handed
		// back is garbage, that is past a 256 Mi pod. The soft limit makes
		// the collector work harder only then (see Config.MemoryLimit).
		debug.SetMemoryLimit(cfg.MemoryLimit())
		memLimit = strconv.FormatInt(cfg.MemoryLimit(), 10) + " (router default)"
	}
	logger.Info("starting", "version", versionString(), "config", cfg, "gogc", gogc, "gomemlimit", memLimit)
	if err := serve(ctx, cfg, logger); err != nil {
		logger.Error("stopped with error", "error", err)
		return err
	}
	logger.Info("stopped")
	return nil
}

// defaultGOGC is the garbage collector's target the router sets when GOGC
// is not in the environment.
const defaultGOGC = 200

// serve runs the router until ctx is cancelled. It reads top to bottom:
// database → broker → stream and consumer → handlers and middleware →
// Watermill router → HTTP servers → run, all under one errgroup.
func serve(ctx context.Context, cfg configs.Config, logger *slog.Logger) error {
	db, err := openStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer db.Close()

	natsURL, embedded, err := brokerURL(cfg, logger)
	if err != nil {
		return err
	}
	if embedded != nil {
		defer embedded.Shutdown()
	}

	// One connection manages JetStream resources; the subscriber gets its
	// own, because closing the Watermill subscriber drains its connection.
	mgmt, err := broker.Connect(natsURL, cfg, "user-events-router", logger)
	if err != nil {
		return err
	}
	defer mgmt.Close()
	js, err := jetstream.New(mgmt)
	if err != nil {
		return err
	}
	binding, err := bindConsumer(ctx, js, mgmt, cfg, logger)
	if err != nil {
		return err
	}
	subConn, err := broker.Connect(natsURL, cfg, "user-events-router-consumer", logger)
	if err != nil {
		return err
	}
	defer subConn.Close()

	// The same dispatcher and middleware serve NATS, HTTP and replay.
	m := metrics.New(slices.Collect(maps.Keys(handlers.DefaultRegistry())))
	// Commands of concurrent handlers share transactions (group commit).
	committer, err := db.GroupCommitter(store.GroupOptions{
		MaxBatch: cfg.CommitBatchMax, MaxWait: cfg.CommitBatchWait, Workers: cfg.CommitWorkers,
		Timeout: cfg.HandlerTimeout, Committed: m.Committed, Logger: logger.With("component", "group_commit"),
	})
	if err != nil {
		return err
	}
	// Deferred before the router is built, so it closes after the router
	// (and the HTTP servers) have stopped handing it commands.
	defer committer.Close()
	// A registration the ledger cannot decide yet (VerdictHold) is handed
	// back while an earlier message is unacked, for as many deliveries as
	// the redelivery delays take to add up to the ack wait: by then any
	// message a crashed process held has been delivered again.
	hold := holdOptions(js, binding, cfg)
	h, err := buildHandling(cfg, db, committer, binding.MaxDeliver, &hold, m, logger)
	if err != nil {
		return err
	}
	r, err := router.New(router.Options{
		Config:     cfg,
		Binding:    binding,
		Conn:       subConn,
		Logger:     logger,
		Handle:     h.dispatcher.Handle,
		Middleware: h.chain,
		OnAck:      m.Acked,
	})
	if err != nil {
		return err
	}

	// Listeners open up front: a taken port fails the start, not later.
	ingressLn, err := listen("HTTP_ADDR", cfg.HTTPAddr)
	if err != nil {
		return err
	}
	defer ingressLn.Close()
	adminLn, err := listen("ADMIN_ADDR", cfg.AdminAddr)
	if err != nil {
		return err
	}
	defer adminLn.Close()

	// Readiness, /status and the consumer's gauges come from background
	// checks, so a NATS outage neither fails /readyz (the HTTP fallback
	// is needed then) nor slows a scrape.
	health, err := admin.NewHealth(admin.HealthOptions{
		DB: db, JetStream: js, Binding: binding, ConsumerConn: subConn, Router: r,
		Embedded: embedded, IngressAddr: ingressLn.Addr().String(), Logger: logger,
	})
	if err != nil {
		return err
	}
	m.AddRouter(r.Router)
	addGauges(m, db, health, logger)
	m.AddGauge("messages_in_flight", "JetStream messages being handled by this process (handed out, not yet acked or nacked).",
		func(context.Context) (float64, error) { return float64(r.InFlight()), nil }, logger)
	m.AddGauge("messages_in_flight_bytes", "Bytes of those messages (bounded by MAX_IN_FLIGHT_BYTES on a durable that redelivers without limit).",
		func(context.Context) (float64, error) { return float64(r.InFlightBytes()), nil }, logger)

	ingressHandler, err := ingress.NewHandler(ingress.Options{
		Pipeline:     h.pipeline,
		Poison:       db,
		MaxBodyBytes: int64(cfg.IngressMaxBody),
		Token:        cfg.IngressToken,
		Logger:       logger,
	})
	if err != nil {
		return err
	}
	adminHandler, err := admin.NewHandler(admin.Options{
		DB:         db,
		Replayer:   h.replayer,
		Token:      cfg.AdminToken,
		Logger:     logger,
		ReadyFunc:  health.Ready,
		StatusFunc: health.Status,
		Metrics:    m.Handler(),
	})
	if err != nil {
		return err
	}
	ingressSrv := ingress.NewServer(cfg.HTTPAddr, m.InstrumentIngress(ingressHandler), cfg.AttemptBudget())
	adminSrv := &http.Server{Handler: adminHandler, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: cfg.AttemptBudget() + 10*time.Second, IdleTimeout: time.Minute}

	logger.Info("ready to serve", "http_ingress", ingressLn.Addr().String(), "admin", adminLn.Addr().String(),
		"stream", binding.Stream, "durable", binding.Durable, "max_deliver", binding.MaxDeliver)

	// The monolith's side in the same process (APPLY=1): its metrics join
	// the router's; /readyz stays the router's.
	var applyTarget *store.DB
	if cfg.Apply {
		target, closeTarget, err := openApplyTarget(ctx, cfg, db)
		if err != nil {
			return err
		}
		defer closeTarget()
		applyTarget = target
	}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		health.Run(gctx)
		return nil
	})
	g.Go(func() error {
		runPruner(gctx, cfg, db, logger.With("component", "prune"))
		return nil
	})
	g.Go(func() error {
		// Shutdown goes through r.Close below, which lets the messages in
		// flight finish and be acked (see router.Subscriber).
		if err := r.Run(context.WithoutCancel(gctx)); err != nil {
			return fmt.Errorf("router: %w", err)
		}
		return nil
	})
	g.Go(func() error { return serveHTTP(gctx, "ingress", ingressSrv, ingressLn, cfg.CloseTimeout) })
	g.Go(func() error { return serveHTTP(gctx, "admin", adminSrv, adminLn, cfg.CloseTimeout) })
	g.Go(func() error {
		<-gctx.Done()
		logger.Info("shutting down", "close_timeout", cfg.CloseTimeout)
		return r.Close()
	})
	if applyTarget != nil {
		g.Go(func() error {
			return apply.Run(gctx, applyOptions(cfg, db, applyTarget, logger.With("component", "apply"), m.Registry, nil))
		})
	}
	return g.Wait()
}

// handling is the one wiring of an event's handling, whichever way it
// arrived: the dispatcher, the middleware chain around it (its order is
// documented at middleware.Chain), the Pipeline that runs both for the HTTP
// fallback and replay, and the Replayer. serve and poison replay build
// theirs with buildHandling; nothing else assembles these parts.
type handling struct {
	dispatcher *handlers.Dispatcher
	chain      []message.HandlerMiddleware
	pipeline   *router.Pipeline
	replayer   *router.Replayer
}

// buildHandling wires the handling of events. committer commits the
// commands with the users' ledger; maxDeliver is the durable's (-1 when
// there is none); hold, when not nil, lets the dispatcher hold back what
// the ledger cannot decide yet (serve's first ack wait); m may be nil (the
// poison command records no metrics).
func buildHandling(cfg configs.Config, db *store.DB, committer handlers.Committer, maxDeliver int, hold *handlers.HoldOptions, m *metrics.Metrics, logger *slog.Logger) (handling, error) {
	var h handling
	dispatcher, err := handlers.NewDispatcher(handlers.DefaultRegistry(), committer, store.CommandsTopic)
	if err != nil {
		return h, err
	}
	if hold != nil {
		dispatcher = dispatcher.WithHold(*hold)
	}
	poison, err := middleware.NewPoison(db, maxDeliver)
	if err != nil {
		return h, err
	}
	opts := middleware.ChainOptions{
		Logger:               logger,
		Poison:               poison,
		RetryMax:             cfg.RetryMax,
		RetryInitialInterval: cfg.RetryInitialInterval,
		RetryMaxInterval:     cfg.RetryMaxInterval,
		HandlerTimeout:       cfg.HandlerTimeout,
	}
	if m != nil {
		opts.Observe, opts.OnRetryFunc = m.Middleware, m.Retried
	}
	chain, err := middleware.Chain(opts)
	if err != nil {
		return h, err
	}
	pipeline, err := router.NewPipeline(dispatcher, chain)
	if err != nil {
		return h, err
	}
	replayer, err := router.NewReplayer(db, pipeline)
	if err != nil {
		return h, err
	}
	return handling{dispatcher: dispatcher, chain: chain, pipeline: pipeline, replayer: replayer}, nil
}

// addGauges registers the values read at scrape time: the poison queue's
// depth (a COUNT query), and readiness and the consumer's state as health
// last checked them (no broker request at scrape time, so the consumer
// gauges stay, with their age, through a NATS outage).
func addGauges(m *metrics.Metrics, db *store.DB, health *admin.Health, logger *slog.Logger) {
	m.AddGauge("poison_queue_depth", "Entries in the poison queue.", func(ctx context.Context) (float64, error) {
		n, err := db.CountPoison(ctx)
		return float64(n), err
	}, logger)
	m.AddGauge("ready", "1 while /readyz answers 200: the database takes inserts into every table the router writes (NATS not included).",
		func(ctx context.Context) (float64, error) { return boolGauge(health.Ready(ctx) == nil), nil }, logger)
	m.AddGauge("consumer_up", "1 while the consumer connection is up and the durable, as last read (consumer_info_age_seconds ago), has a bound subscriber.",
		func(context.Context) (float64, error) {
			return boolGauge(health.Consumer().State == admin.StateOK), nil
		}, logger)
	// The durable's own figures, from the broker's last answer.
	durable := func(read func(*admin.DurableInfo) float64) metrics.GaugeSource {
		return func(context.Context) (float64, error) {
			info := health.Consumer().Info
			if info == nil {
				return 0, metrics.ErrNoValue
			}
			return read(info), nil
		}
	}
	m.AddGauge("consumer_info_age_seconds", fmt.Sprintf("Age of the consumer_* figures: seconds since the broker last described the durable (asked every %v; more means it does not answer).", admin.DefaultCheckInterval),
		durable(func(i *admin.DurableInfo) float64 { return i.AgeSeconds }), logger)
	m.AddGauge("consumer_pending_messages", "Messages in the stream not yet delivered to the durable (as of consumer_info_age_seconds ago).",
		durable(func(i *admin.DurableInfo) float64 { return float64(i.Pending) }), logger)
	m.AddGauge("consumer_ack_pending_messages", "Messages delivered to the durable and not yet acknowledged (as of consumer_info_age_seconds ago).",
		durable(func(i *admin.DurableInfo) float64 { return float64(i.AckPending) }), logger)
	// The stream's redundancy, from its last read (every
	// admin.DefaultRedundancyInterval): weaker than its cluster while
	// stream_replicas < 3 <= stream_cluster_servers (broker.Redundancy).
	redundancy := func(read func(*broker.Redundancy) (float64, bool)) metrics.GaugeSource {
		return func(context.Context) (float64, error) {
			r, _ := health.Redundancy()
			if r == nil {
				return 0, metrics.ErrNoValue
			}
			v, ok := read(r)
			if !ok {
				return 0, metrics.ErrNoValue
			}
			return v, nil
		}
	}
	m.AddGauge("stream_replicas", fmt.Sprintf("Replicas of the stream in its configuration, as last read (every %v); the Auth Service sets 1 on every start.", admin.DefaultRedundancyInterval),
		redundancy(func(r *broker.Redundancy) (float64, bool) { return float64(r.Replicas), true }), logger)
	m.AddGauge("stream_cluster_servers", fmt.Sprintf("JetStream servers of the stream's cluster that answered the account's STATZ ping, as last read (every %v); 1 when the server is not clustered; absent when they cannot be counted.", admin.DefaultRedundancyInterval),
		redundancy(func(r *broker.Redundancy) (float64, bool) { return float64(r.Servers), r.Servers > 0 }), logger)
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func listen(name, addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s=%s: %w", name, addr, err)
	}
	return ln, nil
}

// serveHTTP serves until ctx ends, then shuts down gracefully: in-flight
// requests finish (an ingress request answers only after its commit).
func serveHTTP(ctx context.Context, name string, srv *http.Server, ln net.Listener, timeout time.Duration) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("%s server: %w", name, err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("%s server shutdown: %w", name, err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("%s server: %w", name, err)
	}
	return nil
}

func openStore(ctx context.Context, cfg configs.Config) (*store.DB, error) {
	url := cfg.DatabaseURLOrDefault()
	if cfg.DatabaseURL == "" {
		if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
			return nil, fmt.Errorf("DATA_DIR=%q: %w", cfg.DataDir, err)
		}
	}
	db, err := store.Open(ctx, url)
	if err != nil {
		return nil, err
	}
	if err := db.InitSchema(ctx, store.Topics()...); err != nil {
		db.Close()
		return nil, fmt.Errorf("create tables: %w", err)
	}
	return db, nil
}

// brokerURL is NATS_URL, or the URL of an embedded server started here
// (then returned too; nil with NATS_URL), recorded in DATA_DIR (see
// broker.AddrFileName) until it shuts down.
func brokerURL(cfg configs.Config, logger *slog.Logger) (string, *broker.EmbeddedServer, error) {
	if cfg.NATSURL != "" {
		return cfg.NATSURL, nil, nil
	}
	dir := filepath.Join(cfg.DataDir, "nats")
	srv, err := broker.StartEmbedded(cfg.NATSListen, dir, logger)
	if err != nil {
		return "", nil, err
	}
	// publish and check in another shell find it through this file.
	addrFile := filepath.Join(cfg.DataDir, broker.AddrFileName)
	if err := srv.RecordAddr(addrFile); err != nil {
		srv.Shutdown()
		return "", nil, err
	}
	logger.Info("embedded NATS server started", "url", srv.ClientURL(), "store_dir", dir, "addr_file", addrFile)
	return srv.ClientURL(), srv, nil
}

func bindConsumer(ctx context.Context, js jetstream.JetStream, nc *nats.Conn, cfg configs.Config, logger *slog.Logger) (broker.Binding, error) {
	if _, err := broker.EnsureStream(ctx, js, cfg.Stream, logger); err != nil {
		if errors.Is(err, jetstream.ErrJetStreamNotEnabled) {
			return broker.Binding{}, fmt.Errorf("NATS at %s has no JetStream: start it with -js: %w", redact.URL(nc.ConnectedUrl()), err)
		}
		return broker.Binding{}, err
	}
	return broker.EnsureConsumer(ctx, js, cfg, logger)
}

// earlierUnacked asks the broker whether the durable has acked every
// message before seq (its ack floor). Only in this process's first ack
// wait (and 5 s) does it ask at all: what a crashed predecessor held comes
// back within one ack wait of its death, so after that an unacked earlier
// message is one being handled (here or by a replica) and is no reason to
// hold. When the broker cannot tell, it says yes: a hold is bounded anyway.
func earlierUnacked(js jetstream.JetStream, b broker.Binding) func(ctx context.Context, seq uint64) bool {
	window := time.Now().Add(b.AckWait + 5*time.Second)
	return func(ctx context.Context, seq uint64) bool {
		if time.Now().After(window) {
			return false
		}
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		info, err := broker.ConsumerInfo(ctx, js, b)
		if err != nil {
			return true
		}
		return info.AckFloor.Stream+1 < seq
	}
}

// holdOptions: on the router's own durable (unlimited deliveries) a held
// registration comes back with the usual delays until they add up to the
// ack wait; on a durable with few deliveries (the monolith's 3) it is held
// once, for the ack wait and a second, keeping two real tries; with fewer
// than 3 it is not held (a held message must not reach its last delivery
// untried).
func holdOptions(js jetstream.JetStream, b broker.Binding, cfg configs.Config) handlers.HoldOptions {
	o := handlers.HoldOptions{EarlierUnacked: earlierUnacked(js, b), MaxDeliver: b.MaxDeliver}
	switch {
	case b.MaxDeliver < 0:
		o.MaxHolds = holdsForAckWait(consume.Backoff{First: cfg.NakDelay, Max: cfg.NakDelayMax}, b.AckWait)
	case b.MaxDeliver >= 3:
		o.MaxHolds, o.Delay = 1, b.AckWait+time.Second
	default:
		o.EarlierUnacked = nil
	}
	return o
}

// holdsForAckWait is how many deliveries the redelivery delays take to add
// up to more than the ack wait (at least 1, at most 20).
func holdsForAckWait(b consume.Backoff, ackWait time.Duration) uint64 {
	if b.First <= 0 {
		return 1 // immediate redeliveries would wait for nothing
	}
	var total time.Duration
	for n := uint64(1); n <= 20; n++ {
		total += b.WaitTime(n)
		if total > ackWait {
			return n
		}
	}
	return 20
}
