package admin_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/social/user-events-router/router/pipelinetest"
)

// chromiumPath is Debian's chromium (.ci/run installs it). Without it the
// browser test is skipped, except in CI, where it must run.
func chromiumPath(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat("/usr/bin/chromium"); err == nil {
		return "/usr/bin/chromium"
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium is not installed, and CI must run the browser test: .ci/run installs it (apt-get install chromium)")
	}
	t.Skip("skipping the browser test: no chromium at /usr/bin/chromium or on PATH (apt-get install chromium; CI installs it and fails without it)")
	return ""
}

// browser is one headless Chromium tab, closed (and its process waited
// for) when the test ends.
type browser struct {
	t   *testing.T
	ctx context.Context
}

func startBrowser(t *testing.T, execPath string) *browser {
	t.Helper()
	profile := t.TempDir() // removed after the browser has exited (cleanups run last first)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(execPath),
		chromedp.Headless,
		chromedp.NoSandbox, // root in a container: the sandbox cannot start
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(1400, 1000),
	)
	ctx, cancelTab := chromedp.NewContext(allocCtx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 2*time.Minute)
	t.Cleanup(func() {
		cancelTimeout()
		cancelTab()
		cancelAlloc() // kills Chromium and waits for it
	})
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		t.Fatalf("start %s: %v", execPath, err)
	}
	return &browser{t: t, ctx: ctx}
}

// stepTimeout bounds one step, so that a page that is not the one
// expected fails the test at once instead of at the test's deadline.
const stepTimeout = 20 * time.Second

func (br *browser) step() (context.Context, context.CancelFunc) {
	return context.WithTimeout(br.ctx, stepTimeout)
}

func (br *browser) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	br.t.Helper()
	ctx, cancel := br.step()
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		br.t.Fatalf("%s: %v", what, err)
	}
}

// load runs the steps (a click on a link or a submit button) and waits for
// the page they load; it returns the page's HTTP status.
func (br *browser) load(what string, steps ...chromedp.Action[chromedp.Void]) int64 {
	br.t.Helper()
	ctx, cancel := br.step()
	defer cancel()
	res, err := chromedp.RunResponse(ctx, steps...)
	if err != nil {
		br.t.Fatalf("%s: %v", what, err)
	}
	return res.Status
}

func run[T any](br *browser, what string, a chromedp.Action[T]) T {
	br.t.Helper()
	ctx, cancel := br.step()
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		br.t.Fatalf("%s: %v", what, err)
	}
	return v
}

func (br *browser) text(sel chromedp.ID) string {
	br.t.Helper()
	return run(br, "text of #"+string(sel), chromedp.Text(sel))
}

// notExecuted checks that no hostile payload ran: each would have set the
// title or the global pwned.
func (br *browser) notExecuted(what string) {
	br.t.Helper()
	if title := run(br, "title", chromedp.Title()); strings.Contains(title, "pwned") || !strings.Contains(title, "poison queue") {
		br.t.Errorf("%s: the title is %q: a payload ran", what, title)
	}
	if ran := run(br, "pwned", chromedp.Evaluate[bool](`typeof window.pwned !== "undefined"`)); ran {
		br.t.Errorf("%s: window.pwned is set: a payload ran", what)
	}
	// Nor did it add elements: the console's pages have no script or
	// image, and the payload's markup is text.
	if n := run(br, "elements", chromedp.Evaluate[int](`document.querySelectorAll("script, img, main b, main i").length`)); n != 0 {
		br.t.Errorf("%s: %d script, img, b or i elements in the page: the payload's markup was parsed", what, n)
	}
}

func (br *browser) screenshot(dir, name string) string {
	br.t.Helper()
	png := run(br, "screenshot", chromedp.FullScreenshot(100)) // 100: PNG
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		br.t.Fatal(err)
	}
	return path
}

