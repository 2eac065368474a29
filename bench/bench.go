package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"time"

	"github.com/social/user-events-router/configs"
	"github.com/social/user-events-router/redact"
	"github.com/social/user-events-router/router"
	"github.com/social/user-events-router/schema"
	"github.com/social/user-events-router/store"
)

// Run performs one benchmark: database, broker, (baseline,) events, router,
// measurements, checks. The report is returned even when a check fails; an
// error means the run itself could not be completed.
func Run(ctx context.Context, o Options) (*Report, error) {
	progress := o.Progress
	if progress == nil {
		progress = io.Discard
	}
	say := func(format string, args ...any) { fmt.Fprintf(progress, "bench: "+format+"\n", args...) }

	tmp, err := os.MkdirTemp("", "bench-")
	if err != nil {
		return nil, err
	}
	defer func() {
		if o.Keep {
			say("kept %s (NATS store, router log, SQLite file)", tmp)
			return
		}
		_ = os.RemoveAll(tmp)
	}()

	bin := o.RouterBin
	if bin == "" {
		say("building the router")
		if bin, err = buildRouter(ctx, tmp); err != nil {
			return nil, err
		}
	}
	d, err := openDatabase(ctx, o.Backend, o.DatabaseURL, tmp)
	if err != nil {
		return nil, err
	}
	defer d.Close(ctx, o.Keep)
	b, err := startBroker(ctx, o.NATSURL, filepath.Join(tmp, "nats"))
	if err != nil {
		return nil, err
	}
	defer b.Close(ctx)
	if err := b.ensureEmptyStream(ctx); err != nil {
		return nil, err
	}
	defer b.cleanup(ctx, o.Keep)

	rep := newReport(o, d, b, bin)
	n := o.Events()
	evs := newEvents(n, o.BodyBytes)
	// What the backlog becomes: a command per event, or, for events over
	// the limit, a poison entry per event.
	outcome := commandsTable
	if o.OverLimit() {
		outcome = poisonTable
	}

	if o.Baseline {
		for _, v := range baselineVariants(d.Dialect) {
			res, err := runBaseline(ctx, b, d, evs, v, say)
			if err != nil {
				return rep, err
			}
			say("baseline %s: %.0f events/s", v.Name, res.EventsPerSec)
			switch v.Name {
			case copyBaseline.Name:
				rep.BaselineCopy = res
			case ledgerBaseline.Name:
				rep.BaselineLedger = res
			default:
				rep.Baseline = res
			}
		}
	}
	if !o.Paced() {
		say("publishing a backlog of %d events to %s", n, streamName)
		start := time.Now()
		if err := b.publishAll(ctx, createdSubject, evs); err != nil {
			return rep, err
		}
		secs := time.Since(start).Seconds()
		rep.Publish = &Rate{Seconds: secs, EventsPerSec: float64(n) / secs}
		if got, err := b.streamMsgs(ctx, streamName); err != nil || got != uint64(n) {
			return rep, fmt.Errorf("stream %s holds %d messages after publishing %d (%v)", streamName, got, n, err)
		}
	}
	dbBefore, dbBeforeOK := d.counters(ctx)

	adminAddr, err := freeAddr()
	if err != nil {
		return rep, err
	}
	httpAddr, err := freeAddr()
	if err != nil {
		return rep, err
	}
	settings := map[string]string{
		"NATS_URL":     b.URL,
		"DATABASE_URL": d.RouterURL,
		"HTTP_ADDR":    httpAddr,
		"ADMIN_ADDR":   adminAddr,
		"LOG_LEVEL":    "warn",
		"DATA_DIR":     filepath.Join(tmp, "router-data"),
	}
	if o.MaxInFlight > 0 {
		settings["MAX_IN_FLIGHT"] = strconv.Itoa(o.MaxInFlight)
	}
	if o.MaxAckPending > 0 {
		settings["NATS_MAX_ACK_PENDING"] = strconv.Itoa(o.MaxAckPending)
	}
	cpu0 := sampleCPU(0)
	proc, err := startRouter(bin, routerEnv(settings, o.Env), adminAddr, filepath.Join(tmp, "router.log"))
	if err != nil {
		return rep, err
	}
	defer func() {
		if err := proc.Stop(); err != nil {
			say("%v", err)
		}
	}()
	cpu0.Router = 0 // the process did not exist before
	say("router started (pid %d, admin %s, log %s)", proc.Pid(), adminAddr, proc.LogPath)
	var perf *perfRecorder
	if o.PerfOut != "" {
		if perf, err = startPerf(proc.Pid(), o.PerfOut); err != nil {
			return rep, err
		}
	}
	stopPerf := func() {
		if perf != nil {
			if err := perf.Stop(); err != nil {
				say("%v", err)
			} else {
				say("CPU profile of the router in %s (perf report -i %s)", o.PerfOut, o.PerfOut)
			}
			perf = nil
		}
	}
	defer stopPerf()

	type ready struct {
		at  time.Time
		err error
	}
	readyc := make(chan ready, 1)
	go func() {
		at, err := proc.waitReady(ctx)
		readyc <- ready{at, err}
	}()

	var window float64 // seconds the measurement covers
	if !o.Paced() {
		done, err := waitRows(ctx, d, proc, outcome, n, o.Timeout, say)
		if err != nil {
			return rep, err
		}
		r := <-readyc
		if r.err != nil {
			return rep, r.err
		}
		window = done.Sub(proc.Started).Seconds()
		fromReady := done.Sub(r.at).Seconds()
		rep.Drain = &Drain{
			FromStartS: window, FromReadyS: fromReady, ReadyAfterS: r.at.Sub(proc.Started).Seconds(),
			EventsPerSecFromStart: float64(n) / window, EventsPerSecFromReady: float64(n) / fromReady,
		}
		say("drained in %.2fs (%.0f events/s)", window, rep.Drain.EventsPerSecFromStart)
	} else {
		r := <-readyc
		if r.err != nil {
			return rep, r.err
		}
		say("router ready after %.2fs; publishing %.0f events/s for %v", r.at.Sub(proc.Started).Seconds(), o.PacedRate, o.PacedDuration)
		cpu0 = sampleCPU(proc.Pid())
		sent, err := b.publishPaced(ctx, createdSubject, evs, o.PacedRate)
		if err != nil {
			return rep, err
		}
		last := sent[len(sent)-1]
		done, err := waitRows(ctx, d, proc, outcome, n, o.Timeout, say)
		if err != nil {
			return rep, err
		}
		window = done.Sub(sent[0]).Seconds()
		rep.Paced = &Paced{
			Rate: o.PacedRate, DurationS: o.PacedDuration.Seconds(),
			AchievedRate: float64(n-1) / last.Sub(sent[0]).Seconds(),
			TailS:        done.Sub(last).Seconds(),
		}
		if err := endToEnd(ctx, d, evs, sent, rep.Paced); err != nil {
			return rep, err
		}
	}
	cpu1 := sampleCPU(proc.Pid())
	stopPerf()
	rep.CPU = cpuBetween(cpu0, cpu1)

	metricsText, err := proc.scrape(ctx)
	if err != nil {
		return rep, err
	}
	samples, err := parseMetrics(metricsText)
	if err != nil {
		return rep, fmt.Errorf("read the router's metrics: %w", err)
	}
	rep.Handler = latencyFrom(histogramOf(samples, handlerHistogram, map[string]string{"handler_name": router.HandlerName, "success": "true"}), window)
	rep.ReceiveToAck = latencyFrom(histogramOf(samples, receiveToAckHistogram, nil), window)
	rep.Counters = Counters{
		Committed:    sumOf(samples, "user_events_router_events_total", map[string]string{"outcome": "committed"}),
		Poisoned:     sumOf(samples, "user_events_router_events_total", map[string]string{"outcome": "poisoned"}),
		Failed:       sumOf(samples, "user_events_router_events_total", map[string]string{"outcome": "failed"}),
		Redeliveries: sumOf(samples, "user_events_router_redeliveries_total", nil),
		Retries:      sumOf(samples, "user_events_router_retries_total", nil),
	}
	if rep.PeakRSSBytes, err = peakRSS(proc.Pid()); err != nil {
		say("peak RSS: %v", err)
	}

	rows, err1 := d.count(ctx, commandsTable)
	distinct, err2 := d.countDistinctUUID(ctx, outcome)
	left, err3 := b.waitStreamEmpty(ctx, streamName, 30*time.Second)
	poison, err4 := d.count(ctx, poisonTable)
	if o.OverLimit() {
		kept, err5 := d.payloadBytes(ctx, poisonTable)
		rep.Checks = append(rep.Checks,
			checkEq("poison rows = N", poison, n, err4),
			checkEq("distinct poison uuids = N", distinct, n, err2),
			checkEq("poison payload bytes = N × body bytes (kept byte for byte)", kept, n*o.BodyBytes, err5),
			checkEq("stream "+streamName+" empty", int(left), 0, err3),
			checkEq("rows = 0 (no command from an event over the limit)", rows, 0, err1),
		)
	} else {
		rep.Checks = append(rep.Checks,
			checkEq("rows = N", rows, n, err1),
			checkEq("distinct uuids = N", distinct, n, err2),
			checkEq("stream "+streamName+" empty", int(left), 0, err3),
			checkEq("poison rows = 0", poison, 0, err4),
		)
	}
	// The router's database statistics are complete once it has exited.
	if err := proc.Stop(); err != nil {
		say("%v", err)
	}
	after, afterOK := d.countersAfterClose(ctx)
	tx, exact := d.writeTransactions(ctx, commandsTable)
	if afterOK && dbBeforeOK {
		rep.DB = perEvent(dbBefore, after, n, tx, d.Dialect)
	}
	routerRate := 0.0
	switch {
	case rep.Drain != nil:
		routerRate = rep.Drain.EventsPerSecFromStart
	case rep.Paced != nil:
		routerRate = rep.Paced.AchievedRate
	}
	routerRows, rowsSource := rowsPerTx(n, tx), rowsFromTransactionIDs
	if h := histogramOf(samples, commitBatchHistogram, nil); !exact && h.Count > 0 {
		routerRows, rowsSource = h.Mean(), rowsFromBatchHistogram
	}
	cost := costOf(rep.CPU, n, routerRate, true, d.Dialect, routerRows, rowsSource)
	rep.PerEvent = &cost
	if rep.Drain != nil {
		for _, base := range rep.baselines() {
			ratio := ratioOf(base.Variant, cost, base.PerEvent)
			rep.Ratios = append(rep.Ratios, ratio)
			switch base.Variant {
			case copyBaseline.Name:
				rep.RatioToCopy = ratio.EventsPerSec
			case ledgerBaseline.Name:
				rep.RatioToLedger = ratio.EventsPerSec
			default:
				rep.RatioToBaseline = ratio.EventsPerSec
			}
		}
	}
	return rep, nil
}

