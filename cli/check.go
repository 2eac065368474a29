package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/social/user-events-router/configs"
	"github.com/social/user-events-router/redact"
	"github.com/social/user-events-router/router/broker"
	"github.com/social/user-events-router/store"
)

const checkUsage = `usage: user-events-router check

Checks the configuration (and warns about variables that look meant for
the router but are not its own), the database (it must exist, and its
tables take an insert, rolled back) and the broker: NATS_URL, or the
embedded server a running serve recorded in DATA_DIR/nats.addr (said so
when reached), or else whether serve could start one on NATS_LISTEN; and
what bounds the router's memory on the durable; on a NATS cluster, the
stream's replicas against the cluster's JetStream servers (a warning when
fewer than it could hold). Creates no file and no table. Exit 0 when all
is well (warnings included), 1 on a problem, 2 on a bad configuration.
`

// checkCommand is the deployment's pre-flight: it validates the
// configuration (and warns about variables that look meant for the router
// but are not its own), reaches the database and proves its tables
// writable the way /readyz does, reaches the broker (NATS_URL, or the
// embedded server a running serve recorded in DATA_DIR; else it says
// whether serve could start one on NATS_LISTEN), and reports the stream and
// consumer it would use and what bounds the router's memory on that
// consumer. It changes nothing: it creates no file and no table (a missing
// database or table is a problem it reports), and the write probe is
// rolled back (see store.DB.ProbeWritable for what that costs). environ
// lists the environment's variables.
func checkCommand(ctx context.Context, args []string, getenv func(string) string, environ func() []string, stdout, stderr io.Writer) error {
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
	var names []string
	for _, kv := range environ() {
		if name, _, _ := strings.Cut(kv, "="); getenv(name) != "" {
			names = append(names, name)
		}
	}
	for _, w := range configs.UnknownVariables(names) {
		fmt.Fprintln(stdout, "warning:", w)
	}

	// Every problem is reported; the broker is checked even when the
	// database is not there yet.
	var problems []error
	if err := checkDatabase(ctx, cfg, stdout); err != nil {
		problems = append(problems, err)
	}
	if err := checkBroker(ctx, cfg, stdout, stderr); err != nil {
		problems = append(problems, err)
	}
	return errors.Join(problems...)
}

// checkDatabase opens the database without creating it and checks the
// tables serve writes: each must exist and take the router's inserts,
// which is what /readyz asks of them too.
func checkDatabase(ctx context.Context, cfg configs.Config, stdout io.Writer) error {
	db, err := store.OpenExisting(ctx, cfg.DatabaseURLOrDefault())
	if err != nil {
		return fmt.Errorf("database: %w", err)
	}
	defer db.Close()
	fmt.Fprintf(stdout, "database: reachable (%s, %s)\n", db.Dialect, redact.URL(cfg.DatabaseURLOrDefault()))
	if err := requireTables(ctx, db); err != nil {
		return err
	}
	if err := db.ProbeWritable(ctx); err != nil {
		return fmt.Errorf("database: not writable: %w", err)
	}
	fmt.Fprintf(stdout, "tables: writable (%s; probe inserts rolled back)\n", strings.Join(db.WrittenTables(), ", "))
	return nil
}

// requireTables fails, naming them, when tables the router writes are
// absent: serve creates them when it starts, and a router already running
// answers /readyz 503 until it is restarted.
func requireTables(ctx context.Context, db *store.DB) error {
	absent, err := db.AbsentTables(ctx)
	if err != nil {
		return fmt.Errorf("database: %w", err)
	}
	if len(absent) > 0 {
		return fmt.Errorf("database: tables %s absent: start the router (serve) once on this database, which creates them (a router already running answers /readyz 503 until it restarts)", strings.Join(absent, ", "))
	}
	return nil
}

