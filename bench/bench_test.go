package main

import (
	"context"
	"math"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/social/user-events-router/handlers"
	"github.com/social/user-events-router/schema"
	"github.com/social/user-events-router/store"
)

// TestBenchCorrectness runs the benchmark end to end on a tiny backlog and a
// short paced run, against the real router binary, an in-process NATS
// server and SQLite. It asserts correctness only (every event became one
// command, the streams are empty, nothing was poisoned), never timings: CI
// machines are too noisy for those.
func TestBenchCorrectness(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the router binary")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	bin, err := buildRouter(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		opts Options
		// baselines is how many baselines -baseline runs on the backend.
		baselines int
	}{
		{"backlog with baseline", Options{Backend: "sqlite", N: 500, Baseline: true}, 2},
		{"paced", Options{Backend: "sqlite", PacedRate: 100, PacedDuration: 2 * time.Second, MaxInFlight: 2}, 0},
	}
	if url := os.Getenv("TEST_POSTGRES_URL"); url != "" {
		tests = append(tests, struct {
			name      string
			opts      Options
			baselines int
		}{"postgres backlog with all three baselines", Options{Backend: "postgres", DatabaseURL: url, N: 500, Baseline: true}, 3})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := tt.opts
			o.RouterBin, o.Timeout = bin, 2*time.Minute
			o.Progress = testWriter{t}
			rep, err := Run(ctx, o)
			if err != nil {
				t.Fatal(err)
			}
			if failed := rep.Failed(); len(failed) > 0 {
				t.Fatalf("checks failed: %v", failed)
			}
			n := float64(o.Events())
			if rep.Counters.Committed != n {
				t.Errorf("router counted %v committed events, want %v", rep.Counters.Committed, n)
			}
			if rep.Handler.Count < n {
				t.Errorf("handler histogram has %v observations, want at least %v", rep.Handler.Count, n)
			}
			if rep.ReceiveToAck.Count < n {
				t.Errorf("receive-to-ack histogram has %v observations, want at least %v", rep.ReceiveToAck.Count, n)
			}
			if rep.PeakRSSBytes <= 0 {
				t.Errorf("peak RSS = %d, want > 0", rep.PeakRSSBytes)
			}
			if o.Baseline && (rep.Baseline == nil || rep.RatioToBaseline <= 0) {
				t.Errorf("baseline missing from the report: %+v", rep.Baseline)
			}
			if got := len(rep.baselines()); got != tt.baselines || len(rep.Ratios) != got {
				t.Errorf("%d baselines and %d ratios in the report, want %d of each", got, len(rep.Ratios), tt.baselines)
			}
			if o.Baseline && (rep.BaselineLedger == nil || rep.RatioToLedger <= 0) {
				t.Errorf("ledger baseline missing from the report: %+v", rep.BaselineLedger)
			}
			if tt.baselines == 3 && (rep.BaselineCopy == nil || rep.RatioToCopy <= 0 || rep.BaselineCopy.CopyFallbacks != 0) {
				t.Errorf("COPY baseline: %+v, ratio %v; want it run, without fallbacks (the backlog has no duplicate)", rep.BaselineCopy, rep.RatioToCopy)
			}
			if c := rep.PerEvent; c == nil || c.ProcessCPUUs <= 0 || c.WithNATSCPUUs < c.ProcessCPUUs || c.EventsPerSec <= 0 {
				t.Errorf("router per-event cost: %+v", c)
			}
			// A baseline drains 500 events in a few tens of ms: its CPU, in
			// /proc's 10 ms ticks, may well read 0, so only the rest is asserted.
			for _, b := range rep.baselines() {
				if c := b.PerEvent; c.Process != benchProcess || c.EventsPerSec <= 0 || c.RowsPerTx <= 0 {
					t.Errorf("baseline %s per-event cost: %+v", b.Variant, c)
				}
			}
			if o.Paced() && (rep.Paced == nil || rep.Paced.EndToEnd == nil || rep.Paced.EndToEnd.Samples != int(n)) {
				t.Errorf("paced end-to-end latency missing: %+v", rep.Paced)
			}
			var text strings.Builder
			rep.WriteText(&text)
			t.Log("\n" + text.String())
			if err := rep.WriteJSON(&text); err != nil {
				t.Errorf("WriteJSON: %v", err)
			}
		})
	}
}

