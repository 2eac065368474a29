package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/social/user-events-router/store"
)

// Report is the outcome of one run.
type Report struct {
	Mode     string `json:"mode"` // backlog or paced
	Backend  string `json:"backend"`
	Database string `json:"database"`
	NATS     string `json:"nats"`
	Events   int    `json:"events"`
	// BodyBytes is the padded size of each event (0: unpadded).
	BodyBytes int            `json:"body_bytes,omitempty"`
	Router    RouterSettings `json:"router"`
	Machine   Machine        `json:"machine"`

	Publish *Rate  `json:"publish,omitempty"` // backlog publishing
	Drain   *Drain `json:"drain,omitempty"`   // backlog mode
	Paced   *Paced `json:"paced,omitempty"`   // paced mode

	Handler      Latency     `json:"handler_latency"`
	ReceiveToAck Latency     `json:"receive_to_ack_latency"`
	PeakRSSBytes int64       `json:"peak_rss_bytes"`
	Counters     Counters    `json:"router_counters"`
	CPU          CPUUse      `json:"cpu"`
	DB           *DBPerEvent `json:"db,omitempty"`

	// PerEvent is what one event cost the router (CPU over the drain).
	PerEvent *Cost `json:"per_event,omitempty"`

	// Baseline is the multi-row baseline; BaselineCopy the COPY one
	// (PostgreSQL only). RatioToBaseline and RatioToCopy are router ÷
	// baseline events/s (from the router's start); Ratios has every
	// per-event figure.
	Baseline     *BaselineResult `json:"baseline,omitempty"`
	BaselineCopy *BaselineResult `json:"baseline_copy,omitempty"`
	// BaselineLedger writes the ledger as the router does (ledgerBaseline);
	// RatioToLedger is router ÷ it.
	BaselineLedger  *BaselineResult `json:"baseline_ledger,omitempty"`
	RatioToLedger   float64         `json:"router_to_ledger_ratio,omitempty"`
	RatioToBaseline float64         `json:"router_to_baseline_ratio,omitempty"`
	RatioToCopy     float64         `json:"router_to_copy_ratio,omitempty"`
	Ratios          []Ratio         `json:"ratios,omitempty"`

	Checks []Check  `json:"checks"`
	Notes  []string `json:"notes"`
}

// RouterSettings are the router's settings that the run chose.
type RouterSettings struct {
	Binary        string `json:"binary"`
	MaxInFlight   string `json:"max_in_flight"`
	MaxAckPending string `json:"max_ack_pending"`
	// MaxInFlightBytes is the router's default; -env may override it.
	MaxInFlightBytes string   `json:"max_in_flight_bytes"`
	Env              []string `json:"env,omitempty"`
}

// Machine describes where the figures were taken.
type Machine struct {
	Cores     int    `json:"cores"`
	GoVersion string `json:"go_version"`
	// LoadAvg1 is the 1-minute load average when the run started.
	LoadAvg1 float64 `json:"load_avg_1m"`
}

// Rate is a count of events over a time.
type Rate struct {
	Seconds      float64 `json:"seconds"`
	EventsPerSec float64 `json:"events_per_s"`
}

// Drain is how long the backlog took, from the router's start and from
// its first 200 on /readyz.
type Drain struct {
	FromStartS            float64 `json:"from_start_s"`
	FromReadyS            float64 `json:"from_ready_s"`
	ReadyAfterS           float64 `json:"ready_after_s"`
	EventsPerSecFromStart float64 `json:"events_per_s_from_start"`
	EventsPerSecFromReady float64 `json:"events_per_s_from_ready"`
}

// Paced is a run at a steady publish rate.
type Paced struct {
	Rate         float64 `json:"rate"`
	DurationS    float64 `json:"duration_s"`
	AchievedRate float64 `json:"achieved_rate"`
	// TailS is from the last publish until every command was committed.
	TailS float64 `json:"tail_s"`
	// EndToEnd is publish → the row's created_at, exact per event; nil
	// where the backend keeps whole seconds.
	EndToEnd     *Quantiles `json:"end_to_end,omitempty"`
	EndToEndNote string     `json:"end_to_end_note"`
}

// Quantiles of exact samples, in milliseconds.
type Quantiles struct {
	Samples int     `json:"samples"`
	P50Ms   float64 `json:"p50_ms"`
	P90Ms   float64 `json:"p90_ms"`
	P99Ms   float64 `json:"p99_ms"`
	MaxMs   float64 `json:"max_ms"`
}