func newReport(o Options, d *benchDB, b *natsBroker, bin string) *Report {
	rep := &Report{
		Mode: "backlog", Backend: o.Backend, Database: d.Name, Events: o.Events(), BodyBytes: o.BodyBytes,
		NATS:    "in-process nats-server (JetStream, file store in a temp dir)",
		Machine: newMachine(),
		Router: RouterSettings{
			Binary: bin, MaxInFlight: "default", MaxAckPending: "default", Env: o.Env,
		},
	}
	if o.Paced() {
		rep.Mode = "paced"
	}
	if b.srv == nil {
		rep.NATS = redact.URL(b.URL)
	}
	defaults := configs.Defaults()
	rep.Router.MaxInFlight = "default " + strconv.Itoa(defaults.MaxInFlight)
	rep.Router.MaxAckPending = "default " + strconv.Itoa(defaults.MaxAckPending)
	rep.Router.MaxInFlightBytes = "default " + strconv.FormatInt(defaults.MaxInFlightBytes, 10)
	if o.MaxInFlight > 0 {
		rep.Router.MaxInFlight = strconv.Itoa(o.MaxInFlight)
	}
	if o.MaxAckPending > 0 {
		rep.Router.MaxAckPending = strconv.Itoa(o.MaxAckPending)
	}
	rep.Notes = append(rep.Notes,
		"handler latency is Watermill's handler_execution_time histogram: the router adds it innermost, so it spans decode → command build → group commit (INSERT → COMMIT) of one attempt, not the wait before it nor the ack after it",
		"receive→ack is the router's receive_to_ack_seconds histogram: from the subscriber receiving a message to acking it after its command committed, waiting behind the same user's earlier events and for the group commit included",
		"quantiles of both histograms are estimated as PromQL histogram_quantile does: linear interpolation inside the bucket holding the rank, so the true value lies anywhere in the bracketed bucket; the mean is exact",
	)
	switch {
	case o.OverLimit():
		rep.Notes = append(rep.Notes,
			fmt.Sprintf("events of %d bytes are over the event limit of %d bytes (schema.MaxEventBytes; DESIGN §3 \"Sizes\"), which no setting raises: the router poisons each with its bytes kept, so this run measures the poison path under a backlog of large messages — memory (MAX_IN_FLIGHT_BYTES) and poison writes — not commits", o.BodyBytes, schema.MaxEventBytes),
			"drain ends at the first 100 ms poll of the router's /metrics that counts N events poisoned, confirmed by one COUNT(*) = N of "+poisonTable)
	case !o.Paced():
		rep.Notes = append(rep.Notes, "drain ends at the first 100 ms poll of the router's /metrics that counts N events committed, confirmed by one COUNT(*) = N of "+commandsTable)
	}
	if d.Dialect == store.SQLite {
		rep.Notes = append(rep.Notes, "SQLite runs inside the router process: its CPU and fsyncs count as the router's (and, in a baseline, as the benchmark process's)")
	}
	if o.Baseline && d.Dialect != store.Postgres {
		rep.Notes = append(rep.Notes, "-baseline ran no COPY baseline: "+string(d.Dialect)+" has no COPY, the COPY baseline is PostgreSQL's")
	}
	if o.Baseline && b.srv == nil {
		rep.Notes = append(rep.Notes, "NATS is external (-nats): a baseline's bench+NATS CPU holds the pipeline only, not the NATS server's work")
	}
	return rep
}

