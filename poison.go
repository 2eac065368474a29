package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/social/user-events-router/configs"
	"github.com/social/user-events-router/router"
	"github.com/social/user-events-router/store"
)

const poisonUsage = `usage: user-events-router poison <command> [flags]

commands:
  list    [--reason TEXT] [--class CLASS] [--subject S] [--since WHEN] [--until WHEN] [--limit N] [--json]
  show    ID [--json]
  replay  ID... | --all [filters] [--dry-run] [--json]
  delete  ID... | --all [filters] --yes

ID is an entry id or a unique prefix of it (at least 8 characters, as list
shows). CLASS is permanent, panic or transient_exhausted. WHEN is a duration
before now (2h) or an RFC 3339 time. The filters of --all are list's.
replay and delete exit 1 when any entry was not replayed or deleted.

They work on the database directly (DATABASE_URL, else DATA_DIR); no router
needs to run.
`

// Results of replay besides router's, for ids that could not be replayed.
const (
	replayNotFound = "not_found"
	replayError    = "error"
)

// poisonCommand inspects and acts on the poison queue.
func poisonCommand(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, poisonUsage)
		return usagef("poison: missing command (list, show, replay or delete)")
	}
	sub, args := args[0], args[1:]
	var err error
	switch sub {
	case "list":
		err = poisonList(ctx, args, getenv, stdout, stderr)
	case "show":
		err = poisonShow(ctx, args, getenv, stdout, stderr)
	case "replay":
		err = poisonReplay(ctx, args, getenv, stdout, stderr)
	case "delete":
		err = poisonDelete(ctx, args, getenv, stdout, stderr)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, poisonUsage)
		return nil
	default:
		fmt.Fprint(stderr, poisonUsage)
		return usagef("poison: unknown command %q (want list, show, replay or delete)", sub)
	}
	if errors.Is(err, flag.ErrHelp) {
		return nil // -h printed the flags
	}
	return err
}

func poisonList(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := poisonFlagSet("list", "[flags]", stderr)
	var q router.PoisonQuery
	addFilterFlags(fs, &q)
	asJSON := fs.Bool("json", false, "print a JSON array of full entries")
	rest, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return usagef("poison list: unexpected argument %q (list takes only flags)", rest[0])
	}
	f, err := filterFlags("list", q)
	if err != nil {
		return err
	}
	_, db, err := openPoisonReader(ctx, getenv)
	if err != nil {
		return err
	}
	defer db.Close()

	entries, err := db.ListPoison(ctx, f)
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(stdout, router.NewPoisonJSONList(entries))
	}
	printPoisonTable(stdout, entries)
	return nil
}

func poisonShow(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := poisonFlagSet("show", "ID [flags]", stderr)
	asJSON := fs.Bool("json", false, "print the entry as JSON")
	ids, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(ids) != 1 {
		return usagef("poison show: want exactly one ID, got %d", len(ids))
	}
	_, db, err := openPoisonReader(ctx, getenv)
	if err != nil {
		return err
	}
	defer db.Close()

	e, err := db.GetPoison(ctx, ids[0])
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(stdout, router.NewPoisonJSON(e))
	}
	printPoisonEntry(stdout, e)
	return nil
}

func poisonReplay(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := poisonFlagSet("replay", "ID... | --all [flags]", stderr)
	sel := addSelectionFlags(fs, "replay")
	dryRun := fs.Bool("dry-run", false, "only say what would become of each entry; write nothing")
	asJSON := fs.Bool("json", false, "print the results as a JSON array")
	if err := sel.parse(fs, args); err != nil {
		return err
	}
	open := openPoisonStore
	if *dryRun {
		open = openPoisonReader
	}
	cfg, db, err := open(ctx, getenv)
	if err != nil {
		return err
	}
	defer db.Close()
	replayer, closeReplayer, err := newReplayer(cfg, db, newLogger(cfg, stderr))
	if err != nil {
		return err
	}
	defer closeReplayer()
	ids, err := sel.resolve(ctx, db)
	if err != nil {
		return err
	}

	results := make([]router.ReplayResult, 0, len(ids))
	for _, id := range ids {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("poison replay: stopped after %d of %d entries: %w", len(results), len(ids), err)
		}
		res, err := replayer.Replay(ctx, id, *dryRun)
		if err != nil {
			res = router.ReplayResult{ID: id, Result: replayError, Reason: err.Error()}
			if errors.Is(err, store.ErrPoisonNotFound) {
				res.Result = replayNotFound
			}
		}
		results = append(results, res)
	}
	if *asJSON {
		if err := printJSON(stdout, results); err != nil {
			return err
		}
	} else {
		printReplayResults(stdout, results, *dryRun)
	}
	return replayFailure(results)
}