// Latency is estimated from the router's handler-duration histogram.
type Latency struct {
	Count  float64 `json:"count"`
	MeanMs float64 `json:"mean_ms"` // exact: sum / count
	P50Ms  float64 `json:"p50_ms"`
	P50Lo  float64 `json:"p50_bucket_lo_ms"`
	P50Hi  float64 `json:"p50_bucket_hi_ms"`
	P99Ms  float64 `json:"p99_ms"`
	P99Lo  float64 `json:"p99_bucket_lo_ms"`
	P99Hi  float64 `json:"p99_bucket_hi_ms"`
	// P99Over: the p99 is above the largest finite bucket (P99Ms is that
	// bound, P99Hi is 0 for unbounded).
	P99Over bool `json:"p99_above_last_bucket,omitempty"`
	// InHandler is the mean number of messages inside the handler at once
	// over the measured window (Little's law: handler seconds / wall seconds).
	InHandler float64 `json:"mean_messages_in_handler"`
}

// Counters are the router's own counters at the end of the run.
type Counters struct {
	Committed    float64 `json:"events_committed"`
	Poisoned     float64 `json:"events_poisoned"`
	Failed       float64 `json:"deliveries_failed"`
	Redeliveries float64 `json:"redeliveries"`
	Retries      float64 `json:"retries"`
}

// DBPerEvent is what one event cost the database server.
type DBPerEvent struct {
	// RowsPerTx is rows per transaction that wrote them (PostgreSQL: the
	// distinct transaction_id of the rows; exact, 0 elsewhere).
	RowsPerTx float64 `json:"rows_per_write_transaction,omitempty"`
	Commits   float64 `json:"commits_per_event"`
	// Connections is database connections opened during the run
	// (PostgreSQL): a pool that keeps too few idle connections reconnects.
	Connections int64   `json:"connections_opened,omitempty"`
	LogSyncs    float64 `json:"log_fsyncs_per_event"`
	Scope       string  `json:"scope"`
}

func perEvent(before, after dbCounters, events, writeTx int, dialect store.Dialect) *DBPerEvent {
	scope := "commits: this database, the benchmark's own queries included; WAL fsyncs: the whole server, other clients included"
	if dialect == store.MySQL {
		scope = "Handler_commit and Innodb_os_log_fsyncs: the whole server (other clients included)"
	}
	return &DBPerEvent{
		Connections: after.Sessions - before.Sessions,
		RowsPerTx:   rowsPerTx(events, writeTx),
		Commits:     float64(after.Commits-before.Commits) / float64(events),
		LogSyncs:    float64(after.LogSyncs-before.LogSyncs) / float64(events),
		Scope:       scope,
	}
}

// Check is one correctness check.
type Check struct {
	Name string `json:"name"`
	OK   bool   `json:"ok"`
	Got  string `json:"got"`
	Want string `json:"want"`
}

func checkEq(name string, got, want int, err error) Check {
	if err != nil {
		return Check{Name: name, Got: "error: " + err.Error(), Want: strconv.Itoa(want)}
	}
	return Check{Name: name, OK: got == want, Got: strconv.Itoa(got), Want: strconv.Itoa(want)}
}

// baselines are the baselines that ran, in the order they ran.
func (r *Report) baselines() []*BaselineResult {
	var out []*BaselineResult
	for _, b := range []*BaselineResult{r.Baseline, r.BaselineCopy, r.BaselineLedger} {
		if b != nil {
			out = append(out, b)
		}
	}
	return out
}

// allChecks are the run's checks, the baselines' included.
func (r *Report) allChecks() []Check {
	all := append([]Check{}, r.Checks...)
	for _, b := range r.baselines() {
		all = append(all, b.Checks...)
	}
	return all
}

// Failed names the failed checks, the baselines' included.
func (r *Report) Failed() []string {
	var out []string
	for _, c := range r.allChecks() {
		if !c.OK {
			out = append(out, fmt.Sprintf("%s: got %s, want %s", c.Name, c.Got, c.Want))
		}
	}
	return out
}

// WriteJSON prints the report as indented JSON; NaN values become null.
func (r *Report) WriteJSON(w io.Writer) error {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", data)
	return err
}

