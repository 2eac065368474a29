// Command bench measures the router the way it runs in production: it
// publishes a backlog of user events to JetStream the way the Auth Service
// does, starts the real router binary against it, and reports how fast the
// backlog drains, the handler latency, the router's peak memory and where
// the machine's time went, after checking that every event became exactly
// one command and the stream is empty.
//
//	go run ./bench -db postgres -n 200000 -baseline
//	go run ./bench -db sqlite -paced-rate 1000 -paced-duration 20s
//	go run ./bench -db postgres -poison 200000   # the poison queue at size
//
// A correctness failure exits with status 1, bad flags with status 2.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/social/user-events-router/schema"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	var usage usageError
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
		os.Exit(2)
	case errors.As(err, &usage):
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// usageError is a bad flag or flag combination (exit status 2).
type usageError struct{ error }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// Options is one benchmark run.
type Options struct {
	// Backend is sqlite, postgres or mysql.
	Backend string
	// DatabaseURL is the server (postgres/mysql) in which an isolated
	// database bench_<random> is created, or the SQLite file to create.
	DatabaseURL string
	// NATSURL is an external JetStream server; empty starts one in process.
	NATSURL string
	// N is the backlog size (backlog mode).
	N int
	// BodyBytes pads each event with an unknown field to this many bytes
	// (0: the Auth Service's size, about 250). Over schema.MaxEventBytes
	// the router poisons every event, keeping its bytes (see OverLimit).
	BodyBytes int
	// PacedRate and PacedDuration select paced mode when PacedRate > 0.
	PacedRate     float64
	PacedDuration time.Duration
	// MaxInFlight and MaxAckPending are passed to the router as MAX_IN_FLIGHT
	// and NATS_MAX_ACK_PENDING when set (0 keeps the router's default).
	MaxInFlight   int
	MaxAckPending int
	// Env is more router configuration, KEY=VALUE.
	Env []string
	// Baseline runs the hand-written pipelines first (backlog mode only):
	// the multi-row one, and on PostgreSQL the COPY one.
	Baseline bool
	// Keep leaves the database, the NATS store and the router's log behind.
	Keep bool
	// RouterBin is a prebuilt router binary; empty builds the module root.
	RouterBin string
	// Timeout bounds the wait for the drain (or for the paced tail).
	Timeout time.Duration
	// PerfOut, when set, records a CPU profile of the router with perf(1)
	// while it drains.
	PerfOut string
	// JSON prints the report as JSON.
	JSON bool
	// Poison, when above 0, selects poison mode: seed that many poison
	// entries and time the queue's commands and API (see RunPoison).
	Poison int
	// Progress receives progress lines; nil discards them.
	Progress io.Writer
}

// OverLimit reports whether the events are larger than the router takes
// (schema.MaxEventBytes, DESIGN §3 "Sizes"): each is then poisoned with its
// bytes kept, and the run measures that path instead of commits.
func (o Options) OverLimit() bool { return o.BodyBytes > schema.MaxEventBytes }

// Paced reports whether this is a paced run.
func (o Options) Paced() bool { return o.PacedRate > 0 }

// Events is how many events the run publishes.
func (o Options) Events() int {
	if o.Paced() {
		return int(o.PacedRate * o.PacedDuration.Seconds())
	}
	return o.N
}

func (o Options) validate() error {
	var errs []error
	switch o.Backend {
	case "sqlite", "postgres", "mysql":
	default:
		errs = append(errs, fmt.Errorf("-db=%q: must be sqlite, postgres or mysql", o.Backend))
	}
	if !o.Paced() && o.N < 1 {
		errs = append(errs, fmt.Errorf("-n=%d: must be at least 1", o.N))
	}
	if o.BodyBytes != 0 && (o.BodyBytes < minBodyBytes || o.BodyBytes > maxBodyBytes) {
		errs = append(errs, fmt.Errorf("-body-bytes=%d: must be 0 (the Auth Service's size) or between %d and %d (NATS's max payload)", o.BodyBytes, minBodyBytes, maxBodyBytes))
	}
	if o.OverLimit() && (o.Paced() || o.Baseline) {
		errs = append(errs, fmt.Errorf("-body-bytes=%d: over the event limit (%d bytes) every event is poisoned, which only a backlog run measures (not with -paced-rate or -baseline)", o.BodyBytes, schema.MaxEventBytes))
	}
	if o.PacedRate < 0 {
		errs = append(errs, fmt.Errorf("-paced-rate=%v: must not be negative", o.PacedRate))
	}
	if o.Paced() && o.Events() < 1 {
		errs = append(errs, fmt.Errorf("-paced-rate=%v × -paced-duration=%v: publishes no event", o.PacedRate, o.PacedDuration))
	}
	if o.Poison < 0 {
		errs = append(errs, fmt.Errorf("-poison=%d: must not be negative", o.Poison))
	}
	if o.Poison > 0 && (o.Paced() || o.Baseline || o.PerfOut != "") {
		errs = append(errs, errors.New("-poison: a mode of its own; not with -paced-rate, -baseline or -perf"))
	}
	if o.Paced() && o.Baseline {
		errs = append(errs, errors.New("-baseline: only with a backlog (not with -paced-rate)"))
	}
	if o.MaxInFlight < 0 || o.MaxAckPending < 0 {
		errs = append(errs, errors.New("-max-in-flight and -max-ack-pending: must not be negative"))
	}
	for _, kv := range o.Env {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			errs = append(errs, fmt.Errorf("-env %q: want KEY=VALUE", kv))
		}
	}
	if o.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("-timeout=%v: must be positive", o.Timeout))
	}
	if len(errs) > 0 {
		return usageError{errors.Join(errs...)}
	}
	return nil
}

