package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/social/user-events-router/configs"
	"github.com/social/user-events-router/redact"
	"github.com/social/user-events-router/router"
	"github.com/social/user-events-router/store"
)

const checkUsage = `usage: user-events-router check

Checks the configuration, the database (its tables take an insert, rolled
back) and the broker: NATS_URL, or the embedded server a running serve
recorded in DATA_DIR/nats.addr (said so when reached), or else whether
serve could start one on NATS_LISTEN. Changes no data. Exit 0 when all is
well, 1 on a problem, 2 on a bad configuration.
`

// checkCommand is the deployment's pre-flight: it validates the
// configuration, reaches the database and proves its tables writable the
// way /readyz does, reaches the broker (NATS_URL, or the embedded server a
// running serve recorded in DATA_DIR; else it says whether serve could
// start one on NATS_LISTEN), and reports the stream and consumer it would
// use. It changes no data: the write probe is rolled back (see
// store.DB.ProbeWritable for what that costs).
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

	broker, err := findBroker(cfg)
	if err != nil {
		return err
	}
	if broker.Source == fromNATSListen {
		return checkListen(cfg, broker, stdout)
	}
	nc, err := router.Connect(broker.URL, cfg, "user-events-router-check", newLogger(cfg, stderr))
	if err != nil {
		if broker.Source == fromAddrFile {
			// serve died without removing the file; it starts afresh.
			fmt.Fprintf(stdout, "nats: embedded server recorded in %s (%s) does not answer: serve is not running (the file outlived it); serve starts one on %s\n", broker.AddrFile, broker.URL, cfg.NATSListen)
			return nil
		}
		return err
	}
	defer nc.Close()
	if broker.Source == fromAddrFile {
		if name := nc.ConnectedServerName(); name != router.EmbeddedServerName {
			return fmt.Errorf("nats: %s, recorded in %s, is answered by server %q, not a router's embedded server: remove the stale file", broker.URL, broker.AddrFile, name)
		}
		fmt.Fprintf(stdout, "nats: embedded server of the running serve reached (%s, recorded in %s)\n", broker.URL, broker.AddrFile)
	}
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

// checkListen reports the embedded server serve would start when none runs
// with this DATA_DIR: NATS_LISTEN must be free for it, and whatever answers
// there is not it.
func checkListen(cfg configs.Config, broker brokerTarget, stdout io.Writer) error {
	conn, err := net.DialTimeout("tcp", cfg.NATSListen, time.Second)
	if err != nil {
		fmt.Fprintf(stdout, "nats: embedded (NATS_URL unset); none running with this DATA_DIR (no %s): serve starts one on %s\n", broker.AddrFile, cfg.NATSListen)
		return nil
	}
	conn.Close()
	return fmt.Errorf("nats: NATS_URL unset and no embedded server recorded in %s, but %s (NATS_LISTEN) answers: another server (or a router with another DATA_DIR) listens there, so serve cannot; set NATS_URL=nats://%s to use it, NATS_LISTEN to a free port, or DATA_DIR to the running router's", broker.AddrFile, cfg.NATSListen, cfg.NATSListen)
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
