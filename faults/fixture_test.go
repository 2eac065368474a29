package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/social/user-events-router/configs"
	"github.com/social/user-events-router/router/broker"
	"github.com/social/user-events-router/router/routertest"
	"github.com/social/user-events-router/store"
	"github.com/social/user-events-router/store/storetest"
)

// sizes is how hard the suite pushes: the short version runs by default,
// the long one with FAULTS_LONG=1.
type sizes struct {
	events     int           // N: backlog published to the stream
	kills      int           // K: faults injected per scenario
	httpEvents int           // M: events posted to the HTTP fallback
	users      int           // users whose histories TestConvergence plays
	drain      time.Duration // how long a backlog may take to drain
}

func scale() sizes {
	if os.Getenv("FAULTS_LONG") == "1" {
		return sizes{events: 20000, kills: 5, httpEvents: 1000, users: 20000, drain: 15 * time.Minute}
	}
	return sizes{events: 2000, kills: 2, httpEvents: 100, users: 2000, drain: 3 * time.Minute}
}

// backends are the databases every scenario runs against: SQLite always,
// PostgreSQL when TEST_POSTGRES_URL is set, and MySQL/MariaDB when
// TEST_MYSQL_URL is set and FAULTS_MYSQL=1 (off by default to keep the
// short run short).
func backends() []store.Dialect {
	var out []store.Dialect
	for _, d := range storetest.Backends() {
		if d == store.MySQL && os.Getenv("FAULTS_MYSQL") != "1" {
			continue
		}
		out = append(out, d)
	}
	return out
}

// The JetStream names the router uses by default (configs.Defaults).
var (
	streamName = configs.Defaults().Stream
	durable    = configs.Defaults().Durable
)

// fixture is one scenario's world: a NATS server, a database, and the
// routers started on them.
type fixture struct {
	name    string
	backend store.Dialect
	size    sizes
	dir     string
	broker  *routertest.Server
	js      jetstream.JetStream
	dbURL   string
	db      *store.DB
	rng     *rand.Rand
	procs   int
	users   int // events made so far (numbers the users u<i>)
	// made is every event newEvents made, in order: the Auth Service's
	// users, for a convergence check (see model).
	made []event
	// natsURL is the routers' NATS_URL when it is not broker's: a
	// cluster's servers, comma-separated (see setupCluster).
	natsURL string

	// published counts the events stored in the stream; while every
	// command comes from the stream (no HTTP client), the polling loops
	// check that none went missing on the way (see checkNoLoss).
	published   int
	httpTraffic bool
	// skipsEvents: the routers may rightly write no command for some
	// published events (the ledger finds an update stale once a later one
	// of its user committed first), so stream + commands ≥ published
	// does not hold and the loss check is off.
	skipsEvents bool
	lossSeen    bool
	nextCheck   time.Time
}

// setup starts a fresh NATS server and database for one scenario and
// creates the stream exactly as the Auth Service does, so a backlog can be
// published before any router runs.
func setup(t *testing.T, name string, backend store.Dialect) *fixture {
	t.Helper()
	f := newFixture(t, name, backend)
	f.broker = routertest.StartServer(t)
	f.js = jetStream(t, f.broker.URL)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if _, err := f.js.CreateStream(ctx, broker.AuthServiceStreamConfig(streamName)); err != nil {
		t.Fatalf("create stream %s: %v", streamName, err)
	}
	return f
}

// newFixture is a scenario's world without its broker: the seed, the log
// directory and a fresh database.
func newFixture(t *testing.T, name string, backend store.Dialect) *fixture {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("FAULTS_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("FAULTS_SEED=%q: %v", s, err)
		}
	}
	t.Logf("seed=%d (set FAULTS_SEED to replay the same fault points)", seed)
	f := &fixture{
		name:    name,
		backend: backend,
		size:    scale(),
		dir:     logDir(t),
		rng:     rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
	}
	f.dbURL = storetest.URL(t, backend)
	// Registered after URL, so closed before the test database is dropped.
	f.db = openDB(t, f.dbURL)
	return f
}