// TestBenchPoison runs poison mode on a small queue: every step runs and
// its checks hold (figures are not asserted).
func TestBenchPoison(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the router binary")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	rep, err := RunPoison(ctx, Options{Backend: "sqlite", Poison: 600, Timeout: time.Minute, Progress: testWriter{t}})
	if err != nil {
		t.Fatal(err)
	}
	if failed := rep.Failed(); len(failed) > 0 {
		t.Fatalf("checks failed: %v", failed)
	}
	if len(rep.CLI) != 5 || rep.DeleteAll == nil || len(rep.API) < 16 || rep.RouterIdleRSSBytes <= 0 || rep.RouterPeakRSSBytes <= 0 {
		t.Errorf("report incomplete: %d CLI runs, %d API requests, delete %v, RSS %d/%d", len(rep.CLI), len(rep.API), rep.DeleteAll, rep.RouterIdleRSSBytes, rep.RouterPeakRSSBytes)
	}
	var text strings.Builder
	rep.WriteText(&text)
	t.Log("\n" + text.String())
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func TestHistogramQuantile(t *testing.T) {
	t.Parallel()
	text := `# TYPE h histogram
h_bucket{handler_name="user_events",success="true",le="0.001"} 0
h_bucket{handler_name="user_events",success="true",le="0.01"} 50
h_bucket{handler_name="user_events",success="true",le="0.1"} 99
h_bucket{handler_name="user_events",success="true",le="+Inf"} 100
h_sum{handler_name="user_events",success="true"} 2
h_count{handler_name="user_events",success="true"} 100
h_bucket{handler_name="user_events",success="false",le="0.001"} 7
h_bucket{handler_name="user_events",success="false",le="0.01"} 7
h_bucket{handler_name="user_events",success="false",le="0.1"} 7
h_bucket{handler_name="user_events",success="false",le="+Inf"} 7
h_count{handler_name="user_events",success="false"} 7
`
	families, err := parseMetrics(text)
	if err != nil {
		t.Fatal(err)
	}
	h := histogramOf(families, "h", map[string]string{"success": "true"})
	tests := []struct {
		q           float64
		est, lo, hi float64
		over        bool
	}{
		{0.50, 0.01, 0.001, 0.01, false},   // rank 50: the top of the second bucket
		{0.25, 0.0055, 0.001, 0.01, false}, // rank 25: half-way through it
		{0.99, 0.1, 0.01, 0.1, false},
		{0.999, 0.1, 0.1, math.Inf(1), true}, // in +Inf: only "above 100 ms"
	}
	for _, tt := range tests {
		est, lo, hi, over := h.Quantile(tt.q)
		if math.Abs(est-tt.est) > 1e-9 || lo != tt.lo || hi != tt.hi || over != tt.over {
			t.Errorf("Quantile(%v) = %v [%v, %v] over=%v, want %v [%v, %v] over=%v", tt.q, est, lo, hi, over, tt.est, tt.lo, tt.hi, tt.over)
		}
	}
	if h.Count != 100 || h.Mean() != 0.02 {
		t.Errorf("count %v mean %v, want 100 and 0.02", h.Count, h.Mean())
	}
}

// TestParseMetricsLabels: label values are read with their escapes and
// commas, series are picked by the labels asked for, and an exposition that
// does not parse is an error rather than figures from part of it.
func TestParseMetricsLabels(t *testing.T) {
	t.Parallel()
	text := "# TYPE x_total counter\n" +
		`x_total{a="q\"uote",b="c,d"} 3` + "\n" +
		`x_total{a="line\nbreak \\",b="c,d"} 4` + "\n" +
		"plain 4.5\n"
	families, err := parseMetrics(text)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		want map[string]string
		sum  float64
	}{
		{"x_total", map[string]string{"a": `q"uote`, "b": "c,d"}, 3},
		{"x_total", map[string]string{"a": "line\nbreak \\"}, 4},
		{"x_total", map[string]string{"b": "c,d"}, 7},
		{"x_total", nil, 7},
		{"x_total", map[string]string{"a": "other"}, 0},
		{"plain", nil, 4.5},
		{"absent", nil, 0},
	} {
		if got := sumOf(families, tt.name, tt.want); got != tt.sum {
			t.Errorf("sumOf(%s, %v) = %v, want %v", tt.name, tt.want, got, tt.sum)
		}
	}
	if _, err := parseMetrics("plain 1\nbroken{a=1} 2\n"); err == nil {
		t.Error("an unquoted label value parsed")
	}
}

