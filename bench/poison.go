package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"

	"github.com/social/user-events-router/store"
)

// PoisonReport is the outcome of a -poison run: how the poison queue's
// commands and API answer with N entries in it.
type PoisonReport struct {
	Mode     string  `json:"mode"` // poison
	Backend  string  `json:"backend"`
	Database string  `json:"database"`
	Entries  int     `json:"entries"`
	Machine  Machine `json:"machine"`
	// PayloadBytes is the total of the seeded payloads.
	PayloadBytes int64   `json:"payload_bytes"`
	SeedS        float64 `json:"seed_s"`

	// CLI runs of the router binary, each a fresh process.
	CLI []CLIRun `json:"cli"`
	// API requests to one router, idle before and after.
	API []APIRequest `json:"api"`
	// RouterIdleRSSBytes is the router's RSS before the requests;
	// RouterPeakRSSBytes its high-water mark while serving them (reset to
	// the idle RSS first, through /proc/<pid>/clear_refs).
	RouterIdleRSSBytes int64  `json:"router_idle_rss_bytes"`
	RouterPeakRSSBytes int64  `json:"router_peak_rss_bytes"`
	RouterPeakNote     string `json:"router_peak_note,omitempty"`
	// DeleteAll is `poison delete --all --yes`.
	DeleteAll *CLIRun `json:"delete_all"`

	Checks []Check `json:"checks"`
}

// CLIRun is one `user-events-router poison …` process.
type CLIRun struct {
	Args        []string `json:"args"`
	Seconds     float64  `json:"seconds"`
	MaxRSSBytes int64    `json:"max_rss_bytes"`
	// LastLine is the last line of its output, for the reader to check.
	LastLine string `json:"last_line"`
}

// APIRequest is one admin API request.
type APIRequest struct {
	Path    string  `json:"path"`
	Status  int     `json:"status"`
	Seconds float64 `json:"seconds"`
	Bytes   int     `json:"bytes"`
	// Note says what a console page showed of its counts.
	Note string `json:"note,omitempty"`
}

// poisonBatch is how many entries one seeding insert writes.
const poisonBatch = 500