// envFlag collects repeated -env KEY=VALUE flags.
type envFlag []string

func (e *envFlag) String() string     { return strings.Join(*e, " ") }
func (e *envFlag) Set(v string) error { *e = append(*e, v); return nil }

func parseFlags(args []string, stderr io.Writer) (Options, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o Options
	var env envFlag
	fs.StringVar(&o.Backend, "db", "sqlite", "database backend: sqlite, postgres or mysql")
	fs.StringVar(&o.DatabaseURL, "database-url", "", "postgres://… or mysql://… server to create the isolated database bench_<random> in (default: $TEST_POSTGRES_URL / $TEST_MYSQL_URL, else the local test server); or sqlite:PATH of a file to create")
	fs.StringVar(&o.NATSURL, "nats", "", "external JetStream server (default: start one in process); its USER_EVENTS stream must be absent or empty and unused")
	fs.IntVar(&o.N, "n", 200000, "backlog size (events published before the router starts)")
	fs.IntVar(&o.BodyBytes, "body-bytes", 0, "pad each event to this many bytes with an unknown field (0 = the Auth Service's size); over the 64 KiB event limit the router poisons every event with its bytes kept, and the run measures that path (e.g. -body-bytes 1048576 -n 1000)")
	fs.Float64Var(&o.PacedRate, "paced-rate", 0, "paced mode: publish this many events per second while the router runs")
	fs.DurationVar(&o.PacedDuration, "paced-duration", 20*time.Second, "paced mode: how long to publish")
	fs.IntVar(&o.MaxInFlight, "max-in-flight", 0, "MAX_IN_FLIGHT for the router (0 = its default)")
	fs.IntVar(&o.MaxAckPending, "max-ack-pending", 0, "NATS_MAX_ACK_PENDING for the router (0 = its default)")
	fs.Var(&env, "env", "more router configuration, KEY=VALUE (repeatable)")
	fs.BoolVar(&o.Baseline, "baseline", false, "first drain copies of the backlog with hand-written pipelines (pull fetch 1,000 → one multi-row insert-if-absent; on PostgreSQL a COPY; and one that also locks and writes a ledger row per user, as the router must → commit → ack) and report the per-event cost of each and the router's ratios")
	fs.BoolVar(&o.Keep, "keep", false, "keep the database, NATS store and router log")
	fs.StringVar(&o.RouterBin, "router-bin", "", "prebuilt router binary (default: go build the module root)")
	fs.DurationVar(&o.Timeout, "timeout", 10*time.Minute, "give up waiting for the drain after this long")
	fs.StringVar(&o.PerfOut, "perf", "", "record a CPU profile of the router with perf(1) into this file while it drains")
	fs.BoolVar(&o.JSON, "json", false, "print the report as JSON")
	fs.IntVar(&o.Poison, "poison", 0, "poison mode: seed this many poison entries, then time poison list/stats/delete --all and the admin API's pages, and watch the router's RSS (-n, -paced-* and -baseline do not apply)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return o, err
		}
		return o, usageError{err}
	}
	if fs.NArg() > 0 {
		return o, usagef("unexpected argument %q", fs.Arg(0))
	}
	o.Env = env
	return o, o.validate()
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	o.Progress = stderr
	if o.Poison > 0 {
		rep, err := RunPoison(ctx, o)
		if err != nil {
			return err
		}
		if o.JSON {
			if err := rep.WriteJSON(stdout); err != nil {
				return err
			}
		} else {
			rep.WriteText(stdout)
		}
		if failed := rep.Failed(); len(failed) > 0 {
			return fmt.Errorf("check failed: %s", strings.Join(failed, "; "))
		}
		return nil
	}
	rep, err := Run(ctx, o)
	if err != nil {
		return err
	}
	if o.JSON {
		if err := rep.WriteJSON(stdout); err != nil {
			return err
		}
	} else {
		rep.WriteText(stdout)
	}
	if failed := rep.Failed(); len(failed) > 0 {
		return fmt.Errorf("correctness check failed: %s", strings.Join(failed, "; "))
	}
	return nil
}