func newMachine() Machine {
	return Machine{Cores: runtime.NumCPU(), GoVersion: runtime.Version(), LoadAvg1: loadAverage()}
}

// waitRows waits until table (the commands, or the poison queue) holds n
// rows. Every 100 ms it reads the router's own count of what it committed
// there (events_total with outcome committed or poisoned, on /metrics), and
// only once that reaches n does it count the rows; the router counts an
// event after its transaction committed, so the count then finds them all.
// A COUNT(*) every 100 ms instead scans a table of hundreds of thousands of
// rows ten times a second, on the database server whose work per event the
// run measures.
func waitRows(ctx context.Context, d *benchDB, proc *routerProc, table string, n int, timeout time.Duration, say func(string, ...any)) (time.Time, error) {
	outcome := "committed"
	if table == poisonTable {
		outcome = "poisoned"
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(timeout)
	start, lastSay, lastDone := time.Now(), time.Now(), 0
	var scrapeErr error
	for {
		select {
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case <-proc.Exited():
			return time.Time{}, proc.exitError()
		case <-deadline:
			return time.Time{}, fmt.Errorf("the router counted only %d of %d events %s into %s after %v (last scrape error: %v; see %s)", lastDone, n, outcome, table, timeout, scrapeErr, proc.LogPath)
		case now := <-tick.C:
			text, err := proc.scrape(ctx)
			if err != nil {
				// Not listening yet, or busy: the deadline says so if it lasts.
				scrapeErr = err
				continue
			}
			families, err := parseMetrics(text)
			if err != nil {
				return time.Time{}, fmt.Errorf("parse the router's metrics: %w", err)
			}
			done := int(sumOf(families, "user_events_router_events_total", map[string]string{"outcome": outcome}))
			if done >= n {
				rows, err := d.count(ctx, table)
				if err != nil {
					return time.Time{}, fmt.Errorf("count %s: %w", table, err)
				}
				if rows >= n {
					return now, nil
				}
				// Counted but not there: the checks after the run say so.
				return now, fmt.Errorf("the router counted %d events %s but %s holds %d rows", done, outcome, table, rows)
			}
			if now.Sub(lastSay) >= 5*time.Second {
				say("%d/%d events %s into %s after %.0fs (%.0f/s in the last 5s)", done, n, outcome, table, now.Sub(start).Seconds(), float64(done-lastDone)/now.Sub(lastSay).Seconds())
				lastSay, lastDone = now, done
			}
		}
	}
}

// endToEnd fills p's publish-to-commit latency from the rows' created_at.
func endToEnd(ctx context.Context, d *benchDB, evs []event, sent []time.Time, p *Paced) error {
	times, ok, err := d.commitTimes(ctx)
	if err != nil {
		return fmt.Errorf("end-to-end latency: %w", err)
	}
	if !ok {
		p.EndToEndNote = "n/a: " + string(d.Dialect) + " keeps created_at in whole seconds"
		return nil
	}
	lat := make([]float64, 0, len(evs))
	for i, ev := range evs {
		if at, found := times[ev.UserID]; found {
			lat = append(lat, at-float64(sent[i].UnixNano())/1e9)
		}
	}
	p.EndToEnd = quantilesOf(lat)
	switch d.Dialect {
	case store.Postgres:
		p.EndToEndNote = "exact per event: publish call → the row's created_at, which PostgreSQL sets when the insert's transaction begins, so the COMMIT itself is not included"
	default:
		p.EndToEndNote = "exact per event at millisecond resolution: publish call → the row's created_at, which SQLite sets during the insert, so the COMMIT itself is not included"
	}
	return nil
}