// RunPoison seeds N poison entries into an isolated database (dropped at
// the end unless -keep), then times the queue's commands and API, as an
// operator would meet them: list and stats from the CLI, the first page,
// later pages, a filter and stats from a running router (whose RSS it
// watches), and last, delete --all.
func RunPoison(ctx context.Context, o Options) (*PoisonReport, error) {
	progress := o.Progress
	if progress == nil {
		progress = io.Discard
	}
	say := func(format string, args ...any) { fmt.Fprintf(progress, "bench: "+format+"\n", args...) }

	tmp, err := os.MkdirTemp("", "bench-poison-")
	if err != nil {
		return nil, err
	}
	defer func() {
		if o.Keep {
			say("kept %s", tmp)
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
	rep := &PoisonReport{Mode: "poison", Backend: o.Backend, Database: d.Name, Entries: o.Poison, Machine: newMachine()}

	say("seeding %d poison entries", o.Poison)
	start := time.Now()
	if rep.PayloadBytes, err = seedPoison(ctx, d.DB, o.Poison, say); err != nil {
		return rep, err
	}
	rep.SeedS = time.Since(start).Seconds()
	say("seeded in %.1fs", rep.SeedS)
	if d.Dialect != store.SQLite {
		// Fresh statistics, as autovacuum/InnoDB would have by the time
		// an operator looks at a queue this size.
		analyze := "ANALYZE " + poisonTable
		if d.Dialect == store.MySQL {
			analyze = "ANALYZE TABLE " + poisonTable
		}
		if _, err := d.DB.SQL.ExecContext(ctx, analyze); err != nil {
			return rep, fmt.Errorf("analyze: %w", err)
		}
	}

	env := routerEnv(map[string]string{"DATABASE_URL": d.RouterURL, "LOG_LEVEL": "warn", "DATA_DIR": filepath.Join(tmp, "router-data")}, o.Env)
	cli := func(args ...string) (CLIRun, error) {
		r, err := runCLI(ctx, bin, env, args...)
		if err == nil {
			rep.CLI = append(rep.CLI, r)
			say("poison %s: %.3fs, max RSS %s", strings.Join(args, " "), r.Seconds, mib(r.MaxRSSBytes))
		}
		return r, err
	}
	first, err := cli("list", "--limit", "50")
	if err != nil {
		return rep, err
	}
	wantLast := "50 of " + strconv.Itoa(o.Poison) + " entries, newest first; next page: --cursor …"
	rep.Checks = append(rep.Checks, Check{Name: "list --limit 50 says there are more", OK: strings.HasPrefix(first.LastLine, wantLast[:len(wantLast)-len("…")]),
		Got: first.LastLine, Want: wantLast})
	for _, args := range [][]string{
		{"list", "--limit", "50", "--class", "panic", "--since", "1d"},
		{"list", "--limit", "50", "--reason", "domain has no dot"},
		{"list", "--limit", "50", "--order", "oldest", "--ingress", "http"},
		{"stats"},
	} {
		if _, err := cli(args...); err != nil {
			return rep, err
		}
	}

	if err := measureAPI(ctx, o, bin, d, tmp, rep, say); err != nil {
		return rep, err
	}

	del, err := runCLI(ctx, bin, env, "delete", "--all", "--yes")
	if err != nil {
		return rep, err
	}
	rep.DeleteAll = &del
	say("poison delete --all --yes: %.3fs, max RSS %s (%s)", del.Seconds, mib(del.MaxRSSBytes), del.LastLine)
	left, err := d.count(ctx, poisonTable)
	rep.Checks = append(rep.Checks, checkEq("poison rows after delete --all = 0", left, 0, err))
	return rep, nil
}

// measureAPI starts the router, lets it settle, resets its RSS high-water
// mark, makes the requests and reads the mark again.
func measureAPI(ctx context.Context, o Options, bin string, d *benchDB, tmp string, rep *PoisonReport, say func(string, ...any)) error {
	b, err := startBroker(ctx, o.NATSURL, filepath.Join(tmp, "nats"))
	if err != nil {
		return err
	}
	defer b.Close(ctx)
	if err := b.ensureEmptyStream(ctx); err != nil {
		return err
	}
	defer b.cleanup(ctx, o.Keep)
	adminAddr, err := freeAddr()
	if err != nil {
		return err
	}
	httpAddr, err := freeAddr()
	if err != nil {
		return err
	}
	settings := map[string]string{
		"NATS_URL": b.URL, "DATABASE_URL": d.RouterURL, "HTTP_ADDR": httpAddr, "ADMIN_ADDR": adminAddr,
		"LOG_LEVEL": "warn", "DATA_DIR": filepath.Join(tmp, "router-data"),
	}
	proc, err := startRouter(bin, routerEnv(settings, o.Env), adminAddr, filepath.Join(tmp, "router.log"))
	if err != nil {
		return err
	}
	defer func() {
		if err := proc.Stop(); err != nil {
			say("%v", err)
		}
	}()
	if _, err := proc.waitReady(ctx); err != nil {
		return err
	}
	// Idle: a scrape (the metrics' queue-depth gauge counts the queue)
	// and a moment to settle.
	if _, err := proc.scrape(ctx); err != nil {
		return err
	}
	time.Sleep(2 * time.Second)
	if rep.RouterIdleRSSBytes, err = currentRSS(proc.Pid()); err != nil {
		return err
	}
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", proc.Pid()), []byte("5"), 0); err != nil {
		rep.RouterPeakNote = "could not reset the high-water mark (" + err.Error() + "): the peak includes the router's start"
	}
	say("router idle: RSS %s", mib(rep.RouterIdleRSSBytes))

	base := "http://" + adminAddr
	// A cookie jar: the console opens a session on the first visit.
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar}
	get := func(path string) ([]byte, error) {
		start := time.Now()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
		resp, err := client.Do(req)
		if err != nil {
			return nil, fmt.Errorf("GET %s: %w", path, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		r := APIRequest{Path: path, Status: resp.StatusCode, Seconds: time.Since(start).Seconds(), Bytes: len(body)}
		switch {
		case bytes.Contains(body, []byte(`id="stats-pending"`)):
			r.Note = "counts still being taken"
		case bytes.Contains(body, []byte(`id="stats-at"`)):
			r.Note = "with counts"
		}
		rep.API = append(rep.API, r)
		say("GET %s: %d, %.3fs, %d bytes", path, r.Status, r.Seconds, r.Bytes)
		if err != nil || resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("GET %s: status %d: %v", path, resp.StatusCode, err)
		}
		return body, nil
	}
	var page struct {
		Entries []struct {
			ID string `json:"id"`
		} `json:"entries"`
		Total      int     `json:"total"`
		NextCursor *string `json:"next_cursor"`
	}
	body, err := get("/admin/poison?limit=50")
	if err != nil {
		return err
	}
	if err := json.Unmarshal(body, &page); err != nil {
		return fmt.Errorf("first page: %w", err)
	}
	rep.Checks = append(rep.Checks, checkEq("first page: 50 entries", len(page.Entries), 50, nil), checkEq("first page: total = N", page.Total, rep.Entries, nil))
	// Nine more pages by cursor, then the other requests an operator
	// makes, including the unbounded one that used to take 1.66 GB.
	for range 9 {
		if page.NextCursor == nil {
			break
		}
		if body, err = get("/admin/poison?limit=50&cursor=" + url.QueryEscape(*page.NextCursor)); err != nil {
			return err
		}
		if err := json.Unmarshal(body, &page); err != nil {
			return err
		}
	}
	for _, path := range []string{
		"/admin/poison",
		"/admin/poison?limit=1000",
		"/admin/poison?class=panic&since=1d&limit=50",
		"/admin/poison?reason=domain+has+no+dot&limit=50",
		"/admin/poison?ingress=http&order=oldest&limit=50",
		"/admin/poison/stats",
		// The console's first page (list, counts by class and reason) and a
		// filtered one, as an operator opens them.
		"/admin/ui/",
		"/admin/ui/?class=panic",
	} {
		if _, err := get(path); err != nil {
			return err
		}
	}
	// The console's pages again, until they show their counts (taken in
	// the background when they took longer than the page waits).
	for _, path := range []string{"/admin/ui/", "/admin/ui/?class=panic"} {
		for deadline := time.Now().Add(time.Minute); ; {
			body, err := get(path)
			if err != nil {
				return err
			}
			if !bytes.Contains(body, []byte(`id="stats-pending"`)) || time.Now().After(deadline) {
				break
			}
			time.Sleep(time.Second)
		}
	}
	if len(page.Entries) > 0 {
		if _, err := get("/admin/poison/" + page.Entries[0].ID); err != nil {
			return err
		}
	}
	if rep.RouterPeakRSSBytes, err = peakRSS(proc.Pid()); err != nil {
		return err
	}
	say("router peak RSS while serving: %s (%+.1f MiB over idle)", mib(rep.RouterPeakRSSBytes), float64(rep.RouterPeakRSSBytes-rep.RouterIdleRSSBytes)/(1<<20))
	return nil
}

// runCLI runs `bin poison args…` and measures its wall time and peak RSS.
func runCLI(ctx context.Context, bin string, env []string, args ...string) (CLIRun, error) {
	cmd := exec.CommandContext(ctx, bin, append([]string{"poison"}, args...)...)
	cmd.Env = env
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	start := time.Now()
	err := cmd.Run()
	r := CLIRun{Args: args, Seconds: time.Since(start).Seconds()}
	if err != nil {
		return r, fmt.Errorf("poison %s: %w\n%s", strings.Join(args, " "), err, tail2(errOut.String()))
	}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		r.MaxRSSBytes = ru.Maxrss * 1024 // kilobytes on Linux
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	r.LastLine = lines[len(lines)-1]
	return r, nil
}

func tail2(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-3):], "\n")
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// seedPoison writes n entries shaped like a real queue's: mostly invalid
// events (the email rule, with other values each), some exhausted retries
// and panics (with stacks), a fifth over HTTP, failures over the last week,
// and one payload in a hundred of 32 KiB, so that a query that read
// payloads would show. The inserts are watermill-sql's, a batch at a time.
func seedPoison(ctx context.Context, db *store.DB, n int, say func(string, ...any)) (int64, error) {
	pub, err := db.Publisher(watermill.NopLogger{})
	if err != nil {
		return 0, err
	}
	defer pub.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	now := time.Now().UTC()
	stack := strings.Repeat("goroutine 7 [running]:\nhandlers.build(...)\n\t/src/handlers/created.go:42 +0x1d\n", 20)
	big := strings.Repeat("x", 32<<10)
	var total int64
	msgs := make([]*message.Message, 0, poisonBatch)
	lastSaid := time.Now()
	for i := range n {
		action := []string{"created", "updated", "deleted"}[rng.IntN(3)]
		userID := uuid.New().String()
		email := fmt.Sprintf("user%d.example", i)
		pad := ""
		if i%100 == 99 {
			pad = big
		}
		payload := fmt.Sprintf(`{"id":%q,"email":%q,"username":"user%d","action":%q,"request_id":"","timestamp":%q,"service_name":"gofiber-auth","pad":%q}`,
			userID, email, i, action, now.Format(time.RFC3339), pad)
		at := now.Add(-time.Duration(rng.Int64N(int64(7 * 24 * time.Hour))))
		e := store.PoisonEntry{
			Payload: []byte(payload), Class: "permanent", Subject: "user.events." + action, Handler: "user_" + action,
			Ingress: "nats", CorrelationID: uuid.New().String(), Stream: "USER_EVENTS", StreamSeq: uint64(i + 1), DeliveryCount: 1,
			Reason:       fmt.Sprintf(`decode user.events.%s: invalid event: email: not an email address: %q (domain has no dot)`, action, email),
			FirstFailure: at, LastFailure: at,
		}
		switch r := rng.IntN(100); {
		case r < 5:
			e.Class, e.Reason, e.Stack = "panic", "panic: runtime error: index out of range [3] with length 3", stack
		case r < 20:
			e.Class, e.Reason, e.DeliveryCount = "transient_exhausted", fmt.Sprintf("commit command %s: database is locked", uuid.New()), 3
		}
		if rng.IntN(5) == 0 {
			e.Ingress, e.Subject, e.Stream, e.StreamSeq, e.DeliveryCount = "http", "", "", 0, 0
			e.Reason = strings.Replace(e.Reason, "decode user.events."+action, "decode event", 1)
		}
		e.ID = uuid.NewSHA1(uuid.NameSpaceOID, []byte(e.Subject+"\x00"+payload)).String()
		total += int64(len(payload))
		msgs = append(msgs, e.Message())
		if len(msgs) == poisonBatch || i == n-1 {
			if err := pub.Publish(store.PoisonTopic, msgs...); err != nil {
				return total, fmt.Errorf("seed poison entries: %w", err)
			}
			msgs = msgs[:0]
			if time.Since(lastSaid) > 10*time.Second {
				say("seeded %d of %d", i+1, n)
				lastSaid = time.Now()
			}
		}
		if err := ctx.Err(); err != nil {
			return total, err
		}
	}
	return total, nil
}