func poisonDelete(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := poisonFlagSet("delete", "ID... | --all [flags] --yes", stderr)
	sel := addSelectionFlags(fs, "delete")
	yes := fs.Bool("yes", false, "confirm: deleting is permanent")
	if err := sel.parse(fs, args); err != nil {
		return err
	}
	if !*yes {
		return usagef("poison delete: deleting is permanent; add --yes to confirm (nothing was deleted)")
	}
	_, db, err := openPoisonStore(ctx, getenv)
	if err != nil {
		return err
	}
	defer db.Close()
	ids, err := sel.resolve(ctx, db)
	if err != nil {
		return err
	}

	var failed []error
	deleted := 0
	for _, id := range ids {
		// Resolve a prefix first: DeletePoison takes exact ids only.
		e, err := db.GetPoison(ctx, id)
		if err == nil {
			err = db.DeletePoison(ctx, e.ID)
		}
		if err != nil {
			fmt.Fprintf(stdout, "not deleted %s: %s\n", displayable(id), displayable(err.Error()))
			failed = append(failed, err)
			continue
		}
		deleted++
		fmt.Fprintf(stdout, "deleted %s  %s  %s  %s\n", e.ID, orDash(e.Class), orDash(displayable(e.Subject)), clip(displayable(e.Reason), reasonWidth))
	}
	fmt.Fprintf(stdout, "deleted %s\n", countOf(deleted, "entry", "entries"))
	if len(failed) > 0 {
		return fmt.Errorf("poison delete: %d of %d not deleted: %w", len(failed), len(ids), failed[0])
	}
	return nil
}

// newReplayer builds the replayer over the pipeline every event passes
// through: dispatcher committing to the SQL commands table with the users'
// ledger, behind the router's middleware chain. MaxDeliver is -1
// (unlimited): a transient failure during a replay leaves the entry as it
// was, to be replayed later. The returned func releases the committer.
func newReplayer(cfg configs.Config, db *store.DB, logger *slog.Logger) (*router.Replayer, func(), error) {
	// Replays are few and one at a time: one committer worker, no waiting
	// for a batch to fill.
	committer, err := db.GroupCommitter(store.GroupOptions{MaxBatch: 1, Workers: 1, Timeout: cfg.HandlerTimeout})
	if err != nil {
		return nil, nil, err
	}
	closeFunc := func() { _ = committer.Close() }
	dispatcher, chain, err := buildHandling(cfg, db, committer, -1, nil, logger)
	if err != nil {
		closeFunc()
		return nil, nil, err
	}
	pipeline, err := router.NewPipeline(dispatcher, chain)
	if err != nil {
		closeFunc()
		return nil, nil, err
	}
	replayer, err := router.NewReplayer(db, pipeline)
	if err != nil {
		closeFunc()
		return nil, nil, err
	}
	return replayer, closeFunc, nil
}

// openPoisonStore opens the database for replay and delete, creating or
// upgrading the tables as the router does.
func openPoisonStore(ctx context.Context, getenv func(string) string) (configs.Config, *store.DB, error) {
	cfg, err := loadConfig(getenv)
	if err != nil {
		return cfg, nil, err
	}
	db, err := openStore(ctx, cfg)
	return cfg, db, err
}

// openPoisonReader opens the database for list, show and a replay dry
// run, which change nothing: read-only, creating no file and no table, and
// failing with the reason when the router has not prepared it.
func openPoisonReader(ctx context.Context, getenv func(string) string) (configs.Config, *store.DB, error) {
	cfg, err := loadConfig(getenv)
	if err != nil {
		return cfg, nil, err
	}
	db, err := openReadOnlyStore(ctx, cfg)
	return cfg, db, err
}

func poisonFlagSet(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("poison "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: user-events-router poison %s %s\n\nflags:\n", name, synopsis)
		fs.PrintDefaults()
	}
	return fs
}