func TestFlags(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args []string
		want string // "" = valid
	}{
		{nil, ""},
		{[]string{"-db", "oracle"}, "-db"},
		{[]string{"-paced-rate", "1000", "-baseline"}, "-baseline"},
		{[]string{"-env", "NOEQUALS"}, "-env"},
		{[]string{"-paced-rate", "1", "-paced-duration", "0s"}, "publishes no event"},
		{[]string{"-poison", "1000"}, ""},
		{[]string{"-poison", "1000", "-baseline"}, "-poison"},
		{[]string{"-poison", "-1"}, "-poison"},
		{[]string{"-body-bytes", "1048576", "-n", "1000"}, ""},
		{[]string{"-body-bytes", "4096", "-baseline"}, ""},
		{[]string{"-body-bytes", "1048577"}, "-body-bytes"},
		{[]string{"-body-bytes", "100"}, "-body-bytes"},
		{[]string{"-body-bytes", "1048576", "-baseline"}, "over the event limit"},
		{[]string{"-body-bytes", "1048576", "-paced-rate", "10"}, "over the event limit"},
	}
	for _, tt := range tests {
		_, err := parseFlags(tt.args, &strings.Builder{})
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%v: %v", tt.args, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%v: error %v, want one mentioning %q", tt.args, err, tt.want)
		}
	}
}

// TestPaddedEventsDecode: a padded event is exactly the size asked for and
// still an event the router takes (the pad is an unknown field) up to the
// event limit; over it, the decoder refuses it for its size alone.
func TestPaddedEventsDecode(t *testing.T) {
	for _, size := range []int{minBodyBytes, 4096, schema.MaxEventBytes, schema.MaxEventBytes + 1, maxBodyBytes} {
		ev := newEvents(1, size)[0]
		if len(ev.Body) != size {
			t.Errorf("padded to %d: %d bytes", size, len(ev.Body))
		}
		_, err := schema.DecodeEvent(createdSubject, ev.Body)
		switch {
		case size <= schema.MaxEventBytes && err != nil:
			t.Errorf("event of %d bytes: %v", size, err)
		case size > schema.MaxEventBytes && (err == nil || !strings.Contains(err.Error(), "limit")):
			t.Errorf("event of %d bytes: %v, want refused for its size", size, err)
		}
	}
}

// TestCopyWriterDuplicateFallback: a batch that meets a uuid already in
// the table is written whole by the insert-if-absent in a transaction of
// its own, so every uuid ends up one row, as with the multi-row baseline.
func TestCopyWriterDuplicateFallback(t *testing.T) {
	url := os.Getenv("TEST_POSTGRES_URL")
	if url == "" {
		t.Skip("TEST_POSTGRES_URL not set")
	}
	ctx := context.Background()
	d, err := openDatabase(ctx, "postgres", url, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close(ctx, false) })
	table := copyBaseline.Table
	if err := createBaselineTable(ctx, d, table); err != nil {
		t.Fatal(err)
	}
	w, err := newCopyWriter(ctx, d.DB, table)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.conn.Close() })
	rowsOf := func(ids ...string) []any {
		var args []any
		for _, id := range ids {
			args = append(args, id, `{"user_id":"`+id+`"}`, `{}`)
		}
		return args
	}
	ids := []string{"00000000-0000-0000-0000-000000000001", "00000000-0000-0000-0000-000000000002", "00000000-0000-0000-0000-000000000003", "00000000-0000-0000-0000-000000000004"}
	for i, batch := range []struct {
		ids       []string
		fallbacks int // after this batch
	}{
		{ids[:2], 0},                          // new rows: COPY
		{[]string{ids[1], ids[2]}, 1},         // one already there: the fallback
		{[]string{ids[3], ids[3], ids[0]}, 2}, // a duplicate within the batch, and one already there
	} {
		txs, err := w.write(ctx, rowBatch{n: len(batch.ids), args: rowsOf(batch.ids...)})
		if err != nil {
			t.Fatalf("batch %d: %v", i+1, err)
		}
		if txs != 1 || w.fallbacks != batch.fallbacks {
			t.Errorf("batch %d: %d transactions and %d fallbacks so far, want 1 and %d", i+1, txs, w.fallbacks, batch.fallbacks)
		}
	}
	rows, err := d.count(ctx, table)
	if err != nil || rows != len(ids) {
		t.Errorf("%d rows (%v), want %d: one per uuid", rows, err, len(ids))
	}
	if tx, ok := d.writeTransactions(ctx, table); !ok || tx != 3 {
		t.Errorf("rows written by %d transactions, want 3 (the failed COPYs wrote nothing)", tx)
	}
}

