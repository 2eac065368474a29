package main

import "github.com/social/user-events-router/store"

// Cost is what one event cost a pipeline over its drain: the figures that
// decide its throughput, comparable between the router and the baselines
// of one run. CPU is user + system time from /proc, in microseconds.
type Cost struct {
	EventsPerSec float64 `json:"events_per_s"`
	// Process is the process that did the work ("router", or "bench+NATS"
	// for a baseline, whose pipeline runs in the benchmark process beside
	// the in-process NATS server); ProcessCPUUs is its CPU per event.
	Process      string  `json:"process"`
	ProcessCPUUs float64 `json:"process_cpu_us_per_event"`
	// WithNATSCPUUs is the work and the NATS server together: for the
	// router, the router plus the benchmark process (NATS serving it, and
	// the 100 ms polls of the router's /metrics); for a baseline, the benchmark
	// process alone. Unlike ProcessCPUUs, it compares the two fairly.
	WithNATSCPUUs float64 `json:"with_nats_cpu_us_per_event"`
	// DBCPUUs is every database server process's CPU per event, whoever
	// its client (other work on the server included; for the router, the
	// benchmark's one COUNT(*) at the end). SQLite has no
	// server: its work is in Process (DBInProcess) and DBCPUUs is 0.
	DBCPUUs     float64 `json:"db_server_cpu_us_per_event"`
	DBInProcess bool    `json:"db_in_process,omitempty"`
	// RowsPerTx is rows per transaction that wrote them; 0 when unknown.
	RowsPerTx       float64 `json:"rows_per_write_transaction"`
	RowsPerTxSource string  `json:"rows_per_write_transaction_source,omitempty"`
}

// Where RowsPerTx comes from.
const (
	rowsFromTransactionIDs = "exact: the rows' distinct transaction_id"
	rowsFromBatchHistogram = "mean of the router's commit_batch_commands histogram"
	rowsFromPipeline       = "exact: the pipeline's count of the transactions that committed"
)

// Who did the work.
const (
	routerProcess = "router"
	benchProcess  = "bench+NATS"
)

// costOf is the per-event cost of a drain of events that took use: the
// router's when router is set (its process did the work), else a
// baseline's (the benchmark process did).
func costOf(use CPUUse, events int, eventsPerSec float64, router bool, dialect store.Dialect, rowsPerTx float64, rowsSource string) Cost {
	us := func(cpuSeconds float64) float64 {
		if events <= 0 {
			return 0
		}
		return cpuSeconds * 1e6 / float64(events)
	}
	c := Cost{
		EventsPerSec: eventsPerSec,
		Process:      benchProcess, ProcessCPUUs: us(use.BenchCPU), WithNATSCPUUs: us(use.BenchCPU),
		DBCPUUs: us(use.DBCPU), DBInProcess: dialect == store.SQLite,
		RowsPerTx: rowsPerTx,
	}
	if router {
		c.Process, c.ProcessCPUUs, c.WithNATSCPUUs = routerProcess, us(use.RouterCPU), us(use.RouterCPU+use.BenchCPU)
	}
	if rowsPerTx > 0 {
		c.RowsPerTxSource = rowsSource
	}
	return c
}

// rowsPerTx is rows / transactions, 0 when no transaction is known.
func rowsPerTx(rows, transactions int) float64 {
	if transactions <= 0 {
		return 0
	}
	return float64(rows) / float64(transactions)
}

// Ratio compares the router with one baseline of the same run: router ÷
// baseline for each figure (0 where the baseline's is 0 or unknown). The
// router's own process CPU is left out: a baseline's includes the NATS
// server's, the router's does not; WithNATSCPU compares like with like.
type Ratio struct {
	Baseline     string  `json:"baseline"`
	EventsPerSec float64 `json:"events_per_s"`
	WithNATSCPU  float64 `json:"with_nats_cpu_per_event"`
	DBCPU        float64 `json:"db_server_cpu_per_event"`
	RowsPerTx    float64 `json:"rows_per_write_transaction"`
}

func ratioOf(baseline string, router, base Cost) Ratio {
	div := func(a, b float64) float64 {
		if b <= 0 || a < 0 {
			return 0
		}
		return a / b
	}
	r := Ratio{
		Baseline:     baseline,
		EventsPerSec: div(router.EventsPerSec, base.EventsPerSec),
		WithNATSCPU:  div(router.WithNATSCPUUs, base.WithNATSCPUUs),
		DBCPU:        div(router.DBCPUUs, base.DBCPUUs),
	}
	if router.RowsPerTx > 0 {
		r.RowsPerTx = div(router.RowsPerTx, base.RowsPerTx)
	}
	return r
}