func addFilterFlags(fs *flag.FlagSet, q *router.PoisonQuery) {
	fs.StringVar(&q.Reason, "reason", "", "only entries whose reason contains `TEXT` (any case)")
	fs.StringVar(&q.Class, "class", "", "only entries of `CLASS`: permanent, panic or transient_exhausted")
	fs.StringVar(&q.Subject, "subject", "", "only entries from `SUBJECT` (e.g. user.events.created)")
	fs.StringVar(&q.Since, "since", "", "only entries that last failed at or after `WHEN`: a duration before now (2h) or an RFC 3339 time")
	fs.StringVar(&q.Until, "until", "", "only entries that last failed at or before `WHEN` (as --since)")
	fs.StringVar(&q.Limit, "limit", "", "at most `N` entries, oldest first")
}

// parseArgs parses fs's flags wherever they stand among the arguments
// (`show ID --json` as well as `show --json ID`) and returns the others.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var rest []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usageError{fmt.Errorf("%s: %w", fs.Name(), err)}
		}
		args = fs.Args()
		if len(args) == 0 {
			return rest, nil
		}
		rest, args = append(rest, args[0]), args[1:]
	}
}

// filterFlags validates the filter flags, naming each bad one as a flag.
func filterFlags(cmd string, q router.PoisonQuery) (store.PoisonFilter, error) {
	f, err := q.Filter(time.Now())
	if err == nil {
		return f, nil
	}
	errs := []error{err}
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		errs = joined.Unwrap()
	}
	msgs := make([]string, 0, len(errs))
	for _, e := range errs {
		var pe *router.ParamError
		if errors.As(e, &pe) {
			msgs = append(msgs, fmt.Sprintf("--%s %q: %v", pe.Param, pe.Value, pe.Err))
		} else {
			msgs = append(msgs, e.Error())
		}
	}
	return f, usagef("poison %s: %s", cmd, strings.Join(msgs, "; "))
}

// selection is how replay and delete pick entries: IDs (or unique
// prefixes), or --all narrowed by list's filters.
type selection struct {
	cmd    string
	query  router.PoisonQuery
	all    bool
	ids    []string
	filter store.PoisonFilter
}

func addSelectionFlags(fs *flag.FlagSet, cmd string) *selection {
	s := &selection{cmd: cmd}
	addFilterFlags(fs, &s.query)
	fs.BoolVar(&s.all, "all", false, cmd+" every entry (matching the filters)")
	return s
}

// parse parses fs and checks that it got either IDs or --all.
func (s *selection) parse(fs *flag.FlagSet, args []string) error {
	ids, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	switch {
	case s.all && len(ids) > 0:
		return usagef("poison %s: give entry IDs or --all, not both", s.cmd)
	case !s.all && len(ids) == 0:
		return usagef("poison %s: give the IDs of the entries, or --all", s.cmd)
	case !s.all && s.query != (router.PoisonQuery{}):
		return usagef("poison %s: the filter flags narrow --all; they do not apply to IDs", s.cmd)
	}
	s.ids = ids
	s.filter, err = filterFlags(s.cmd, s.query)
	return err
}

// resolve returns the IDs to act on: those given, or every entry --all picks.
func (s *selection) resolve(ctx context.Context, db *store.DB) ([]string, error) {
	if !s.all {
		return s.ids, nil
	}
	entries, err := db.ListPoison(ctx, s.filter)
	if err != nil {
		return nil, err
	}
	ids := make([]string, len(entries))
	for i, e := range entries {
		ids[i] = e.ID
	}
	return ids, nil
}

// reasonWidth is how much of a reason fits a table row.
const reasonWidth = 60

func printPoisonTable(w io.Writer, entries []store.PoisonEntry) {
	if len(entries) > 0 {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tCLASS\tSUBJECT\tFAILURES\tLAST FAILURE\tREASON")
		for _, e := range entries {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", shortID(e.ID), orDash(e.Class), orDash(displayable(e.Subject)),
				e.Failures, formatTime(e.LastFailure), clip(displayable(e.Reason), reasonWidth))
		}
		tw.Flush()
	}
	fmt.Fprintln(w, countOf(len(entries), "entry", "entries"))
}

