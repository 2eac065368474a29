package admin

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"maps"
	"mime"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/social/user-events-router/configs"
	"github.com/social/user-events-router/router"
	"github.com/social/user-events-router/store"
)

// The poison console: web pages on the admin address, over the same store
// and replay functions as the JSON API (ListPoison, PoisonStats, GetPoison,
// Replayer.Replay and ReplayMatching, DeletePoisonMatching), rendered on
// the server with html/template from files embedded in the binary. It
// needs no script, no CDN and no internet.
//
//	GET  /admin/ui/                    the list: filters, counts (stats), a page of entries, selection
//	GET  /admin/ui/entry/{id}          one entry: every field, the payload, the stack
//	GET  /admin/ui/entry/{id}/payload  the payload's exact bytes, as a download
//	POST /admin/ui/replay              a dry run of the selection; with confirm=yes, the replay
//	POST /admin/ui/delete              what would be deleted; with confirm=yes, the deletion
//	GET  /admin/ui/login, POST         the token form (only with ADMIN_TOKEN)
//	POST /admin/ui/logout
//	GET  /admin/ui/console.css
//
// Security, outermost first: the admin handler refuses cross-origin
// requests that change state (refuseCrossOrigin); every answer carries a
// Content-Security-Policy that allows no script, no frame and no form
// target but this origin; with ADMIN_TOKEN a page needs a session, which
// the login form opens when given the token (httpx.Token.Matches, the
// API's own check); without it a session is opened on the first visit, and only by a
// loopback name (so a DNS-rebound name cannot open one); every POST but the
// login carries the session's CSRF token; every value from outside is shown
// through visible and escaped by html/template.

//go:embed console
var consoleFiles embed.FS

const (
	consolePrefix = "/admin/ui/"
	// consoleCookie holds the session: HttpOnly, SameSite=Strict, Path
	// /admin/ui, signed by the process's key (see sessionFrom).
	consoleCookie     = "poison_console"
	consoleSessionTTL = 12 * time.Hour
	// consoleFormLimit bounds a form body (a selection of 1,000 ids is
	// 40 KB).
	consoleFormLimit = 256 << 10
	// consoleBulkBudget bounds the work of one request that replays or
	// deletes everything matching a filter, well inside the admin
	// server's write timeout; the page then offers to go on. The CLI is
	// the tool for hundreds of thousands.
	consoleBulkBudget = 8 * time.Second
	// consoleDryRunSample is how many entries a filter-wide replay dry-runs
	// before asking to confirm.
	consoleDryRunSample = 100
	// consoleRowsShown is how many results a report lists by id.
	consoleRowsShown = 200
	// consoleDeletePreview is how many entries a filter-wide delete shows
	// before asking to confirm.
	consoleDeletePreview = 20
	// payloadTextShown and payloadHexShown bound what an entry page shows
	// of a payload (a 1 MiB body would be a 5 MB hex dump); the download
	// has all of it.
	payloadTextShown = 64 << 10
	payloadHexShown  = 16 << 10
)

// consoleCSP allows the console's own stylesheet and forms, and nothing
// else: no script at all (inline or not), no frames, no plugins, no other
// form target.
const consoleCSP = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// Results a console report shows besides Replayer's.
const (
	resultDeleted  = "deleted"
	resultNotFound = "not_found"
	resultError    = "error"
)

type console struct {
	a *admin
	// bulkBudget is consoleBulkBudget (tests shorten it).
	bulkBudget time.Duration
	key        []byte
	pages      map[string]*template.Template
	stats      *consoleStats
	css        []byte
	mux        *http.ServeMux
}

// consolePages are the page templates, each rendered inside layout.html.
var consolePages = []string{"list", "entry", "confirm", "done", "login", "error"}

