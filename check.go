package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/social/user-events-router/redact"
	"github.com/social/user-events-router/router"
	"github.com/social/user-events-router/store"
)

const checkUsage = `usage: user-events-router check

Checks the configuration, the database (its tables take an insert, rolled
back) and the broker (NATS_URL). Changes no data. Exit 0 when all is well,
1 on a problem, 2 on a bad configuration.
`

// checkCommand is the deployment's pre-flight: it validates the
// configuration, reaches the database and proves its tables writable the
// way /readyz does, reaches the broker (when NATS_URL is set), and reports
// the stream and consumer it would use. It changes no data: the write
// probe is rolled back (see store.DB.ProbeWritable for what that costs).
func checkCommand(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newCommandFlags("check", checkUsage)
	if err := fs.parseNoArgs(args, stdout); err != nil {
		return err
	}
	cfg, err := loadConfig(getenv)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	fmt.Fprintln(stdout, "config: ok")

	db, err := store.Open(ctx, cfg.DatabaseURLOrDefault())
	if err != nil {
		return fmt.Errorf("database: %w", err)
	}
	defer db.Close()
	fmt.Fprintf(stdout, "database: reachable (%s, %s)\n", db.Dialect, redact.URL(cfg.DatabaseURLOrDefault()))
	if err := checkTables(ctx, db, stdout); err != nil {
		return err
	}

	if cfg.NATSURL == "" {
		fmt.Fprintf(stdout, "nats: embedded server on %s (started by serve)\n", cfg.NATSListen)
		return nil
	}
	nc, err := router.Connect(cfg.NATSURL, cfg, "user-events-router-check", newLogger(cfg, stderr))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	s, err := js.Stream(ctx, cfg.Stream)
	if err != nil {
		return fmt.Errorf("nats: stream %s: %w", cfg.Stream, err)
	}
	info := s.CachedInfo()
	fmt.Fprintf(stdout, "nats: ok (%s), stream %s: %d messages, retention %v\n", redact.URL(nc.ConnectedUrl()), cfg.Stream, info.State.Msgs, info.Config.Retention)
	c, err := js.PushConsumer(ctx, cfg.Stream, cfg.Durable)
	if err != nil {
		fmt.Fprintf(stdout, "consumer %s: absent (serve creates it): %v\n", cfg.Durable, err)
		return nil
	}
	ci := c.CachedInfo()
	fmt.Fprintf(stdout, "consumer %s: pending %d, ack pending %d, max deliver %d, ack wait %v\n", cfg.Durable, ci.NumPending, ci.NumAckPending, ci.Config.MaxDeliver, ci.Config.AckWait)
	return nil
}

// checkTables reports the tables serve writes. Absent ones are no problem
// for a pre-flight (serve creates them when it starts); present ones must
// take the router's inserts, which is what /readyz asks of them too.
func checkTables(ctx context.Context, db *store.DB, stdout io.Writer) error {
	absent, err := db.AbsentTables(ctx)
	if err != nil {
		return fmt.Errorf("database: %w", err)
	}
	if len(absent) > 0 {
		fmt.Fprintf(stdout, "tables: %s absent (serve creates them when it starts; a router already running answers /readyz 503 until it restarts)\n", strings.Join(absent, ", "))
		return nil
	}
	if err := db.ProbeWritable(ctx); err != nil {
		return fmt.Errorf("database: not writable: %w", err)
	}
	fmt.Fprintf(stdout, "tables: writable (%s; probe inserts rolled back)\n", strings.Join(db.WrittenTables(), ", "))
	return nil
}