// TestConsoleInBrowser is an operator at the console in a real browser
// (headless Chromium) against the admin handler over a seeded SQLite
// queue: log in, filter, open an entry, replay it (dry run, then confirm)
// and find its command in SQL, look at hostile payloads that must neither
// run nor be parsed, delete one, and be refused an action without the CSRF
// token and one posted from another origin.
func TestConsoleInBrowser(t *testing.T) {
	execPath := chromiumPath(t)
	b := setupConsole(t, "s3cret")
	br := startBrowser(t, execPath)
	ui := b.srv.URL + "/admin/ui/"
	shots, err := os.MkdirTemp("", "poison-console-screenshots-")
	if err != nil {
		t.Fatal(err)
	}

	// Log in: the list sends the browser to the token form first.
	br.do("open the console", chromedp.Navigate(ui), chromedp.WaitVisible(chromedp.ID("token")),
		chromedp.SendKeys(chromedp.ID("token"), b.token))
	if status := br.load("log in", chromedp.Click(chromedp.ID("login"))); status != 200 {
		t.Fatalf("after logging in: status %d", status)
	}
	br.do("the list", chromedp.WaitVisible(chromedp.ID("entries")))
	if total := br.text("total"); total != "6" {
		t.Errorf("the list counts %q entries, want 6", total)
	}
	// The counts are on the page when they were taken within
	// consoleStatsWait; on a loaded machine they come on a later load, as
	// the page itself says.
	for i := 0; !run(br, "the counts shown?", chromedp.Evaluate[bool](`document.getElementById("stats-at") !== null`)); i++ {
		if i == 50 {
			t.Fatalf("the counts by class never came; the page says %q", br.text("stats-pending"))
		}
		if status := br.load("reload for the counts", chromedp.Reload()); status != 200 {
			t.Fatalf("reload: status %d", status)
		}
	}
	if stats := br.text("stats"); !strings.Contains(stats, "permanent") || !strings.Contains(stats, "transient_exhausted") || !strings.Contains(stats, "not one JSON object") {
		t.Errorf("the counts by class and reason lack an entry's:\n%s", stats)
	}
	br.notExecuted("the list")
	listShot := br.screenshot(shots, "list.png")

	// Filter: class and correlation id leave the valid entry alone.
	br.do("filter", chromedp.SetValue(chromedp.ID("f-class"), "transient_exhausted"),
		chromedp.SendKeys(chromedp.ID("f-correlation-id"), "corr-valid"))
	br.load("apply the filter", chromedp.Click(chromedp.ID("apply")))
	rows := run(br, "rows", chromedp.Evaluate[[]string](`[...document.querySelectorAll("#entries tbody tr")].map(r => r.dataset.id)`))
	if len(rows) != 1 || rows[0] != b.valid.ID {
		t.Fatalf("filtered list = %v, want only %s", rows, b.valid.ID)
	}

	// Open it: every field, the payload pretty-printed.
	br.load("open the entry", chromedp.Click(chromedp.CSS("#entries tbody a")))
	if id := br.text("entry-id"); id != b.valid.ID {
		t.Fatalf("entry page of %q, want %s", id, b.valid.ID)
	}
	if p := br.text("payload"); !strings.Contains(p, "\n  \"email\": \"alice@example.com\",\n") {
		t.Errorf("payload not pretty-printed:\n%s", p)
	}
	entryShot := br.screenshot(shots, "entry.png")

	// Replay: the dry run writes nothing; the confirmation writes the command.
	br.load("dry run", chromedp.Click(chromedp.ID("replay")))
	if counts := br.text("counts"); !strings.Contains(counts, "would_commit") {
		t.Errorf("dry run says %q", counts)
	}
	if n := pipelinetest.CountCommands(t, b.db); n != 0 {
		t.Fatalf("the dry run wrote %d commands", n)
	}
	br.load("confirm the replay", chromedp.Click(chromedp.ID("confirm")))
	if counts := br.text("counts"); !strings.Contains(counts, "committed") {
		t.Errorf("replay says %q", counts)
	}
	var commandType, userID string
	if err := b.db.SQL.QueryRow(`SELECT json_extract(payload, '$.type'), json_extract(payload, '$.user_id') FROM watermill_profile_sync_commands`).
		Scan(&commandType, &userID); err != nil || commandType != "create_profile" || userID != "78af4bc4-afce-4676-b373-5b802a2dfd2e" {
		t.Errorf("command after the replay: %q for %q, %v; want create_profile for the entry's user", commandType, userID, err)
	}
	if b.exists(t, b.valid.ID) {
		t.Error("the replayed entry is still in the queue")
	}

	// Hostile payloads are shown as text, and nothing in them runs.
	br.do("the script entry", chromedp.Navigate(ui+"entry/"+b.script.ID), chromedp.WaitVisible(chromedp.ID("payload")))
	br.notExecuted("script payload")
	if p := br.text("payload"); p != scriptPayload {
		t.Errorf("script payload shown as %q, want its text %q", p, scriptPayload)
	}
	br.do("the img entry", chromedp.Navigate(ui+"entry/"+b.img.ID), chromedp.WaitVisible(chromedp.ID("payload")))
	br.notExecuted("img payload")
	if p := br.text("payload"); !strings.Contains(p, `"username": "<img src=x onerror=\"document.title='pwned'\">"`) {
		t.Errorf("img payload shown as %q", p)
	}
	br.do("the bidi entry", chromedp.Navigate(ui+"entry/"+b.bidi.ID), chromedp.WaitVisible(chromedp.ID("stack")))
	br.notExecuted("bidi entry")
	if raw := run(br, "page text", chromedp.Evaluate[bool](`/[\u202e\u001b]/.test(document.body.innerText)`)); raw {
		t.Error("the page shows a bidi override or an escape character raw")
	}
	if s := br.text("subject"); s != `user.events.\u202ecreated` {
		t.Errorf("subject shown as %q, want the override visible as \\u202e", s)
	}
	hostileShot := br.screenshot(shots, "entry-hostile.png")

	// Delete the img entry: the confirmation first.
	br.do("the img entry", chromedp.Navigate(ui+"entry/"+b.img.ID), chromedp.WaitVisible(chromedp.ID("delete")))
	br.load("delete", chromedp.Click(chromedp.ID("delete")))
	if !b.exists(t, b.img.ID) {
		t.Fatal("deleted before the confirmation")
	}
	br.load("confirm the delete", chromedp.Click(chromedp.ID("confirm")))
	if summary := br.text("summary"); summary != "1 entry deleted." || b.exists(t, b.img.ID) {
		t.Errorf("after the delete: %q; entry still there: %v", summary, b.exists(t, b.img.ID))
	}

	// The same confirmation without its CSRF token is refused.
	br.do("the bad entry", chromedp.Navigate(ui+"entry/"+b.bad.ID), chromedp.WaitVisible(chromedp.ID("delete")))
	br.load("delete", chromedp.Click(chromedp.ID("delete")))
	csrf := run(br, "csrf", chromedp.Evaluate[string](`document.querySelector("form.confirm input[name=csrf]").value`))
	br.do("drop the token", chromedp.Evaluate[chromedp.Void](`document.querySelector("form.confirm input[name=csrf]").remove()`))
	if status := br.load("confirm without the token", chromedp.Click(chromedp.ID("confirm"))); status != http.StatusForbidden {
		t.Fatalf("a delete without the CSRF token: status %d, want 403; entry deleted: %v", status, !b.exists(t, b.bad.ID))
	}
	if msg := br.text("message"); !strings.Contains(msg, "CSRF token is missing or wrong") {
		t.Errorf("refusal says %q", msg)
	}
	if !b.exists(t, b.bad.ID) {
		t.Fatal("a delete without the CSRF token deleted the entry")
	}

	// And so is a form on another origin (another port of the same host:
	// same-site, so the SameSite=Strict cookie goes along), even with the
	// right CSRF token, to the console and to the JSON API.
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!DOCTYPE html><title>evil</title>
<form method="post" action="%[1]sdelete"><input type="hidden" name="csrf" value="%[2]s"><input type="hidden" name="scope" value="ids">
<input type="hidden" name="id" value="%[3]s"><input type="hidden" name="confirm" value="yes"><button id="console">delete</button></form>
<form method="post" action="%[4]s/admin/poison/%[3]s/replay"><button id="api">replay</button></form>`, ui, csrf, b.bad.ID, b.srv.URL)
	}))
	t.Cleanup(evil.Close)
	for _, button := range []chromedp.ID{"console", "api"} {
		br.do("the other origin's page", chromedp.Navigate(evil.URL), chromedp.WaitVisible(button))
		if status := br.load("post from another origin", chromedp.Click(button)); status != http.StatusForbidden {
			t.Errorf("a post to the %s from another origin: status %d, want 403", button, status)
		}
		if body := run(br, "page", chromedp.Evaluate[string](`document.body.innerText`)); !strings.Contains(body, "cross-origin") {
			t.Errorf("refusal of the %s says %q", button, body)
		}
	}
	if e, err := b.db.GetPoisonSummary(t.Context(), b.bad.ID); err != nil || e.Replays != 0 {
		t.Fatalf("a post from another origin changed the entry: %+v, %v", e, err)
	}
	t.Logf("screenshots: %s %s %s", listShot, entryShot, hostileShot)
}