func newConsole(a *admin) (*console, error) {
	c := &console{a: a, bulkBudget: consoleBulkBudget, key: make([]byte, 32), pages: map[string]*template.Template{}, mux: http.NewServeMux()}
	c.stats = newConsoleStats(func(ctx context.Context, f store.PoisonFilter) (store.PoisonStats, error) {
		return a.DB.PoisonStats(ctx, f, poisonStatsTop)
	}, time.Now)
	if _, err := rand.Read(c.key); err != nil {
		return nil, fmt.Errorf("console: session key: %w", err)
	}
	funcs := template.FuncMap{
		"v":     func(s string) string { return visible(s, false) },
		"vl":    func(s string) string { return visible(s, true) },
		"short": shortPoisonID,
		"when":  consoleTime,
		"path":  url.PathEscape,
		"dash": func(s string) string {
			if s == "" {
				return "-"
			}
			return s
		},
	}
	for _, name := range consolePages {
		t, err := template.New(name).Funcs(funcs).ParseFS(consoleFiles, "console/layout.html", "console/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("console: %w", err)
		}
		c.pages[name] = t
	}
	css, err := consoleFiles.ReadFile("console/console.css")
	if err != nil {
		return nil, fmt.Errorf("console: %w", err)
	}
	c.css = css

	c.mux.HandleFunc("GET "+consolePrefix+"{$}", c.page(c.list))
	c.mux.HandleFunc("GET "+consolePrefix+"entry/{id}", c.page(c.entry))
	c.mux.HandleFunc("GET "+consolePrefix+"entry/{id}/payload", c.page(c.payload))
	c.mux.HandleFunc("POST "+consolePrefix+"replay", c.action(c.selected(c.replayPreview, c.replayNow)))
	c.mux.HandleFunc("POST "+consolePrefix+"delete", c.action(c.selected(c.deletePreview, c.deleteNow)))
	c.mux.HandleFunc("POST "+consolePrefix+"logout", c.action(c.logout))
	c.mux.HandleFunc("GET "+consolePrefix+"login", c.loginForm)
	c.mux.HandleFunc("POST "+consolePrefix+"login", c.login)
	c.mux.HandleFunc("GET "+consolePrefix+"console.css", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/css; charset=utf-8")
		_, _ = w.Write(c.css)
	})
	return c, nil
}

func (c *console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	setConsoleHeaders(w)
	if c.a.Token == "" && configs.Exposed(hostPort(r.Host)) {
		// Without a token anyone who reaches the page gets a session, so
		// only loopback may: a DNS name rebound to 127.0.0.1 would make
		// another site's page same-origin with the console.
		c.showError(w, r, http.StatusForbidden, fmt.Sprintf("Without ADMIN_TOKEN the console answers only to a loopback address (127.0.0.1, [::1], localhost), not to the host name %s. Set ADMIN_TOKEN to use it by another name.", strconv.QuoteToASCII(r.Host)))
		return
	}
	c.mux.ServeHTTP(w, r)
}

// setConsoleHeaders sets what every console answer carries.
func setConsoleHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Security-Policy", consoleCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	// same-origin, not no-referrer: with no-referrer a browser sends
	// "Origin: null" on the console's own form posts.
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cache-Control", "no-store") // payloads hold personal data
}

// hostPort is a Host header as host:port (a browser leaves the port out
// when it is the scheme's default).
func hostPort(host string) string {
	if _, _, err := net.SplitHostPort(host); err != nil {
		return net.JoinHostPort(strings.Trim(host, "[]"), "80")
	}
	return host
}

// refused is the console's answer to a cross-origin request.
func (c *console) refused(w http.ResponseWriter, r *http.Request, err error) {
	setConsoleHeaders(w)
	c.showError(w, r, http.StatusForbidden, err.Error()+". Nothing was done.")
}

// consoleSession is a browser's session: its id and the CSRF token its
// forms carry.
type consoleSession struct {
	id   string
	csrf string
}