func printPoisonEntry(w io.Writer, e store.PoisonEntry) {
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', 0)
	for _, f := range []struct{ name, value string }{
		{"id", e.ID},
		{"class", e.Class},
		{"reason", e.Reason},
		{"subject", e.Subject},
		{"handler", e.Handler},
		{"ingress", e.Ingress},
		{"correlation_id", e.CorrelationID},
		{"stream", e.Stream},
		{"stream_seq", uintOrEmpty(e.StreamSeq)},
		{"delivery_count", uintOrEmpty(e.DeliveryCount)},
		{"first_failure_at", formatTime(e.FirstFailure)},
		{"last_failure_at", formatTime(e.LastFailure)},
		{"failures", strconv.Itoa(e.Failures)},
	} {
		fmt.Fprintf(tw, "%s:\t%s\n", f.name, orDash(displayable(f.value)))
	}
	tw.Flush()

	p := e.Payload
	var pretty bytes.Buffer
	switch {
	case len(p) == 0:
		fmt.Fprintln(w, "\npayload: (empty)")
	case json.Valid(p) && utf8.Valid(p) && json.Indent(&pretty, p, "", "  ") == nil && !hasUnsafe(pretty.String()):
		fmt.Fprintf(w, "\npayload (%d bytes, JSON):\n%s\n", len(p), pretty.Bytes())
	default:
		// Not JSON (or JSON carrying control characters): show the bytes
		// exactly, in a form that cannot drive the terminal.
		fmt.Fprintf(w, "\npayload (%d bytes, not JSON):\n%q\n\n%s", len(p), p, hex.Dump(p))
	}
	if e.Stack != "" {
		fmt.Fprintf(w, "\nstack:\n%s\n", strings.TrimRight(e.Stack, "\n"))
	}
}

// replayResultOrder is the order of the replay summary: successes first.
var replayResultOrder = []string{
	router.ReplayCommitted, router.ReplayWouldCommit, router.ReplayStillFailing, router.ReplayWouldFail,
	router.ReplayRetryLater, replayNotFound, replayError,
}

func printReplayResults(w io.Writer, results []router.ReplayResult, dryRun bool) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	counts := map[string]int{}
	for _, r := range results {
		detail := clip(displayable(r.Reason), 2*reasonWidth)
		if r.CommandID != "" {
			detail = r.CommandType + " " + r.CommandID
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", displayable(r.ID), r.Result, detail)
		counts[r.Result]++
	}
	tw.Flush()
	var parts []string
	for _, result := range replayResultOrder {
		if counts[result] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", counts[result], strings.ReplaceAll(result, "_", " ")))
		}
	}
	summary := countOf(len(results), "entry", "entries")
	if len(parts) > 0 {
		summary += ": " + strings.Join(parts, ", ")
	}
	if dryRun {
		summary = "dry run, nothing written: " + summary
	}
	fmt.Fprintln(w, summary)
}

// replayFailure is the exit status of replay: an error when any entry did
// not (or, in a dry run, would not) leave the queue with its command.
func replayFailure(results []router.ReplayResult) error {
	var failing, wouldFail, later, missing int
	for _, r := range results {
		switch r.Result {
		case router.ReplayCommitted, router.ReplayWouldCommit:
		case router.ReplayStillFailing:
			failing++
		case router.ReplayWouldFail:
			wouldFail++
		case replayNotFound:
			missing++
		default: // retry_later, error
			later++
		}
	}
	var why []string
	if failing > 0 {
		why = append(why, fmt.Sprintf("%d still failing (kept in the queue with the new reason)", failing))
	}
	if wouldFail > 0 {
		why = append(why, fmt.Sprintf("%d would fail again", wouldFail))
	}
	if later > 0 {
		why = append(why, fmt.Sprintf("%d to retry later (the entry is unchanged)", later))
	}
	if missing > 0 {
		why = append(why, fmt.Sprintf("%d not found", missing))
	}
	if len(why) == 0 {
		return nil
	}
	return fmt.Errorf("poison replay: %d of %d not replayed: %s", failing+wouldFail+later+missing, len(results), strings.Join(why, ", "))
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func shortID(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

func uintOrEmpty(n uint64) string {
	if n == 0 {
		return ""
	}
	return strconv.FormatUint(n, 10)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func countOf(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.Itoa(n) + " " + many
}

// clip cuts s to n runes, marking the cut with "…".
func clip(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// hasUnsafe reports control characters other than line layout, which a
// terminal could act on.
func hasUnsafe(s string) bool {
	return strings.ContainsFunc(s, func(r rune) bool {
		return unicode.IsControl(r) && r != '\n' && r != '\t' && r != '\r'
	})
}

// displayable escapes control characters (and tabs and newlines, which
// would break a table row) in text that came from outside.
func displayable(s string) string {
	if !strings.ContainsFunc(s, unicode.IsControl) && utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	for i, r := range s {
		switch {
		case r == utf8.RuneError && !strings.HasPrefix(s[i:], "\uFFFD"):
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case unicode.IsControl(r):
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}