// WriteText prints the short human-readable report.
func (r *Report) WriteText(w io.Writer) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	size := ""
	if r.BodyBytes > 0 {
		size = fmt.Sprintf(" of %d bytes", r.BodyBytes)
	}
	p("== user-events router benchmark: %s, %s, %d events%s ==", r.Mode, r.Backend, r.Events, size)
	p("machine       %d cores, %s, load average %.1f at start; shared and noisy: compare figures of one run, not across runs", r.Machine.Cores, r.Machine.GoVersion, r.Machine.LoadAvg1)
	p("router        MAX_IN_FLIGHT=%s NATS_MAX_ACK_PENDING=%s MAX_IN_FLIGHT_BYTES=%s %s", r.Router.MaxInFlight, r.Router.MaxAckPending, r.Router.MaxInFlightBytes, strings.Join(r.Router.Env, " "))
	p("nats          %s; database %s", r.NATS, r.Database)
	if r.Publish != nil {
		p("publish       %d events in %.2fs (%.0f/s, async, then all acks awaited)", r.Events, r.Publish.Seconds, r.Publish.EventsPerSec)
	}
	if d := r.Drain; d != nil {
		p("drain         %.2fs from router start (%.0f events/s); %.2fs from readiness (%.0f events/s); ready after %.2fs",
			d.FromStartS, d.EventsPerSecFromStart, d.FromReadyS, d.EventsPerSecFromReady, d.ReadyAfterS)
	}
	if pc := r.Paced; pc != nil {
		p("paced         %.0f/s for %.0fs (achieved %.0f/s); all committed %.2fs after the last publish", pc.Rate, pc.DurationS, pc.AchievedRate, pc.TailS)
		if e := pc.EndToEnd; e != nil {
			p("end-to-end    publish → commit p50 %.1f ms, p90 %.1f ms, p99 %.1f ms, max %.1f ms (%d events, exact)", e.P50Ms, e.P90Ms, e.P99Ms, e.MaxMs, e.Samples)
		} else {
			p("end-to-end    n/a")
		}
		p("              (%s)", pc.EndToEndNote)
	}
	latencyLines(p, "handler      ", r.Handler, "observations", "inside the handler")
	if r.ReceiveToAck.Count > 0 {
		latencyLines(p, "receive→ack  ", r.ReceiveToAck, "messages", "in the router")
	}
	p("peak RSS      %.1f MB (router VmHWM)", float64(r.PeakRSSBytes)/(1<<20))
	c := r.CPU
	p("cpu           over %.1fs: router %.2f cores, bench+NATS %.2f, db server %.2f, everything else %.2f; machine busy %.0f%%, iowait %.0f%%, idle %.0f%% of %d cores",
		c.Seconds, c.RouterCore, c.BenchCore, c.DBCore, c.OtherCores, c.BusyPct, c.IOWaitPct, c.IdlePct, c.Cores)
	if r.DB != nil {
		if r.DB.RowsPerTx > 0 {
			p("db            %.2f rows per write transaction (exact, from the rows' transaction_id); %d connections opened", r.DB.RowsPerTx, r.DB.Connections)
		}
		p("db            %.2f commits and %.2f log fsyncs per event (%s)", r.DB.Commits, r.DB.LogSyncs, r.DB.Scope)
	}
	k := r.Counters
	p("counters      committed %.0f, poisoned %.0f, failed deliveries %.0f, redeliveries %.0f, retries %.0f", k.Committed, k.Poisoned, k.Failed, k.Redeliveries, k.Retries)
	for _, b := range r.baselines() {
		shape, fallbacks := multiRowBaseline.Shape, ""
		switch b.Variant {
		case copyBaseline.Name:
			shape, fallbacks = copyBaseline.Shape, fmt.Sprintf(", %d batches met a duplicate", b.CopyFallbacks)
		case ledgerBaseline.Name:
			shape = ledgerBaseline.Shape
		}
		p("baseline      %s: hand-written pull fetch %d → %s → ack each: %.2fs, %.0f events/s (%d batches, %d write transactions%s)",
			b.Variant, baselineBatch, shape, b.Seconds, b.EventsPerSec, b.Batches, b.WriteTransactions, fallbacks)
		p("              cpu: bench+NATS (the pipeline runs in the benchmark) %.2f cores, db server %.2f, everything else %.2f; machine idle %.0f%%",
			b.CPU.BenchCore, b.CPU.DBCore, b.CPU.OtherCores, b.CPU.IdlePct)
		if b.DB != nil {
			p("              %.1f rows per write transaction; %d connections opened; %.3f commits and %.3f log fsyncs per event", b.DB.RowsPerTx, b.DB.Connections, b.DB.Commits, b.DB.LogSyncs)
		}
	}
	r.writeCosts(p)
	for _, ck := range r.allChecks() {
		mark := "ok  "
		if !ck.OK {
			mark = "FAIL"
		}
		p("check %s  %s: %s (want %s)", mark, ck.Name, ck.Got, ck.Want)
	}
	for _, n := range r.Notes {
		p("note: %s", n)
	}
}