// sign is the base64url HMAC-SHA256 of parts under the process's key.
func (c *console) sign(parts ...string) string {
	m := hmac.New(sha256.New, c.key)
	m.Write([]byte(strings.Join(parts, "\x00")))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// sessionFrom reads the session cookie: "id.expiry.mac", signed by this
// process (a restart ends every session). The CSRF token is derived from
// the id, so nothing is kept on the server.
func (c *console) sessionFrom(r *http.Request) (consoleSession, bool) {
	ck, err := r.Cookie(consoleCookie)
	if err != nil {
		return consoleSession{}, false
	}
	parts := strings.Split(ck.Value, ".")
	if len(parts) != 3 {
		return consoleSession{}, false
	}
	if !hmac.Equal([]byte(parts[2]), []byte(c.sign("session", parts[0], parts[1]))) {
		return consoleSession{}, false
	}
	exp, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil || c.a.NowFunc().Unix() > exp {
		return consoleSession{}, false
	}
	return consoleSession{id: parts[0], csrf: c.sign("csrf", parts[0])}, true
}

// newSession opens a session and sets its cookie on w.
func (c *console) newSession(w http.ResponseWriter, r *http.Request) consoleSession {
	id := rand.Text()
	exp := strconv.FormatInt(c.a.NowFunc().Add(consoleSessionTTL).Unix(), 10)
	http.SetCookie(w, &http.Cookie{
		Name: consoleCookie, Value: id + "." + exp + "." + c.sign("session", id, exp),
		Path: strings.TrimSuffix(consolePrefix, "/"), HttpOnly: true, SameSite: http.SameSiteStrictMode,
		Secure: r.TLS != nil,
	})
	return consoleSession{id: id, csrf: c.sign("csrf", id)}
}

// page serves a GET page: it needs a session, which without ADMIN_TOKEN is
// opened here and with it by the login form.
func (c *console) page(h func(http.ResponseWriter, *http.Request, consoleSession)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s, ok := c.sessionFrom(r)
		if !ok {
			if c.a.Token != "" {
				http.Redirect(w, r, consolePrefix+"login", http.StatusSeeOther)
				return
			}
			s = c.newSession(w, r)
		}
		h(w, r, s)
	}
}

// action serves a POST that changes something (or may start to): it needs
// a session and the session's CSRF token in the form's csrf field, compared
// in constant time. Cross-origin posts never get here (refuseCrossOrigin).
func (c *console) action(h func(http.ResponseWriter, *http.Request, consoleSession)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, consoleFormLimit)
		if err := r.ParseForm(); err != nil {
			c.showError(w, r, http.StatusBadRequest, "The form could not be read: "+err.Error())
			return
		}
		s, ok := c.sessionFrom(r)
		if !ok {
			status, msg := http.StatusForbidden, "No session (it expired, or the router restarted): reload the page and try again. Nothing was done."
			if c.a.Token != "" {
				status, msg = http.StatusUnauthorized, "Not logged in (the session expired, or the router restarted): log in again. Nothing was done."
			}
			c.showError(w, r, status, msg)
			return
		}
		if !hmac.Equal([]byte(r.PostForm.Get("csrf")), []byte(s.csrf)) {
			c.a.logger.WarnContext(r.Context(), "console request without a valid CSRF token refused", "path", r.URL.Path)
			c.showError(w, r, http.StatusForbidden, "The form's CSRF token is missing or wrong, so nothing was done. Reload the page and try again.")
			return
		}
		h(w, r, s)
	}
}

// consoleBase is what every page shows around its content.
type consoleBase struct {
	Title string
	CSRF  string
	// LoggedIn is set when there is a login to leave (ADMIN_TOKEN).
	LoggedIn bool
}

func (c *console) base(s consoleSession, title string) consoleBase {
	return consoleBase{Title: title, CSRF: s.csrf, LoggedIn: c.a.Token != "" && s.id != ""}
}

