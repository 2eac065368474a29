package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"

	"github.com/social/user-events-router/apply"
	"github.com/social/user-events-router/configs"
	"github.com/social/user-events-router/store"
)

const applyUsage = `usage: user-events-router apply

Keeps the monolith's tables user_identities and user_profiles (in
APPLY_DATABASE_URL, default DATABASE_URL) equal to the Auth Service's users
by applying the router's commands, as the watermill-sql consumer group
APPLY_CONSUMER_GROUP. Health and metrics on APPLY_ADMIN_ADDR. Configuration
comes from the environment; see README.md, "Applying commands".
`

func applyCommand(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newCommandFlags("apply", applyUsage)
	if err := fs.parseNoArgs(args, stdout); err != nil {
		return err
	}
	cfg, err := loadConfig(getenv)
	if err != nil {
		return err
	}
	logger := newLogger(cfg, stderr)
	logger.Info("starting apply", "version", versionString(), "config", cfg)

	commands, err := openStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer commands.Close()
	target, closeTarget, err := openApplyTarget(ctx, cfg, commands)
	if err != nil {
		return err
	}
	defer closeTarget()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	ln, err := listen("APPLY_ADMIN_ADDR", cfg.ApplyAdminAddr)
	if err != nil {
		return err
	}
	defer ln.Close()
	running := make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-running:
		default:
			http.Error(w, "apply is starting", http.StatusServiceUnavailable)
			return
		}
		rctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := applyReady(rctx, commands, target); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, WriteTimeout: 10 * time.Second}
	logger.Info("apply admin listening", "apply_admin", ln.Addr().String())

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		return apply.Run(gctx, applyOptions(cfg, commands, target, logger, reg, func() { close(running) }))
	})
	g.Go(func() error { return serveHTTP(gctx, "apply admin", srv, ln, cfg.CloseTimeout) })
	err = g.Wait()
	if err != nil {
		logger.Error("apply stopped with error", "error", err)
		return err
	}
	logger.Info("apply stopped")
	return nil
}

// applyOptions is the one way serve and apply configure the applier.
func applyOptions(cfg configs.Config, commands, target *store.DB, logger *slog.Logger, reg prometheus.Registerer, ready func()) apply.Options {
	return apply.Options{
		Commands: commands, Target: target, ConsumerGroup: cfg.ApplyConsumerGroup,
		Logger: logger, Registerer: reg, CloseTimeout: cfg.CloseTimeout, Ready: ready,
	}
}

// openApplyTarget opens the monolith's database: the commands database
// itself unless APPLY_DATABASE_URL names another.
func openApplyTarget(ctx context.Context, cfg configs.Config, commands *store.DB) (*store.DB, func(), error) {
	if cfg.ApplyDatabaseURL == "" || cfg.ApplyDatabaseURL == cfg.DatabaseURLOrDefault() {
		return commands, func() {}, nil
	}
	db, err := store.Open(ctx, cfg.ApplyDatabaseURL)
	if err != nil {
		return nil, nil, fmt.Errorf("APPLY_DATABASE_URL: %w", err)
	}
	return db, func() { _ = db.Close() }, nil
}

// applyReady: both databases answer and the monolith's tables are there.
func applyReady(ctx context.Context, commands, target *store.DB) error {
	if err := commands.Ping(ctx); err != nil {
		return fmt.Errorf("commands database: %w", err)
	}
	for _, table := range []string{apply.IdentitiesTable, apply.ProfilesTable} {
		var n int
		if err := target.SQL.QueryRowContext(ctx, "SELECT count(*) FROM "+table+" WHERE 1 = 0").Scan(&n); err != nil {
			return fmt.Errorf("monolith database: table %s: %w", table, err)
		}
	}
	return nil
}