// latencyLines prints a latency estimated from a histogram and the mean
// number of messages it covered at once.
func latencyLines(p func(string, ...any), label string, l Latency, what, where string) {
	if l.P99Over {
		p("%s p50 ≈ %.2f ms [bucket %g–%g], p99 > %.0f ms (last finite bucket), mean %.2f ms, %.0f %s",
			label, l.P50Ms, l.P50Lo, l.P50Hi, l.P99Ms, l.MeanMs, l.Count, what)
	} else {
		p("%s p50 ≈ %.2f ms [bucket %g–%g], p99 ≈ %.2f ms [bucket %g–%g], mean %.2f ms, %.0f %s",
			label, l.P50Ms, l.P50Lo, l.P50Hi, l.P99Ms, l.P99Lo, l.P99Hi, l.MeanMs, l.Count, what)
	}
	p("              mean messages %s at once: %.2f", where, l.InHandler)
}

// latencyFrom estimates handler latency from the histogram, over a window
// of wall seconds.
func latencyFrom(h histogram, window float64) Latency {
	if h.Count == 0 {
		return Latency{}
	}
	l := Latency{Count: h.Count, MeanMs: h.Mean() * 1000}
	est, lo, hi, _ := h.Quantile(0.50)
	l.P50Ms, l.P50Lo, l.P50Hi = est*1000, lo*1000, hi*1000
	est, lo, hi, over := h.Quantile(0.99)
	l.P99Ms, l.P99Lo, l.P99Hi, l.P99Over = est*1000, lo*1000, hi*1000, over
	if over {
		l.P99Hi = 0 // unbounded
	}
	if window > 0 {
		l.InHandler = h.Sum / window
	}
	return l
}

// quantilesOf summarises exact samples (seconds).
func quantilesOf(xs []float64) *Quantiles {
	if len(xs) == 0 {
		return nil
	}
	sort.Float64s(xs)
	at := func(q float64) float64 {
		i := int(math.Ceil(q*float64(len(xs)))) - 1
		return xs[max(0, min(i, len(xs)-1))] * 1000
	}
	return &Quantiles{Samples: len(xs), P50Ms: at(0.50), P90Ms: at(0.90), P99Ms: at(0.99), MaxMs: xs[len(xs)-1] * 1000}
}

// writeCosts prints what one event cost the router and each baseline, side
// by side, and the router's ratio to each.
func (r *Report) writeCosts(p func(string, ...any)) {
	if r.PerEvent == nil {
		return
	}
	p("per event     cpu is user + system from /proc (10 ms ticks), µs per event; work = the process doing it (router, or bench+NATS: a baseline runs in the benchmark, beside the in-process NATS server); +NATS adds the benchmark process to the router's; db server = every database server process, whoever its client")
	p("              %-10s %10s %20s %12s %12s %14s", "pipeline", "events/s", "work cpu", "+NATS cpu", "db server", "rows/write tx")
	row := func(name string, c Cost) {
		db := fmt.Sprintf("%.1f", c.DBCPUUs)
		if c.DBInProcess {
			db = "in work"
		}
		rows := "n/a"
		if c.RowsPerTx > 0 {
			rows = fmt.Sprintf("%.1f", c.RowsPerTx)
		}
		p("              %-10s %10.0f %20s %12.1f %12s %14s", name, c.EventsPerSec, fmt.Sprintf("%.1f (%s)", c.ProcessCPUUs, c.Process), c.WithNATSCPUUs, db, rows)
	}
	row("router", *r.PerEvent)
	for _, b := range r.baselines() {
		row(b.Variant, b.PerEvent)
	}
	orNA := func(v float64) string {
		if v <= 0 {
			return "n/a"
		}
		return fmt.Sprintf("%.3f", v)
	}
	for _, ra := range r.Ratios {
		p("ratio         router / %s: events/s %s, +NATS cpu per event %s, db server cpu per event %s, rows per write tx %s",
			ra.Baseline, orNA(ra.EventsPerSec), orNA(ra.WithNATSCPU), orNA(ra.DBCPU), orNA(ra.RowsPerTx))
	}
}