// render writes a page whole, or a 500 when the template fails (never
// half a page).
func (c *console) render(w http.ResponseWriter, r *http.Request, status int, page string, data any) {
	var buf bytes.Buffer
	if err := c.pages[page].ExecuteTemplate(&buf, "layout", data); err != nil {
		c.a.logger.ErrorContext(r.Context(), "console page failed", "page", page, "error", err)
		http.Error(w, "the page could not be rendered; see the router's log", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

type errorView struct {
	consoleBase
	Status  int
	Message string
}

func (c *console) showError(w http.ResponseWriter, r *http.Request, status int, msg string) {
	s, _ := c.sessionFrom(r)
	c.render(w, r, status, "error", errorView{c.base(s, http.StatusText(status)), status, msg})
}

// fail shows a store error with the API's status for it.
func (c *console) fail(w http.ResponseWriter, r *http.Request, err error) {
	c.showError(w, r, c.a.failureStatus(r, err), err.Error())
}

type loginView struct {
	consoleBase
	Error string
}

func (c *console) loginForm(w http.ResponseWriter, r *http.Request) {
	if c.a.Token == "" {
		http.Redirect(w, r, consolePrefix, http.StatusSeeOther)
		return
	}
	c.render(w, r, http.StatusOK, "login", loginView{consoleBase: consoleBase{Title: "Log in"}})
}

// login opens a session for the right token. It carries no CSRF token (there
// is no session yet); refuseCrossOrigin keeps other sites from posting it.
func (c *console) login(w http.ResponseWriter, r *http.Request) {
	if c.a.Token == "" {
		http.Redirect(w, r, consolePrefix, http.StatusSeeOther)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, consoleFormLimit)
	if err := r.ParseForm(); err != nil || !c.a.token.Matches(r.PostForm.Get("token")) {
		c.a.logger.WarnContext(r.Context(), "console login refused", "remote_addr", r.RemoteAddr)
		c.render(w, r, http.StatusUnauthorized, "login", loginView{consoleBase{Title: "Log in"}, "That is not the admin token."})
		return
	}
	c.newSession(w, r)
	http.Redirect(w, r, consolePrefix, http.StatusSeeOther)
}

func (c *console) logout(w http.ResponseWriter, r *http.Request, _ consoleSession) {
	http.SetCookie(w, &http.Cookie{Name: consoleCookie, Path: strings.TrimSuffix(consolePrefix, "/"), MaxAge: -1,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
	target := consolePrefix
	if c.a.Token != "" {
		target += "login"
	}
	http.Redirect(w, r, target, http.StatusSeeOther)
}

// listView is the list page.
type listView struct {
	consoleBase
	Error string
	Query PoisonQuery
	// FilterText is the filter alone, URL-encoded: what "all matching"
	// acts on.
	FilterText string
	Filtered   bool
	Page       store.PoisonPage
	// Stats are the counts when StatsReady (taken at StatsAt); otherwise
	// they are still being counted, or StatsError says why they failed.
	Stats       store.PoisonStats
	StatsReady  bool
	StatsAt     time.Time
	StatsError  string
	StatsGroups []statsGroupView
	NextURL     string
	FirstURL    string
	Classes     []string
	Ingresses   []string
	PageSizes   []int
}

type statsGroupView struct {
	Title string
	Rows  []statsRowView
	store.PoisonGroups
}

type statsRowView struct {
	Key   string
	Count int
	// URL lists the entries of this group (the current filter and this key).
	URL string
}

func (c *console) list(w http.ResponseWriter, r *http.Request, s consoleSession) {
	begun := time.Now()
	view := listView{consoleBase: c.base(s, "Poison queue"), Classes: poisonClasses, Ingresses: poisonIngresses,
		PageSizes: []int{store.DefaultPoisonPageSize, 200, store.MaxPoisonPageSize}}
	pq, err := PoisonQueryFromURL(r.URL.Query(), true)
	var req store.PoisonPageRequest
	if err == nil {
		req, err = pq.Page(c.a.NowFunc())
	}
	view.Query = pq
	if err != nil {
		view.Error = err.Error()
		c.render(w, r, http.StatusBadRequest, "list", view)
		return
	}
	filter := pq.values(false)
	view.FilterText, view.Filtered = filter.Encode(), len(filter) > 0
	// The counts run beside the page query, on their own connection:
	// the page is an index walk, the counts a scan (see consoleStats).
	statsKey := view.FilterText
	started := c.stats.start(statsKey, req.Filter)
	view.Page, err = c.a.DB.ListPoison(r.Context(), req)
	if err != nil {
		view.Error = err.Error()
		c.render(w, r, c.a.failureStatus(r, err), "list", view)
		return
	}
	if started != nil {
		run, ready := c.stats.get(r.Context(), statsKey, req.Filter, time.Until(begun.Add(consoleStatsWait)))
		switch {
		case ready && run.err != nil:
			view.StatsError = run.err.Error()
		case ready:
			view.Stats, view.StatsAt, view.StatsReady = run.stats, run.at, true
		}
	}
	if view.Page.Next != "" {
		next := pq
		next.Cursor = view.Page.Next
		view.NextURL = consolePrefix + "?" + next.values(true).Encode()
	}
	if pq.Cursor != "" {
		first := pq
		first.Cursor = ""
		view.FirstURL = consolePrefix + "?" + first.values(true).Encode()
	}
	for _, g := range []struct {
		title, param string
		groups       store.PoisonGroups
	}{
		{"Class", "class", view.Stats.ByClass}, {"Reason kind", "reason_kind", view.Stats.ByReason},
		{"Subject", "subject", view.Stats.BySubject}, {"Ingress", "ingress", view.Stats.ByIngress},
	} {
		gv := statsGroupView{Title: g.title, PoisonGroups: g.groups}
		for _, row := range g.groups.Top {
			q := maps.Clone(filter)
			q.Set(g.param, row.Key)
			gv.Rows = append(gv.Rows, statsRowView{Key: row.Key, Count: row.Count, URL: consolePrefix + "?" + q.Encode()})
		}
		view.StatsGroups = append(view.StatsGroups, gv)
	}
	c.render(w, r, http.StatusOK, "list", view)
}

// values is q as URL parameters, empty ones left out: the filter, and with
// withPage the page too. PoisonQueryFromURL reads it back.
func (q PoisonQuery) values(withPage bool) url.Values {
	v := url.Values{}
	fields := []struct{ name, value string }{
		{"reason", q.Reason}, {"reason_kind", q.ReasonKind}, {"class", q.Class}, {"subject", q.Subject},
		{"ingress", q.Ingress}, {"correlation_id", q.CorrelationID}, {"user_id", q.UserID},
		{"since", q.Since}, {"until", q.Until},
	}
	if withPage {
		fields = append(fields, []struct{ name, value string }{{"limit", q.Limit}, {"order", q.Order}, {"cursor", q.Cursor}}...)
	}
	for _, f := range fields {
		if f.value != "" {
			v.Set(f.name, f.value)
		}
	}
	return v
}

// entryView is an entry's page.
type entryView struct {
	consoleBase
	E       store.PoisonEntry
	Payload payloadView
}

func (c *console) entry(w http.ResponseWriter, r *http.Request, s consoleSession) {
	e, err := c.a.DB.GetPoison(r.Context(), r.PathValue("id"))
	if err != nil {
		c.fail(w, r, err)
		return
	}
	c.render(w, r, http.StatusOK, "entry", entryView{consoleBase: c.base(s, "Entry "+shortPoisonID(e.ID)), E: e, Payload: newPayloadView(e.Payload)})
}

// payload sends the exact bytes as a file to save, never to show: a
// browser neither renders nor sniffs it.
func (c *console) payload(w http.ResponseWriter, r *http.Request, _ consoleSession) {
	e, err := c.a.DB.GetPoison(r.Context(), r.PathValue("id"))
	if err != nil {
		c.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": "poison-" + e.ID + ".bin"}))
	w.Header().Set("Content-Length", strconv.Itoa(len(e.Payload)))
	_, _ = w.Write(e.Payload)
}

// consoleSelection is what an action works on: entries by id, or every
// entry that matches a filter.
type consoleSelection struct {
	IDs      []string
	Matching bool
	// FilterText is the filter, URL-encoded, as the list page passed it.
	FilterText string
	Query      PoisonQuery
	filter     store.PoisonFilter
}

// BackURL is the list the selection was made on.
func (s consoleSelection) BackURL() string {
	if s.Matching && s.FilterText != "" {
		return consolePrefix + "?" + s.FilterText
	}
	return consolePrefix
}

// selectionFrom reads scope ("ids" or "matching"), id (repeated) and
// filter from an action's form.
func (c *console) selectionFrom(form url.Values) (consoleSelection, error) {
	switch form.Get("scope") {
	case "matching":
		raw, err := url.ParseQuery(form.Get("filter"))
		if err != nil {
			return consoleSelection{}, fmt.Errorf("the filter %s is not a query string", strconv.QuoteToASCII(form.Get("filter")))
		}
		pq, err := PoisonQueryFromURL(raw, false)
		if err != nil {
			return consoleSelection{}, err
		}
		f, err := pq.Filter(c.a.NowFunc())
		if err != nil {
			return consoleSelection{}, err
		}
		return consoleSelection{Matching: true, FilterText: pq.values(false).Encode(), Query: pq, filter: f}, nil
	case "ids":
		ids := form["id"]
		if len(ids) == 0 {
			return consoleSelection{}, errors.New("no entry was selected: tick the entries first")
		}
		if len(ids) > store.MaxPoisonPageSize {
			return consoleSelection{}, fmt.Errorf("%d entries selected; at most %d at once (or act on all that match a filter)", len(ids), store.MaxPoisonPageSize)
		}
		for _, id := range ids {
			if err := store.CheckPoisonID(id); err != nil {
				return consoleSelection{}, err
			}
		}
		return consoleSelection{IDs: slices.Compact(slices.Sorted(slices.Values(ids)))}, nil
	}
	return consoleSelection{}, fmt.Errorf("scope %s: want ids or matching", strconv.QuoteToASCII(form.Get("scope")))
}

// consoleReport counts results by kind and lists the first ones.
type consoleReport struct {
	Total    int
	Counts   []store.PoisonCount
	Rows     []router.ReplayResult
	Unlisted int
	counts   map[string]int
}

func (rep *consoleReport) add(res router.ReplayResult) {
	if rep.counts == nil {
		rep.counts = map[string]int{}
	}
	rep.Total++
	rep.counts[res.Result]++
	if len(rep.Rows) < consoleRowsShown {
		rep.Rows = append(rep.Rows, res)
	} else {
		rep.Unlisted++
	}
}

// addError reports an entry that could not be acted on.
func (rep *consoleReport) addError(id string, err error) {
	result := resultError
	if errors.Is(err, store.ErrPoisonNotFound) {
		result = resultNotFound
	}
	rep.add(router.ReplayResult{ID: id, Result: result, Reason: err.Error()})
}

// finish orders the counts, largest first.
func (rep *consoleReport) finish() {
	rep.Counts = rep.Counts[:0]
	for k, n := range rep.counts {
		rep.Counts = append(rep.Counts, store.PoisonCount{Key: k, Count: n})
	}
	slices.SortFunc(rep.Counts, func(a, b store.PoisonCount) int {
		if a.Count != b.Count {
			return b.Count - a.Count
		}
		return strings.Compare(a.Key, b.Key)
	})
}

// confirmView is the step before an action: the dry run of a replay, or
// what a delete would remove.
type confirmView struct {
	consoleBase
	Action string // replay or delete
	Sel    consoleSelection
	// Count is how many entries the selection holds now.
	Count int
	// DryRun is the replay's dry run (of the first consoleDryRunSample
	// entries when Sel.Matching).
	DryRun *consoleReport
	// Entries are (the first of) those a delete would remove.
	Entries []store.PoisonEntry
	Missing *consoleReport
}

// Form is what the confirmation posts.
func (v confirmView) Form() selectionForm { return selectionForm{v.CSRF, v.Sel} }

// doneView is an action's outcome.
type doneView struct {
	consoleBase
	Action string
	Sel    consoleSelection
	Report *consoleReport
	// Stopped is set when the action used its time budget
	// (consoleBulkBudget); Rest is what it did not get to, Remaining
	// entries of it.
	Stopped   bool
	Rest      consoleSelection
	Remaining int
}

// RestForm is what the offer to go on posts.
func (v doneView) RestForm() selectionForm { return selectionForm{v.CSRF, v.Rest} }

// selectionForm is what the "selection" template writes as hidden fields.
type selectionForm struct {
	CSRF string
	Sel  consoleSelection
}

// errEnough ends a walk that has seen what it needed.
var errEnough = errors.New("enough")

// selected reads an action's selection (see selectionFrom) and runs
// preview, the step that asks, or with confirm=yes, act.
func (c *console) selected(preview, act func(http.ResponseWriter, *http.Request, consoleSession, consoleSelection)) func(http.ResponseWriter, *http.Request, consoleSession) {
	return func(w http.ResponseWriter, r *http.Request, s consoleSession) {
		sel, err := c.selectionFrom(r.PostForm)
		if err != nil {
			c.showError(w, r, http.StatusBadRequest, err.Error())
			return
		}
		if r.PostForm.Get("confirm") == "yes" {
			act(w, r, s, sel)
			return
		}
		preview(w, r, s, sel)
	}
}

// replayPreview dry-runs the selection (the first consoleDryRunSample of a
// filter's entries) and asks to confirm.
func (c *console) replayPreview(w http.ResponseWriter, r *http.Request, s consoleSession, sel consoleSelection) {
	ctx := r.Context()
	var err error
	view := confirmView{consoleBase: c.base(s, "Replay: dry run"), Action: "replay", Sel: sel, DryRun: &consoleReport{}}
	if sel.Matching {
		if view.Count, err = c.a.DB.CountPoisonMatching(ctx, sel.filter); err != nil {
			c.fail(w, r, err)
			return
		}
		err = c.a.Replayer.ReplayMatching(ctx, sel.filter, true, func(res router.ReplayResult, err error) error {
			c.addResult(view.DryRun, res, err)
			if view.DryRun.Total >= consoleDryRunSample {
				return errEnough
			}
			return nil
		})
		if err != nil && !errors.Is(err, errEnough) {
			c.fail(w, r, err)
			return
		}
	} else {
		view.Count = len(sel.IDs)
		for _, id := range sel.IDs {
			res, err := c.a.Replayer.Replay(ctx, id, true)
			c.addResult(view.DryRun, res, err)
		}
	}
	view.DryRun.finish()
	c.render(w, r, http.StatusOK, "confirm", view)
}

// replayNow replays the selection.
func (c *console) replayNow(w http.ResponseWriter, r *http.Request, s consoleSession, sel consoleSelection) {
	defer c.stats.forget() // the queue changes: counts taken before are wrong
	ctx := r.Context()
	var err error
	// A replay can take a while (in-process retries while the database is
	// away), so even a selection of ids stops at the budget.
	view := doneView{consoleBase: c.base(s, "Replayed"), Action: "replay", Sel: sel, Report: &consoleReport{}}
	deadline := time.Now().Add(c.bulkBudget)
	each := func(res router.ReplayResult, err error) {
		c.addResult(view.Report, res, err)
		if err == nil {
			c.a.logger.InfoContext(ctx, "poison entry replayed via console", "poison_id", res.ID, "result", res.Result, "reason", res.Reason)
		}
	}
	if sel.Matching {
		err = c.a.Replayer.ReplayMatching(ctx, sel.filter, false, func(res router.ReplayResult, err error) error {
			each(res, err)
			if time.Now().After(deadline) {
				return errEnough
			}
			return nil
		})
		view.Stopped = errors.Is(err, errEnough)
		if err != nil && !view.Stopped {
			c.fail(w, r, err)
			return
		}
		if view.Remaining, err = c.a.DB.CountPoisonMatching(ctx, sel.filter); err != nil {
			c.fail(w, r, err)
			return
		}
		view.Rest = sel
	} else {
		for i, id := range sel.IDs {
			if time.Now().After(deadline) {
				view.Stopped, view.Rest = true, consoleSelection{IDs: sel.IDs[i:]}
				view.Remaining = len(view.Rest.IDs)
				break
			}
			res, err := c.a.Replayer.Replay(ctx, id, false)
			each(res, err)
		}
	}
	view.Report.finish()
	c.render(w, r, http.StatusOK, "done", view)
}

// addResult adds a replay's result, or its error, to rep.
func (c *console) addResult(rep *consoleReport, res router.ReplayResult, err error) {
	if err != nil {
		rep.addError(res.ID, err)
		return
	}
	rep.add(res)
}

// deletePreview shows what deleting the selection removes and asks to
// confirm.
func (c *console) deletePreview(w http.ResponseWriter, r *http.Request, s consoleSession, sel consoleSelection) {
	ctx := r.Context()
	view := confirmView{consoleBase: c.base(s, "Delete: confirm"), Action: "delete", Sel: sel, Missing: &consoleReport{}}
	if sel.Matching {
		page, err := c.a.DB.ListPoison(ctx, store.PoisonPageRequest{Filter: sel.filter, Limit: consoleDeletePreview})
		if err != nil {
			c.fail(w, r, err)
			return
		}
		view.Count, view.Entries = page.Total, page.Entries
	} else {
		for _, id := range sel.IDs {
			e, err := c.a.DB.GetPoisonSummary(ctx, id)
			if err != nil {
				view.Missing.addError(id, err)
				continue
			}
			view.Entries = append(view.Entries, e)
		}
		view.Count = len(view.Entries)
	}
	view.Missing.finish()
	c.render(w, r, http.StatusOK, "confirm", view)
}

// deleteNow deletes the selection.
func (c *console) deleteNow(w http.ResponseWriter, r *http.Request, s consoleSession, sel consoleSelection) {
	defer c.stats.forget() // the queue changes: counts taken before are wrong
	ctx := r.Context()
	view := doneView{consoleBase: c.base(s, "Deleted"), Action: "delete", Sel: sel, Report: &consoleReport{}}
	if sel.Matching {
		bulk, cancel := context.WithTimeout(ctx, c.bulkBudget)
		deleted, err := c.a.DB.DeletePoisonMatching(bulk, sel.filter, nil)
		view.Stopped = bulk.Err() != nil && ctx.Err() == nil
		cancel()
		c.a.logger.InfoContext(ctx, "poison entries deleted via console", "deleted", deleted, "filter", strconv.QuoteToASCII(sel.FilterText))
		if err != nil && !view.Stopped {
			c.fail(w, r, fmt.Errorf("deleted %d, then: %w", deleted, err))
			return
		}
		view.Report.counts = map[string]int{resultDeleted: deleted}
		view.Report.Total = deleted
		if view.Remaining, err = c.a.DB.CountPoisonMatching(ctx, sel.filter); err != nil {
			c.fail(w, r, err)
			return
		}
		view.Rest = sel
	} else {
		for _, id := range sel.IDs {
			e, err := c.a.deletePoison(ctx, id)
			if err != nil {
				view.Report.addError(id, err)
				continue
			}
			c.a.logger.InfoContext(ctx, "poison entry deleted via console", "poison_id", e.ID, "error_class", e.Class, "subject", e.Subject)
			view.Report.add(router.ReplayResult{ID: e.ID, Result: resultDeleted})
		}
	}
	view.Report.finish()
	c.render(w, r, http.StatusOK, "done", view)
}

func shortPoisonID(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}

func consoleTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}