// WriteText prints the report for a reader.
func (r *PoisonReport) WriteText(w io.Writer) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	p("poison queue, %s (%s), %d entries (%s of payloads), seeded in %.1fs; %d cores, load %.1f, %s",
		r.Backend, r.Database, r.Entries, mib(r.PayloadBytes), r.SeedS, r.Machine.Cores, r.Machine.LoadAvg1, r.Machine.GoVersion)
	p("")
	p("CLI (a process each)                                             time     max RSS")
	for _, c := range r.CLI {
		p("  %-62s %6.3fs  %9s", "poison "+strings.Join(c.Args, " "), c.Seconds, mib(c.MaxRSSBytes))
	}
	if r.DeleteAll != nil {
		p("  %-62s %6.3fs  %9s   (%s)", "poison "+strings.Join(r.DeleteAll.Args, " "), r.DeleteAll.Seconds, mib(r.DeleteAll.MaxRSSBytes), r.DeleteAll.LastLine)
	}
	p("")
	p("admin API (one router)                                           time     bytes")
	for _, a := range r.API {
		path := a.Path
		if len(path) > 62 {
			path = path[:61] + "…"
		}
		p("  %-62s %6.3fs  %8d  %s", path, a.Seconds, a.Bytes, a.Note)
	}
	p("  router RSS: idle %s, peak while serving %s (%+.1f MiB)", mib(r.RouterIdleRSSBytes), mib(r.RouterPeakRSSBytes),
		float64(r.RouterPeakRSSBytes-r.RouterIdleRSSBytes)/(1<<20))
	if r.RouterPeakNote != "" {
		p("  (%s)", r.RouterPeakNote)
	}
	p("")
	for _, c := range r.Checks {
		mark := "ok  "
		if !c.OK {
			mark = "FAIL"
		}
		p("check %s %s (%s)", mark, c.Name, c.Got)
	}
}

// WriteJSON prints the report as JSON.
func (r *PoisonReport) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// Failed names the failed checks.
func (r *PoisonReport) Failed() []string {
	var out []string
	for _, c := range r.Checks {
		if !c.OK {
			out = append(out, fmt.Sprintf("%s: got %s, want %s", c.Name, c.Got, c.Want))
		}
	}
	return out
}