// logDir is where the routers of one test keep their data and logs: a
// temporary directory, or FAULTS_KEEP/<test name> to keep them for reading.
func logDir(t *testing.T) string {
	t.Helper()
	keep := os.Getenv("FAULTS_KEEP")
	if keep == "" {
		return t.TempDir()
	}
	dir := filepath.Join(keep, strings.ReplaceAll(t.Name(), "/", "_"))
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Logf("logs kept in %s", dir)
	return dir
}

// openDB opens the database from the test side and creates the tables, so
// counting never races the router's start.
func openDB(t *testing.T, url string) *store.DB {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	db, err := store.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.InitSchema(ctx, store.CommandsTopic, store.PoisonTopic); err != nil {
		t.Fatal(err)
	}
	return db
}

// jetStream connects a client that keeps reconnecting across a broker
// restart (the default gives up after 60 tries, 2 s apart).
func jetStream(t *testing.T, url string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// event is one user event as the Auth Service sends it.
type event struct {
	userID string
	body   []byte
}

// newEvents makes n `created` events for users never seen before in this
// test, byte for byte in the Auth Service's shape (DESIGN §2): plain JSON,
// empty request_id, whole-second UTC timestamp.
func (f *fixture) newEvents(n int) []event {
	ts := time.Now().UTC().Format(time.RFC3339)
	out := make([]event, n)
	for k := range out {
		f.users++
		id := uuid.NewString()
		out[k] = event{userID: id, body: fmt.Appendf(nil,
			`{"id":%q,"email":"u%d@example.com","username":"u%d","action":"created","request_id":"","timestamp":%q,"service_name":"gofiber-auth"}`,
			id, f.users, f.users, ts)}
	}
	f.made = append(f.made, out...)
	return out
}

// publishBacklog stores n new events in the stream on user.events.created
// (no headers, like the Auth Service) and returns their user ids.
func (f *fixture) publishBacklog(t *testing.T, n int) []string {
	t.Helper()
	const batch = 500
	events := f.newEvents(n)
	ids := make([]string, 0, n)
	for start := 0; start < n; start += batch {
		futures := make([]jetstream.PubAckFuture, 0, batch)
		for _, ev := range events[start:min(start+batch, n)] {
			fut, err := f.js.PublishAsync("user.events.created", ev.body)
			if err != nil {
				t.Fatalf("publish: %v", err)
			}
			futures = append(futures, fut)
			ids = append(ids, ev.userID)
		}
		select {
		case <-f.js.PublishAsyncComplete():
		case <-time.After(30 * time.Second):
			t.Fatal("publish: no acks within 30s")
		}
		for _, fut := range futures {
			select {
			case <-fut.Ok():
			case err := <-fut.Err():
				t.Fatalf("publish: %v", err)
			}
		}
	}
	f.published += n
	if got := f.streamMsgs(t); got != uint64(f.published) {
		t.Fatalf("stream holds %d messages after publishing %d", got, f.published)
	}
	return ids
}

// committed is COUNT(*) of the commands table.
func (f *fixture) committed(t *testing.T) int {
	t.Helper()
	n, err := f.tryCommitted(t.Context())
	if err != nil {
		t.Fatalf("count commands: %v", err)
	}
	return n
}

func (f *fixture) tryCommitted(ctx context.Context) (int, error) {
	var n int
	err := f.db.SQL.QueryRowContext(ctx, `SELECT COUNT(*) FROM watermill_profile_sync_commands`).Scan(&n)
	return n, err
}

func (f *fixture) streamMsgs(t *testing.T) uint64 {
	t.Helper()
	n, err := f.tryStreamMsgs(t.Context())
	if err != nil {
		t.Fatalf("stream %s: %v", streamName, err)
	}
	return n
}

func (f *fixture) tryStreamMsgs(ctx context.Context) (uint64, error) {
	n, _, err := f.tryStreamLeft(ctx)
	return n, err
}

// tryStreamLeft counts the stream's messages, and tells which of them the
// broker merely failed to remove: nats-server can leave a message in a
// WorkQueue stream after a restart although the durable has it acked (the
// removal was queued when the server stopped; nats-server#7680 and its
// kin). They are orphans when the durable has nothing pending or awaiting
// an ack and its ack floor is at or past the stream's last message: every
// one of them was acked, so (acks following commits) committed. Anything
// else left in the stream is not acked and counts as left.
func (f *fixture) tryStreamLeft(ctx context.Context) (left, orphans uint64, err error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	s, err := f.js.Stream(ctx, streamName)
	if err != nil {
		return 0, 0, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0, 0, err
	}
	if info.State.Msgs == 0 {
		return 0, 0, nil
	}
	if c := f.consumer(ctx); c != nil && c.NumPending == 0 && c.NumAckPending == 0 && c.AckFloor.Stream >= info.State.LastSeq {
		return 0, info.State.Msgs, nil
	}
	return info.State.Msgs, 0, nil
}

// consumer is the durable's state, or nil when the broker does not answer.
func (f *fixture) consumer(ctx context.Context) *jetstream.ConsumerInfo {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	info, err := broker.ReadConsumer(ctx, f.js, streamName, durable)
	if err != nil {
		return nil
	}
	return info
}

// checkNoLoss catches a loss while it happens, not only at the end: an
// event that has left the stream was acked, so (if every ack follows its
// commit) its command was written before the stream was counted. Counting
// the stream first and the commands second, stream + commands can never be
// less than the events published. It runs at most every 100 ms, reports
// once, and only while the stream is the only source of commands; a count
// that fails (a broker restart, a renamed table) skips the check.
func (f *fixture) checkNoLoss(t *testing.T) {
	t.Helper()
	if f.published == 0 || f.httpTraffic || f.skipsEvents || f.lossSeen || time.Now().Before(f.nextCheck) {
		return
	}
	f.nextCheck = time.Now().Add(100 * time.Millisecond)
	s, err := f.tryStreamMsgs(t.Context())
	if err != nil {
		return
	}
	n, err := f.tryCommitted(t.Context())
	if err != nil {
		return
	}
	if int(s)+n < f.published {
		f.lossSeen = true
		t.Errorf("loss: %d events published, but the stream holds %d and only %d commands exist: %d events were acked without a command (%s)",
			f.published, s, n, f.published-int(s)-n, f.progress(t.Context()))
	}
}

// progress describes where a drain stands, for progress and failure
// messages: the stream (counted first, so stream + commands is never less
// than the events published unless one was lost), the commands, and the
// durable's state.
func (f *fixture) progress(ctx context.Context) string {
	s, serr := f.tryStreamMsgs(ctx)
	n, nerr := f.tryCommitted(ctx)
	out := fmt.Sprintf("stream=%d (err %v) commands=%d (err %v)", s, serr, n, nerr)
	if info := f.consumer(ctx); info != nil {
		out += fmt.Sprintf(" durable: num_pending=%d num_ack_pending=%d num_redelivered=%d push_bound=%v delivered_seq=%d ack_floor_seq=%d",
			info.NumPending, info.NumAckPending, info.NumRedelivered, info.PushBound, info.Delivered.Stream, info.AckFloor.Stream)
	}
	return out
}

// newTicker returns a func that reports true once every 15 s.
func newTicker() func() bool {
	next := time.Now().Add(15 * time.Second)
	return func() bool {
		if time.Now().Before(next) {
			return false
		}
		next = time.Now().Add(15 * time.Second)
		return true
	}
}

// randomPoint picks a commit count in [lo, hi) at which to inject a fault.
func (f *fixture) randomPoint(lo, hi int) int {
	if hi <= lo {
		return lo
	}
	return lo + f.rng.IntN(hi-lo)
}

// waitCommitted polls until at least n commands are committed: the "random
// point" of a fault is a row count, not a sleep. It fails the test when the
// routers that should be working have all exited.
func (f *fixture) waitCommitted(t *testing.T, n int, procs ...*routerProc) int {
	t.Helper()
	deadline := time.Now().Add(f.size.drain)
	progress := newTicker()
	for {
		got, err := f.tryCommitted(t.Context())
		if err == nil && got >= n {
			return got
		}
		f.failIfAllExited(t, procs)
		f.checkNoLoss(t)
		if progress() {
			t.Logf("waiting for %d commands: %s", n, f.progress(t.Context()))
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %d commands (have %d, err %v)", f.size.drain, n, got, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitDrained polls until at least want commands are committed and the
// stream is empty (but for acked messages the broker did not remove, see
// tryStreamLeft). It does not fail the test: the caller reports the state
// it ended in, lost events included.
func (f *fixture) waitDrained(t *testing.T, want int, procs ...*routerProc) bool {
	t.Helper()
	deadline := time.Now().Add(f.size.drain)
	progress := newTicker()
	for time.Now().Before(deadline) {
		f.failIfAllExited(t, procs)
		f.checkNoLoss(t)
		n, err := f.tryCommitted(t.Context())
		if err == nil && n >= want {
			if s, err := f.tryStreamMsgs(t.Context()); err == nil && s == 0 {
				return true
			}
		}
		if progress() {
			t.Logf("draining to %d commands: %s", want, f.progress(t.Context()))
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Errorf("not drained to %d commands within %v: %s", want, f.size.drain, f.progress(t.Context()))
	return false
}

func (f *fixture) failIfAllExited(t *testing.T, procs []*routerProc) {
	t.Helper()
	if len(procs) == 0 {
		return
	}
	for _, p := range procs {
		if p.running() {
			return
		}
	}
	p := procs[len(procs)-1]
	t.Fatalf("every router exited on its own (%s: %v); log tail:\n%s", p.name, p.werr, tail(p.logPath, 40))
}

// outcome is what a scenario left behind, measured from the outside.
type outcome struct {
	committed int            // COUNT(*) of commands
	distinct  int            // COUNT(DISTINCT uuid)
	perUser   map[string]int // commands per user_id in the payload
	// payloads are the commands' payloads by user_id, for a failure to
	// show what a user got.
	payloads map[string][][]byte
	// redelivered counts commands written from a JetStream delivery
	// after the first: evidence that a fault hit messages in flight.
	redelivered  int
	leftInStream uint64
	// orphans are acked messages the broker did not remove (see tryStreamLeft).
	orphans  uint64
	poisoned int
}

// measure reads the commands table, the stream and the poison queue.
func (f *fixture) measure(t *testing.T) outcome {
	t.Helper()
	ctx := t.Context()
	o := outcome{perUser: map[string]int{}, payloads: map[string][][]byte{}}
	// The stream first: an event acked after this count was committed
	// before its ack, so the commands counted next include it.
	left, orphans, err := f.tryStreamLeft(ctx)
	if err != nil {
		t.Fatalf("stream %s: %v", streamName, err)
	}
	o.leftInStream, o.orphans = left, orphans
	if err := f.db.SQL.QueryRowContext(ctx,
		`SELECT COUNT(*), COUNT(DISTINCT uuid) FROM watermill_profile_sync_commands`).Scan(&o.committed, &o.distinct); err != nil {
		t.Fatalf("count commands: %v", err)
	}
	rows, err := f.db.SQL.QueryContext(ctx, `SELECT payload FROM watermill_profile_sync_commands`)
	if err != nil {
		t.Fatalf("read commands: %v", err)
	}
	defer rows.Close()
	for rows.Next() {
		var payload []byte
		if err := rows.Scan(&payload); err != nil {
			t.Fatal(err)
		}
		var cmd struct {
			UserID string `json:"user_id"`
			Source struct {
				DeliveryAttempt int `json:"delivery_attempt"`
			} `json:"source"`
		}
		if err := json.Unmarshal(payload, &cmd); err != nil {
			t.Fatalf("command payload is not JSON: %v: %s", err, payload)
		}
		o.perUser[cmd.UserID]++
		o.payloads[cmd.UserID] = append(o.payloads[cmd.UserID], payload)
		if cmd.Source.DeliveryAttempt > 1 {
			o.redelivered++
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if o.poisoned, err = f.db.CountPoison(ctx); err != nil {
		t.Fatal(err)
	}
	return o
}

// problems lists every way o breaks "nothing lost, nothing duplicated,
// nothing poisoned": each user in must has exactly one command, each in
// may at most one, and no command belongs to anyone else.
func problems(o outcome, must, may []string) []string {
	var out []string
	var lost, dup []string
	known := make(map[string]bool, len(must)+len(may))
	for _, id := range must {
		known[id] = true
		switch n := o.perUser[id]; {
		case n == 0:
			lost = append(lost, id)
		case n > 1:
			dup = append(dup, fmt.Sprintf("%s×%d", id, n))
		}
	}
	for _, id := range may {
		known[id] = true
		if n := o.perUser[id]; n > 1 {
			dup = append(dup, fmt.Sprintf("%s×%d", id, n))
		}
	}
	var stray []string
	for id := range o.perUser {
		if !known[id] {
			stray = append(stray, id)
		}
	}
	if len(lost) > 0 {
		out = append(out, fmt.Sprintf("%d events lost (no command), e.g. %s", len(lost), sample(lost)))
	}
	if len(dup) > 0 {
		out = append(out, fmt.Sprintf("%d events with more than one command, e.g. %s", len(dup), sample(dup)))
	}
	if len(stray) > 0 {
		out = append(out, fmt.Sprintf("%d commands for users never published, e.g. %s", len(stray), sample(stray)))
	}
	return append(out, endProblems(o)...)
}

// endProblems lists what every scenario must end without, whatever its
// events: a command stored twice, a message left in the stream, a poison
// entry.
func endProblems(o outcome) []string {
	var out []string
	if o.committed != o.distinct {
		out = append(out, fmt.Sprintf("%d commands but %d distinct uuids", o.committed, o.distinct))
	}
	if o.leftInStream != 0 {
		out = append(out, fmt.Sprintf("%d messages left in the stream", o.leftInStream))
	}
	if o.poisoned != 0 {
		out = append(out, fmt.Sprintf("%d poison entries, want none (faults are transient)", o.poisoned))
	}
	return out
}

func sample(ids []string) string {
	slices.Sort(ids)
	if len(ids) > 3 {
		return strings.Join(ids[:3], ", ") + ", …"
	}
	return strings.Join(ids, ", ")
}

// verify measures the end state, logs the scenario's one-line summary, and
// fails the test on every problem. extra is appended to the summary
// (key=value pairs).
func (f *fixture) verify(t *testing.T, must, may []string, extra string) {
	t.Helper()
	o := f.measure(t)
	t.Log(f.summary(o, len(must)+len(may), extra))
	for _, p := range problems(o, must, may) {
		t.Error(p)
	}
}

// summary is a scenario's one-line report of o, after published events;
// extra is appended (key=value pairs).
func (f *fixture) summary(o outcome, published int, extra string) string {
	line := fmt.Sprintf("scenario=%s published=%d committed=%d distinct=%d left_in_stream=%d poisoned=%d backend=%s redelivered_commits=%d",
		f.name, published, o.committed, o.distinct, o.leftInStream, o.poisoned, f.backend, o.redelivered)
	if o.orphans > 0 {
		line += fmt.Sprintf(" acked_left_by_broker=%d", o.orphans)
	}
	if extra != "" {
		line += " " + extra
	}
	return line
}