// TestCostPerEvent: CPU seconds become µs per event for the process that
// did the work, the router's +NATS adds the benchmark process, and the
// ratios are router ÷ baseline, 0 where the baseline's figure is unknown.
func TestCostPerEvent(t *testing.T) {
	t.Parallel()
	use := CPUUse{RouterCPU: 2, BenchCPU: 0.5, DBCPU: 1}
	router := costOf(use, 100000, 10000, true, store.Postgres, 130, rowsFromTransactionIDs)
	want := Cost{EventsPerSec: 10000, Process: routerProcess, ProcessCPUUs: 20, WithNATSCPUUs: 25, DBCPUUs: 10, RowsPerTx: 130, RowsPerTxSource: rowsFromTransactionIDs}
	if router != want {
		t.Errorf("router cost\n got %+v\nwant %+v", router, want)
	}
	base := costOf(CPUUse{RouterCPU: 9, BenchCPU: 1.25, DBCPU: 0.5}, 100000, 20000, false, store.Postgres, 1000, rowsFromPipeline)
	want = Cost{EventsPerSec: 20000, Process: benchProcess, ProcessCPUUs: 12.5, WithNATSCPUUs: 12.5, DBCPUUs: 5, RowsPerTx: 1000, RowsPerTxSource: rowsFromPipeline}
	if base != want {
		t.Errorf("baseline cost\n got %+v\nwant %+v", base, want)
	}
	if got, want := ratioOf("copy", router, base), (Ratio{Baseline: "copy", EventsPerSec: 0.5, WithNATSCPU: 2, DBCPU: 2, RowsPerTx: 0.13}); got != want {
		t.Errorf("ratio\n got %+v\nwant %+v", got, want)
	}
	sqlite := costOf(use, 0, 0, false, store.SQLite, 0, rowsFromPipeline)
	if sqlite.ProcessCPUUs != 0 || !sqlite.DBInProcess || sqlite.RowsPerTxSource != "" {
		t.Errorf("no events on SQLite: %+v, want 0 µs, the database in process and no rows source", sqlite)
	}
	if got := ratioOf("multi-row", router, sqlite); got.EventsPerSec != 0 || got.WithNATSCPU != 0 || got.DBCPU != 0 || got.RowsPerTx != 0 {
		t.Errorf("ratio to an empty cost = %+v, want zeros", got)
	}
}

// TestLedgerWriter: the ledger baseline writes a command and a ledger row
// per new user, with the state the router's ledger code gives, and a user
// the ledger holds already writes neither again, on every backend.
func TestLedgerWriter(t *testing.T) {
	backends := map[string]string{"sqlite": ""}
	if url := os.Getenv("TEST_POSTGRES_URL"); url != "" {
		backends["postgres"] = url
	}
	if url := os.Getenv("TEST_MYSQL_URL"); url != "" {
		backends["mysql"] = url
	}
	for backend, url := range backends {
		t.Run(backend, func(t *testing.T) {
			ctx := context.Background()
			d, err := openDatabase(ctx, backend, url, t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { d.Close(ctx, false) })
			table := ledgerBaseline.Table
			if err := createBaselineTable(ctx, d, table); err != nil {
				t.Fatal(err)
			}
			if err := createLedgerTable(ctx, d, ledgerTableOf(table)); err != nil {
				t.Fatal(err)
			}
			w, err := newLedgerWriter(ctx, d.DB, table)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(w.close)
			ev := schema.UserEvent{Action: schema.ActionCreated, Timestamp: time.Date(2026, 11, 28, 13, 28, 17, 0, time.UTC)}
			batchOf := func(users ...string) rowBatch {
				b := rowBatch{n: len(users)}
				for i, u := range users {
					ev.ID = u
					b.args = append(b.args, handlers.CommandID(u, 1), `{"user_id":"`+u+`"}`, `{}`)
					b.users = append(b.users, u)
					b.states = append(b.states, firstState(ev, schema.KindRegistration, uint64(i+1)))
				}
				return b
			}
			u := []string{"00000000-0000-0000-0000-000000000001", "00000000-0000-0000-0000-000000000002", "00000000-0000-0000-0000-000000000003"}
			for i, users := range [][]string{u[:2], u[1:]} {
				if _, err := w.write(ctx, batchOf(users...)); err != nil {
					t.Fatalf("batch %d: %v", i+1, err)
				}
			}
			if n, err := d.count(ctx, table); err != nil || n != 3 {
				t.Errorf("%d commands (%v), want 3: one per new user", n, err)
			}
			if n, err := d.count(ctx, ledgerTableOf(table)); err != nil || n != 3 {
				t.Errorf("%d ledger rows (%v), want 3", n, err)
			}
			var state string
			if err := d.DB.SQL.QueryRowContext(ctx, d.DB.Bind("SELECT state FROM "+ledgerTableOf(table)+" WHERE user_id = ?"), u[2]).Scan(&state); err != nil {
				t.Fatal(err)
			}
			l, err := handlers.ParseLedger([]byte(state))
			if err != nil || l.Generation != 1 {
				t.Errorf("ledger state %q: generation %d (%v), want a registration's first", state, l.Generation, err)
			}
		})
	}
}
