package cli

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
	"github.com/social/user-events-router/router/admin"
	"github.com/social/user-events-router/store"
)

const poisonUsage = `usage: user-events-router poison <command> [flags]

commands:
  list    [FILTERS] [--order newest|oldest] [--limit N] [--cursor C] [--json]
  show    ID [--json]
  stats   [FILTERS] [--json]
  replay  ID... | --all [FILTERS] [--dry-run] [--json]
  delete  ID... | --all [FILTERS] --yes

FILTERS: --class CLASS  --subject S  --ingress nats|http  --correlation-id ID
         --user-id UUID  --reason-kind KIND  --reason TEXT  --since WHEN  --until WHEN

ID is an entry id or a unique prefix of it (at least 8 characters, as list
shows). CLASS is permanent, panic or transient_exhausted. WHEN is a duration
before now (30m, 2h, 1d) or an RFC 3339 time. KIND is a reason without its
values, as stats shows it.

list shows the newest 50 entries (--limit, at most 1000) and how to get
the next page. replay and delete exit 1 when any entry was not replayed or
deleted; with --all they work in batches and report progress on stderr.

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
		return usagef("poison: missing command (list, show, stats, replay or delete)")
	}
	sub, args := args[0], args[1:]
	var err error
	switch sub {
	case "list":
		err = poisonList(ctx, args, getenv, stdout, stderr)
	case "show":
		err = poisonShow(ctx, args, getenv, stdout, stderr)
	case "stats":
		err = poisonStats(ctx, args, getenv, stdout, stderr)
	case "replay":
		err = poisonReplay(ctx, args, getenv, stdout, stderr)
	case "delete":
		err = poisonDelete(ctx, args, getenv, stdout, stderr)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, poisonUsage)
		return nil
	default:
		fmt.Fprint(stderr, poisonUsage)
		return usagef("poison: unknown command %s (want list, show, stats, replay or delete)", strconv.QuoteToASCII(sub))
	}
	if errors.Is(err, flag.ErrHelp) {
		return nil // -h printed the flags
	}
	return err
}

func poisonList(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := poisonFlagSet("list", "[flags]", "Lists entries, the last failed first, a page at a time, and how to get the\nnext page. It changes nothing.")
	var q admin.PoisonQuery
	addFilterFlags(fs.FlagSet, &q)
	fs.StringVar(&q.Order, "order", "", "`ORDER` of last failure: newest (the default) or oldest")
	fs.StringVar(&q.Limit, "limit", "", fmt.Sprintf("at most `N` entries (1 to %d; default %d)", store.MaxPoisonPageSize, store.DefaultPoisonPageSize))
	fs.StringVar(&q.Cursor, "cursor", "", "start after `C`, the cursor the page before ended with")
	asJSON := fs.Bool("json", false, "print the page as JSON: entries (without payloads), total, next_cursor")
	rest, err := parseArgs(fs, args, stdout)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return usagef("poison list: unexpected argument %s (list takes only flags)", strconv.QuoteToASCII(rest[0]))
	}
	req, err := q.Page(time.Now())
	if err != nil {
		return flagErrors("list", err)
	}
	_, db, err := openPoisonReader(ctx, getenv)
	if err != nil {
		return err
	}
	defer db.Close()

	page, err := db.ListPoison(ctx, req)
	if errors.Is(err, store.ErrInvalidPoisonQuery) { // a cursor that is not one
		return usageError{fmt.Errorf("poison list: %w", err)}
	}
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(stdout, admin.NewPoisonPageJSON(page, req))
	}
	printPoisonTable(stdout, page, req)
	return nil
}

func poisonShow(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := poisonFlagSet("show", "ID [flags]", "Shows one entry whole: every field, the payload pretty-printed (a hex\ndump if it is not JSON); --json as the admin API gives it. It changes\nnothing.")
	asJSON := fs.Bool("json", false, "print the entry as JSON")
	ids, err := parseArgs(fs, args, stdout)
	if err != nil {
		return err
	}
	if len(ids) != 1 {
		return usagef("poison show: want exactly one ID, got %d", len(ids))
	}
	if err := store.CheckPoisonID(ids[0]); err != nil {
		return usageError{fmt.Errorf("poison show: %w", err)}
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
		return printJSON(stdout, admin.NewPoisonJSON(e))
	}
	printPoisonEntry(stdout, e)
	return nil
}

// poisonStatsTop is how many groups of each dimension stats shows.
const poisonStatsTop = 20

func poisonStats(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := poisonFlagSet("stats", "[flags]", "Counts the entries by class, reason kind, subject and ingress, with the\noldest and newest. It changes nothing.")
	var q admin.PoisonQuery
	addFilterFlags(fs.FlagSet, &q)
	asJSON := fs.Bool("json", false, "print the counts as JSON")
	rest, err := parseArgs(fs, args, stdout)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return usagef("poison stats: unexpected argument %s (stats takes only flags)", strconv.QuoteToASCII(rest[0]))
	}
	f, err := q.Filter(time.Now())
	if err != nil {
		return flagErrors("stats", err)
	}
	_, db, err := openPoisonReader(ctx, getenv)
	if err != nil {
		return err
	}
	defer db.Close()

	s, err := db.PoisonStats(ctx, f, poisonStatsTop)
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(stdout, admin.NewPoisonStatsJSON(s))
	}
	printPoisonStats(stdout, s)
	return nil
}

func poisonReplay(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := poisonFlagSet("replay", "ID... | --all [flags]", "Runs entries through the router's chain again: one that commits is\ndeleted, one that fails again stays, with its new reason. Exits 1 when\nany entry was not replayed.")
	sel := addSelectionFlags(fs.FlagSet, "replay")
	dryRun := fs.Bool("dry-run", false, "only say what would become of each entry; write nothing")
	asJSON := fs.Bool("json", false, "print the results as a JSON array")
	if err := sel.parse(fs, args, stdout); err != nil {
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

	out := newReplayOutput(stdout, *asJSON, sel.all, *dryRun)
	var stopped error
	if sel.all {
		total, err := db.CountPoisonMatching(ctx, sel.filter)
		if err != nil {
			return err
		}
		p := newProgress(stderr, total, time.Second, time.Now, poisonLine("replay"))
		stopped = replayer.ReplayMatching(ctx, sel.filter, *dryRun, func(res router.ReplayResult, err error) error {
			out.add(replayResultOf(res.ID, res, err))
			p.update(out.count())
			return nil
		})
		p.done(out.count())
	} else {
		for _, id := range sel.ids {
			if stopped = ctx.Err(); stopped != nil {
				break
			}
			res, err := replayer.Replay(ctx, id, *dryRun)
			out.add(replayResultOf(id, res, err))
		}
	}
	if err := out.finish(); err != nil {
		return err
	}
	if stopped != nil {
		return fmt.Errorf("poison replay: stopped after %s: %w", countOf(out.count(), "entry", "entries"), stopped)
	}
	return out.failure()
}

// replayResultOf is the result to report for id: res, or what err means.
func replayResultOf(id string, res router.ReplayResult, err error) router.ReplayResult {
	if err == nil {
		return res
	}
	res = router.ReplayResult{ID: id, Result: replayError, Reason: err.Error()}
	if errors.Is(err, store.ErrPoisonNotFound) || errors.Is(err, store.ErrInvalidPoisonID) {
		res.Result = replayNotFound
	}
	return res
}

func poisonDelete(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := poisonFlagSet("delete", "ID... | --all [flags] --yes", "Deletes entries for good. Exits 1 when any entry was not deleted.")
	sel := addSelectionFlags(fs.FlagSet, "delete")
	yes := fs.Bool("yes", false, "confirm: deleting is permanent")
	if err := sel.parse(fs, args, stdout); err != nil {
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

	if sel.all {
		total, err := db.CountPoisonMatching(ctx, sel.filter)
		if err != nil {
			return err
		}
		p := newProgress(stderr, total, time.Second, time.Now, poisonLine("delete"))
		deleted, err := db.DeletePoisonMatching(ctx, sel.filter, p.update)
		p.done(deleted)
		fmt.Fprintf(stdout, "deleted %s\n", countOf(deleted, "entry", "entries"))
		if err != nil {
			return fmt.Errorf("poison delete: stopped after %s: %w", countOf(deleted, "entry", "entries"), err)
		}
		return nil
	}

	var failed []error
	deleted := 0
	for _, id := range sel.ids {
		// Resolve a prefix first: DeletePoison takes exact ids only.
		e, err := db.GetPoisonSummary(ctx, id)
		if err == nil {
			err = db.DeletePoison(ctx, e.ID)
		}
		if err != nil {
			fmt.Fprintf(stdout, "not deleted %s: %s\n", cell(id), cell(err.Error()))
			failed = append(failed, err)
			continue
		}
		deleted++
		fmt.Fprintf(stdout, "deleted %s  %s  %s  %s\n", e.ID, orDash(cell(e.Class)), orDash(cell(e.DisplaySubject())), clipWords(cell(e.Reason), reasonWidth))
	}
	fmt.Fprintf(stdout, "deleted %s\n", countOf(deleted, "entry", "entries"))
	if len(failed) > 0 {
		return fmt.Errorf("poison delete: %d of %d not deleted: %w", len(failed), len(sel.ids), failed[0])
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
	h, err := buildHandling(cfg, db, committer, -1, nil, nil, logger)
	if err != nil {
		closeFunc()
		return nil, nil, err
	}
	return h.replayer, closeFunc, nil
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

// openPoisonReader opens the database for list, show and stats, which
// change nothing: read-only, creating no file and no table (a first upgrade
// of a large queue is the router's to do, at its start), and failing with
// the reason when the router has not prepared it.
func openPoisonReader(ctx context.Context, getenv func(string) string) (configs.Config, *store.DB, error) {
	cfg, err := loadConfig(getenv)
	if err != nil {
		return cfg, nil, err
	}
	db, err := openReadOnlyStore(ctx, cfg)
	if err != nil {
		return cfg, nil, err
	}
	if err := db.CheckPoisonSchema(ctx); err != nil {
		db.Close()
		return cfg, nil, err
	}
	return cfg, db, nil
}

func poisonFlagSet(name, synopsis, what string) *commandFlags {
	return newCommandFlags("poison "+name, fmt.Sprintf("usage: user-events-router poison %s %s\n\n%s\nSee: user-events-router poison help.\n", name, synopsis, what))
}

// filterFlagNames maps PoisonQuery's parameter names to the flags that set
// them, so errors name the flag.
var filterFlagNames = map[string]string{
	"reason": "reason", "reason_kind": "reason-kind", "class": "class", "subject": "subject", "ingress": "ingress",
	"correlation_id": "correlation-id", "user_id": "user-id", "since": "since", "until": "until",
	"limit": "limit", "order": "order", "cursor": "cursor",
}

func addFilterFlags(fs *flag.FlagSet, q *admin.PoisonQuery) {
	fs.StringVar(&q.Class, "class", "", "only entries of `CLASS`: permanent, panic or transient_exhausted")
	fs.StringVar(&q.Subject, "subject", "", "only entries from `SUBJECT` (e.g. user.events.created; HTTP entries by the subject they would have had, or (http))")
	fs.StringVar(&q.Ingress, "ingress", "", "only entries that came in by `WAY`: nats or http")
	fs.StringVar(&q.CorrelationID, "correlation-id", "", "only entries with correlation id `ID`")
	fs.StringVar(&q.UserID, "user-id", "", "only entries of the user `UUID` (the event's id)")
	fs.StringVar(&q.ReasonKind, "reason-kind", "", "only entries whose reason is of `KIND` (as stats shows it)")
	fs.StringVar(&q.Reason, "reason", "", "only entries whose reason contains `TEXT` (any case)")
	fs.StringVar(&q.Since, "since", "", "only entries that last failed at or after `WHEN`: a duration before now (30m, 2h, 1d) or an RFC 3339 time")
	fs.StringVar(&q.Until, "until", "", "only entries that last failed at or before `WHEN` (as --since)")
}

// parseArgs parses fs's flags wherever they stand among the arguments
// (`show ID --json` as well as `show --json ID`) and returns the others;
// -h and mistakes as commandFlags.parse.
func parseArgs(fs *commandFlags, args []string, stdout io.Writer) ([]string, error) {
	var rest []string
	for {
		if err := fs.parse(args, stdout); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return rest, nil
		}
		rest, args = append(rest, args[0]), args[1:]
	}
}

// flagErrors turns PoisonQuery's errors into a usage error naming each bad
// flag.
func flagErrors(cmd string, err error) error {
	errs := []error{err}
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		errs = joined.Unwrap()
	}
	msgs := make([]string, 0, len(errs))
	for _, e := range errs {
		var pe *admin.ParamError
		if errors.As(e, &pe) {
			msgs = append(msgs, fmt.Sprintf("--%s %s: %v", filterFlagNames[pe.Param], strconv.QuoteToASCII(pe.Value), pe.Err))
		} else {
			msgs = append(msgs, e.Error())
		}
	}
	return usagef("poison %s: %s", cmd, strings.Join(msgs, "; "))
}

// selection is how replay and delete pick entries: IDs (or unique
// prefixes), or --all narrowed by the filters.
type selection struct {
	cmd    string
	query  admin.PoisonQuery
	all    bool
	ids    []string
	filter store.PoisonFilter
}

func addSelectionFlags(fs *flag.FlagSet, cmd string) *selection {
	s := &selection{cmd: cmd}
	addFilterFlags(fs, &s.query)
	fs.BoolVar(&s.all, "all", false, cmd+" every entry (matching the filters), in batches")
	return s
}

// parse parses fs and checks that it got either IDs or --all.
func (s *selection) parse(fs *commandFlags, args []string, stdout io.Writer) error {
	ids, err := parseArgs(fs, args, stdout)
	if err != nil {
		return err
	}
	switch {
	case s.all && len(ids) > 0:
		return usagef("poison %s: give entry IDs or --all, not both", s.cmd)
	case !s.all && len(ids) == 0:
		return usagef("poison %s: give the IDs of the entries, or --all", s.cmd)
	case !s.all && !s.query.IsZeroFilter():
		return usagef("poison %s: the filter flags narrow --all; they do not apply to IDs", s.cmd)
	}
	for _, id := range ids {
		if err := store.CheckPoisonID(id); err != nil {
			return usageError{fmt.Errorf("poison %s: %w (nothing was done)", s.cmd, err)}
		}
	}
	s.ids = ids
	if s.filter, err = s.query.Filter(time.Now()); err != nil {
		return flagErrors(s.cmd, err)
	}
	return nil
}

// reasonWidth is how much of a reason fits a table row.
const reasonWidth = 60

func printPoisonTable(w io.Writer, page store.PoisonPage, req store.PoisonPageRequest) {
	if len(page.Entries) > 0 {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tCLASS\tINGRESS\tSUBJECT\tFAILURES\tLAST FAILURE\tREASON")
		for _, e := range page.Entries {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", shortID(e.ID), orDash(cell(e.Class)), orDash(cell(e.Ingress)),
				cell(e.DisplaySubject()), e.Failures, formatTime(e.LastFailure), clipWords(cell(e.Reason), reasonWidth))
		}
		tw.Flush()
	}
	n := len(page.Entries)
	switch {
	case page.Next != "":
		fmt.Fprintf(w, "%d of %s, %s first; next page: --cursor %s\n", n, countOf(page.Total, "entry", "entries"), req.Order, page.Next)
	case page.Total > n || req.Cursor != "":
		fmt.Fprintf(w, "%d of %s, %s first; the last page\n", n, countOf(page.Total, "entry", "entries"), req.Order)
	default:
		fmt.Fprintln(w, countOf(n, "entry", "entries"))
	}
}

func printPoisonEntry(w io.Writer, e store.PoisonEntry) {
	subject := e.DisplaySubject()
	if e.Subject == "" {
		subject += "  (no NATS subject: it came in by " + orDash(e.Ingress) + ")"
	}
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', 0)
	for _, f := range []struct{ name, value string }{
		{"id", e.ID},
		{"class", e.Class},
		{"reason", e.Reason},
		{"reason_kind", e.ReasonKind},
		{"subject", subject},
		{"handler", e.Handler},
		{"ingress", e.Ingress},
		{"correlation_id", e.CorrelationID},
		{"user_id", e.UserID},
		{"action", e.Action},
		{"stream", e.Stream},
		{"stream_seq", uintOrEmpty(e.StreamSeq)},
		{"delivery_count", uintOrEmpty(e.DeliveryCount)},
		{"first_failure_at", formatTime(e.FirstFailure)},
		{"last_failure_at", formatTime(e.LastFailure)},
		{"failures", strconv.Itoa(e.Failures)},
		{"replays", strconv.Itoa(e.Replays)},
		{"last_replay_at", formatTime(e.LastReplayAt)},
	} {
		fmt.Fprintf(tw, "%s:\t%s\n", f.name, orDash(cell(f.value)))
	}
	tw.Flush()

	p := e.Payload
	var pretty bytes.Buffer
	switch {
	case len(p) == 0:
		fmt.Fprintln(w, "\npayload: (empty)")
	case json.Valid(p) && utf8.Valid(p) && json.Indent(&pretty, p, "", "  ") == nil && terminalText(pretty.String(), true) == pretty.String():
		fmt.Fprintf(w, "\npayload (%d bytes, JSON):\n%s\n", len(p), pretty.Bytes())
	default:
		// Not JSON (or JSON carrying characters a terminal would act
		// on): show the bytes exactly, in a form that cannot drive it.
		fmt.Fprintf(w, "\npayload (%d bytes, not JSON):\n%s\n\n%s", len(p), strconv.QuoteToASCII(string(p)), hex.Dump(p))
	}
	if e.Stack != "" {
		fmt.Fprintf(w, "\nstack:\n%s\n", terminalText(strings.TrimRight(e.Stack, "\n"), true))
	}
}

func printPoisonStats(w io.Writer, s store.PoisonStats) {
	fmt.Fprintln(w, countOf(s.Total, "entry", "entries"))
	if s.Oldest != nil {
		fmt.Fprintf(w, "oldest: %s  last failed %s (first %s)\n", s.Oldest.ID, formatTime(s.Oldest.LastFailure), formatTime(s.Oldest.FirstFailure))
		fmt.Fprintf(w, "newest: %s  last failed %s\n", s.Newest.ID, formatTime(s.Newest.LastFailure))
	}
	for _, d := range []struct {
		title string
		g     store.PoisonGroups
	}{
		{"CLASS", s.ByClass}, {"REASON KIND", s.ByReason}, {"SUBJECT", s.BySubject}, {"INGRESS", s.ByIngress},
	} {
		if len(d.g.Top) == 0 {
			continue
		}
		width := len("ENTRIES")
		for _, c := range d.g.Top {
			width = max(width, len(strconv.Itoa(c.Count)))
		}
		fmt.Fprintf(w, "\n%*s  %s\n", width, "ENTRIES", d.title)
		for _, c := range d.g.Top {
			fmt.Fprintf(w, "%*d  %s\n", width, c.Count, orDash(clipWords(cell(c.Key), 2*reasonWidth)))
		}
		if d.g.OtherGroups > 0 {
			fmt.Fprintf(w, "%*d  (%d more)\n", width, d.g.OtherCount, d.g.OtherGroups)
		}
	}
}

// replayOutput prints replay results: for IDs a line each and a summary;
// for --all the summary and the first entries that did not replay (the
// selection may be the whole queue); as JSON, an array written as results
// come, so that it is never held whole.
type replayOutput struct {
	w           io.Writer
	json, all   bool
	dryRun      bool
	results     []router.ReplayResult // IDs only
	counts      map[string]int
	n           int
	shownFailed int
	jsonStarted bool
}

// maxFailuresShown bounds the failures --all lists by name.
const maxFailuresShown = 10

func newReplayOutput(w io.Writer, asJSON, all, dryRun bool) *replayOutput {
	return &replayOutput{w: w, json: asJSON, all: all, dryRun: dryRun, counts: map[string]int{}}
}

func (o *replayOutput) count() int { return o.n }

func (o *replayOutput) add(r router.ReplayResult) {
	o.n++
	o.counts[r.Result]++
	switch {
	case o.json:
		sep := ",\n"
		if !o.jsonStarted {
			sep, o.jsonStarted = "[\n", true
		}
		b, _ := json.MarshalIndent(r, "  ", "  ")
		fmt.Fprintf(o.w, "%s  %s", sep, b)
	case !o.all:
		o.results = append(o.results, r)
	case !replayed(r.Result) && o.shownFailed < maxFailuresShown:
		o.shownFailed++
		fmt.Fprintf(o.w, "%s  %s  %s\n", cell(r.ID), r.Result, clipWords(cell(r.Reason), 2*reasonWidth))
	}
}

func replayed(result string) bool {
	return result == router.ReplayCommitted || result == router.ReplayWouldCommit
}

// replayResultOrder is the order of the replay summary: successes first.
var replayResultOrder = []string{
	router.ReplayCommitted, router.ReplayWouldCommit, router.ReplayStillFailing, router.ReplayWouldFail,
	router.ReplayRetryLater, replayNotFound, replayError,
}

func (o *replayOutput) finish() error {
	if o.json {
		if !o.jsonStarted {
			_, err := fmt.Fprintln(o.w, "[]")
			return err
		}
		_, err := fmt.Fprintln(o.w, "\n]")
		return err
	}
	tw := tabwriter.NewWriter(o.w, 0, 0, 2, ' ', 0)
	for _, r := range o.results {
		detail := clipWords(cell(r.Reason), 2*reasonWidth)
		if r.CommandID != "" {
			detail = r.CommandType + " " + r.CommandID
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", cell(r.ID), r.Result, detail)
	}
	tw.Flush()
	if failed := o.n - o.counts[router.ReplayCommitted] - o.counts[router.ReplayWouldCommit]; o.all && failed > o.shownFailed {
		fmt.Fprintf(o.w, "… and %d more not replayed (poison list shows them)\n", failed-o.shownFailed)
	}
	var parts []string
	for _, result := range replayResultOrder {
		if o.counts[result] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", o.counts[result], strings.ReplaceAll(result, "_", " ")))
		}
	}
	summary := countOf(o.n, "entry", "entries")
	if len(parts) > 0 {
		summary += ": " + strings.Join(parts, ", ")
	}
	if o.dryRun {
		summary = "dry run, nothing written: " + summary
	}
	_, err := fmt.Fprintln(o.w, summary)
	return err
}

// failure is the exit status of replay: an error when any entry did not
// (or, in a dry run, would not) leave the queue with its command.
func (o *replayOutput) failure() error {
	failing, wouldFail, missing := o.counts[router.ReplayStillFailing], o.counts[router.ReplayWouldFail], o.counts[replayNotFound]
	later := o.counts[router.ReplayRetryLater] + o.counts[replayError]
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
	return fmt.Errorf("poison replay: %d of %d not replayed: %s", failing+wouldFail+later+missing, o.n, strings.Join(why, ", "))
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func shortID(id string) string {
	if len(id) > 8 {
		return cell(id[:8])
	}
	return cell(id)
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

// clipWords cuts s to at most n runes, "…" included, at a word boundary
// when there is one in the second half (else mid-word).
func clipWords(s string, n int) string {
	runes := []rune(s)
	if len(runes) <= n {
		return s
	}
	cut := n - 1
	if !unicode.IsSpace(runes[cut]) {
		for i := cut - 1; i >= n/2; i-- {
			if unicode.IsSpace(runes[i]) {
				cut = i
				break
			}
		}
	}
	return strings.TrimRightFunc(string(runes[:cut]), unicode.IsSpace) + "…"
}