// openReadOnlyStore opens the router's database for a command that changes
// nothing (poison list and show, dry runs; see store.OpenReadOnly): no file
// or table is created, and a missing database or table is an error that
// says so.
func openReadOnlyStore(ctx context.Context, cfg configs.Config) (*store.DB, error) {
	db, err := store.OpenReadOnly(ctx, cfg.DatabaseURLOrDefault())
	if err != nil {
		if errors.Is(err, store.ErrNoDatabase) && cfg.DatabaseURL == "" {
			return nil, fmt.Errorf("%w (DATA_DIR=%q; set DATABASE_URL or DATA_DIR to where the router runs)", err, cfg.DataDir)
		}
		return nil, err
	}
	if err := requireTables(ctx, db); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// checkBroker reports the broker, the stream and the durable, and what
// bounds the router's memory on that durable (broker.MemoryBound). On a
// cluster it says how many replicas the stream has against the cluster's
// JetStream servers, and warns when fewer than it could (see
// broker.Redundancy).
func checkBroker(ctx context.Context, cfg configs.Config, stdout, stderr io.Writer) error {
	target, err := findBroker(cfg)
	if err != nil {
		return err
	}
	embeddedBound := func() error {
		durable, err := broker.EmbeddedConsumerConfig(cfg)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s (for the durable serve creates; one found in DATA_DIR is used as found)\n",
			broker.MemoryBound(cfg, broker.LimitsOf(durable, broker.EmbeddedMaxPayload)))
		return nil
	}
	if target.Source == fromNATSListen {
		if err := checkListen(cfg, target, stdout); err != nil {
			return err
		}
		return embeddedBound()
	}
	nc, err := broker.Connect(target.URL, cfg, "user-events-router-check", newLogger(cfg, stderr))
	if err != nil {
		if target.Source == fromAddrFile {
			// serve died without removing the file; it starts afresh.
			fmt.Fprintf(stdout, "nats: embedded server recorded in %s (%s) does not answer: serve is not running (the file outlived it); serve starts one on %s\n", target.AddrFile, target.URL, cfg.NATSListen)
			return embeddedBound()
		}
		return err
	}
	defer nc.Close()
	if target.Source == fromAddrFile {
		if name := nc.ConnectedServerName(); name != broker.EmbeddedServerName {
			return fmt.Errorf("nats: %s, recorded in %s, is answered by server %q, not a router's embedded server: remove the stale file", target.URL, target.AddrFile, name)
		}
		fmt.Fprintf(stdout, "nats: embedded server of the running serve reached (%s, recorded in %s)\n", target.URL, target.AddrFile)
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
	// A weaker stream than the cluster could hold is a warning, not a
	// problem: the router works on it, and no edit of the operator's lasts
	// (the Auth Service sets Replicas: 1 on every start).
	r := broker.RedundancyOf(ctx, nc, info, redundancyGather)
	switch {
	case r.Weaker():
		fmt.Fprintln(stdout, "warning:", r)
	case r.Cluster != "":
		fmt.Fprintln(stdout, r)
	}
	maxMsg := broker.MaxMessageBytes(info.Config, nc.MaxPayload())
	ci, err := broker.ReadConsumer(ctx, js, cfg.Stream, cfg.Durable)
	if err != nil {
		kind, warning, kerr := broker.ConsumerKind(cfg, nc.ConnectedServerVersion())
		if kerr != nil {
			return fmt.Errorf("consumer %s: absent, and serve cannot create it: %w", cfg.Durable, kerr)
		}
		fmt.Fprintf(stdout, "consumer %s: absent (serve creates it): %v\n", cfg.Durable, err)
		fmt.Fprintf(stdout, "consumer %s: serve would create a %s durable (NATS_CONSUMER=%s)\n", cfg.Durable, kind, cfg.Consumer)
		if warning != "" {
			fmt.Fprintf(stdout, "warning: %s\n", warning)
		}
		fmt.Fprintf(stdout, "%s (for the durable serve creates)\n", broker.MemoryBound(cfg, broker.LimitsOf(broker.ConfigFor(cfg, kind), maxMsg)))
		return nil
	}
	fmt.Fprintf(stdout, "consumer %s: pending %d, ack pending %d, max deliver %d, max ack pending %d, ack wait %v\n",
		cfg.Durable, ci.NumPending, ci.NumAckPending, ci.Config.MaxDeliver, ci.Config.MaxAckPending, ci.Config.AckWait)
	fmt.Fprintf(stdout, "consumer %s: %s\n", cfg.Durable, consumerKindOf(ci))
	fmt.Fprintln(stdout, broker.MemoryBound(cfg, broker.LimitsOf(ci.Config, maxMsg)))
	return nil
}

// redundancyGather is how long check waits for the servers of a cluster
// to answer broker.CountJetStreamServers.
const redundancyGather = 2 * time.Second

// checkListen reports the embedded server serve would start when none runs
// with this DATA_DIR: NATS_LISTEN must be free for it, and whatever answers
// there is not it.
func checkListen(cfg configs.Config, target brokerTarget, stdout io.Writer) error {
	conn, err := net.DialTimeout("tcp", cfg.NATSListen, time.Second)
	if err != nil {
		fmt.Fprintf(stdout, "nats: embedded (NATS_URL unset); none running with this DATA_DIR (no %s): serve starts one on %s\n", target.AddrFile, cfg.NATSListen)
		return nil
	}
	conn.Close()
	return fmt.Errorf("nats: NATS_URL unset and no embedded server recorded in %s, but %s (NATS_LISTEN) answers: another server (or a router with another DATA_DIR) listens there, so serve cannot; set NATS_URL=nats://%s to use it, NATS_LISTEN to a free port, or DATA_DIR to the running router's", target.AddrFile, cfg.NATSListen, cfg.NATSListen)
}

// consumerKindOf describes a durable as check prints it.
func consumerKindOf(ci *jetstream.ConsumerInfo) string {
	cc := ci.Config
	switch {
	case cc.DeliverSubject != "" && cc.DeliverGroup != "":
		return "push (deliver group " + cc.DeliverGroup + "; replicas share one user's events)"
	case cc.DeliverSubject != "":
		return "push (no deliver group: one subscriber)"
	case cc.PriorityPolicy == jetstream.PriorityPolicyPinned:
		pinned := "none pinned"
		for _, g := range ci.PriorityGroups {
			if g.PinnedClientID != "" {
				pinned = "a client pinned since " + g.PinnedTS.UTC().Format(time.RFC3339)
			}
		}
		return fmt.Sprintf("pinned pull (priority groups %v, pinned TTL %v, %s; one replica active, the others standbys)", cc.PriorityGroups, cc.PinnedTTL, pinned)
	}
	return "pull (replicas share one user's events)"
}
