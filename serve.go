package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/social/user-events-router/configs"
	"github.com/social/user-events-router/handlers"
	"github.com/social/user-events-router/middleware"
	"github.com/social/user-events-router/router"
	"github.com/social/user-events-router/store"
)

func serveCommand(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	if len(args) > 0 {
		return usagef("serve takes no arguments (configuration is read from the environment), got %q", args[0])
	}
	cfg, err := loadConfig(getenv)
	if err != nil {
		return err
	}
	logger := newLogger(cfg, stderr)
	logger.Info("starting", "version", versionString(), "config", cfg)
	if err := serve(ctx, cfg, logger); err != nil {
		logger.Error("stopped with error", "error", err)
		return err
	}
	logger.Info("stopped")
	return nil
}

// serve runs the router until ctx is cancelled. It reads top to bottom:
// database → broker → stream and consumer → router → run.
func serve(ctx context.Context, cfg configs.Config, logger *slog.Logger) error {
	db, err := openStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer db.Close()

	natsURL, stopNATS, err := brokerURL(cfg, logger)
	if err != nil {
		return err
	}
	defer stopNATS()

	// One connection manages JetStream resources; the subscriber gets its
	// own, because closing the Watermill subscriber drains its connection.
	mgmt, err := router.Connect(natsURL, cfg, "user-events-router", logger)
	if err != nil {
		return err
	}
	defer mgmt.Close()
	binding, err := bindConsumer(ctx, mgmt, cfg, logger)
	if err != nil {
		return err
	}
	subConn, err := router.Connect(natsURL, cfg, "user-events-router-consumer", logger)
	if err != nil {
		return err
	}
	defer subConn.Close()

	publisher, err := db.Publisher(watermill.NewSlogLogger(logger.With("component", "sql-publisher")))
	if err != nil {
		return fmt.Errorf("sql publisher: %w", err)
	}
	dispatcher, err := handlers.NewDispatcher(handlers.DefaultRegistry(), publisher, store.CommandsTopic)
	if err != nil {
		return err
	}
	chain, err := middlewareChain(cfg, db, binding.MaxDeliver, logger)
	if err != nil {
		return err
	}
	r, err := router.New(router.Options{
		Config:     cfg,
		Binding:    binding,
		Conn:       subConn,
		Logger:     logger,
		Handle:     dispatcher.Handle,
		Middleware: chain,
	})
	if err != nil {
		return err
	}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := r.Run(gctx); err != nil {
			return fmt.Errorf("router: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		logger.Info("shutting down", "close_timeout", cfg.CloseTimeout)
		return r.Close()
	})
	return g.Wait()
}

// middlewareChain is the one chain every event passes through, whichever
// way it arrived; the order is documented at middleware.Chain.
func middlewareChain(cfg configs.Config, db *store.DB, maxDeliver int, logger *slog.Logger) ([]message.HandlerMiddleware, error) {
	poison, err := middleware.NewPoison(db, maxDeliver)
	if err != nil {
		return nil, err
	}
	return middleware.Chain(middleware.ChainOptions{
		Logger:               logger,
		Poison:               poison,
		RetryMax:             cfg.RetryMax,
		RetryInitialInterval: cfg.RetryInitialInterval,
		RetryMaxInterval:     cfg.RetryMaxInterval,
		HandlerTimeout:       cfg.HandlerTimeout,
	})
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
	if err := db.InitSchema(ctx, store.CommandsTopic, store.PoisonTopic); err != nil {
		db.Close()
		return nil, fmt.Errorf("create tables: %w", err)
	}
	return db, nil
}

// brokerURL is NATS_URL, or the URL of an embedded server started here.
func brokerURL(cfg configs.Config, logger *slog.Logger) (string, func(), error) {
	if cfg.NATSURL != "" {
		return cfg.NATSURL, func() {}, nil
	}
	dir := filepath.Join(cfg.DataDir, "nats")
	srv, err := router.StartEmbedded(cfg.NATSListen, dir, logger)
	if err != nil {
		return "", nil, err
	}
	logger.Info("embedded NATS server started", "url", srv.ClientURL(), "store_dir", dir)
	return srv.ClientURL(), srv.Shutdown, nil
}

func bindConsumer(ctx context.Context, nc *nats.Conn, cfg configs.Config, logger *slog.Logger) (router.Binding, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return router.Binding{}, err
	}
	if _, err := router.EnsureStream(ctx, js, cfg.Stream, logger); err != nil {
		if errors.Is(err, jetstream.ErrJetStreamNotEnabled) {
			return router.Binding{}, fmt.Errorf("NATS at %s has no JetStream: start it with -js: %w", configs.RedactURL(nc.ConnectedUrl()), err)
		}
		return router.Binding{}, err
	}
	return router.EnsureConsumer(ctx, js, cfg, logger)
}
