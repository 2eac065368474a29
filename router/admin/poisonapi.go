package admin

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/social/user-events-router/middleware"
	"github.com/social/user-events-router/router"
	"github.com/social/user-events-router/router/httpx"
	"github.com/social/user-events-router/schema"
	"github.com/social/user-events-router/store"
)

// PoisonSummaryJSON is an entry as lists show it: every field but the
// payload and the stack. Field names are stable; PoisonJSON adds to them.
type PoisonSummaryJSON struct {
	ID         string `json:"id"`
	Class      string `json:"class"`
	Reason     string `json:"reason"`
	ReasonKind string `json:"reason_kind"`
	// Subject is the NATS subject ("" for HTTP arrivals); EventSubject is
	// what to show and filter by (store.PoisonEntry.DisplaySubject).
	Subject       string     `json:"subject"`
	EventSubject  string     `json:"event_subject"`
	Handler       string     `json:"handler"`
	Ingress       string     `json:"ingress"`
	CorrelationID string     `json:"correlation_id"`
	UserID        string     `json:"user_id"`
	Action        string     `json:"action"`
	Stream        string     `json:"stream"`
	StreamSeq     uint64     `json:"stream_seq"`
	DeliveryCount uint64     `json:"delivery_count"`
	FirstFailure  time.Time  `json:"first_failure_at"`
	LastFailure   time.Time  `json:"last_failure_at"`
	Failures      int        `json:"failures"`
	Replays       int        `json:"replays"`
	LastReplayAt  *time.Time `json:"last_replay_at"`
}

// PoisonJSON is the one JSON shape of a whole poison entry, shared by the
// admin API and `poison show --json`, so scripts written against either read
// both.
type PoisonJSON struct {
	PoisonSummaryJSON
	// Payload is the original body when it is valid UTF-8, else null;
	// PayloadBase64 always holds the exact bytes.
	Payload       *string `json:"payload"`
	PayloadBase64 string  `json:"payload_base64"`
	// Stack is a panic's stack trace.
	Stack string `json:"stack,omitempty"`
}

// NewPoisonSummaryJSON converts an entry (its payload is not needed).
func NewPoisonSummaryJSON(e store.PoisonEntry) PoisonSummaryJSON {
	j := PoisonSummaryJSON{
		ID:            e.ID,
		Class:         e.Class,
		Reason:        e.Reason,
		ReasonKind:    e.ReasonKind,
		Subject:       e.Subject,
		EventSubject:  e.DisplaySubject(),
		Handler:       e.Handler,
		Ingress:       e.Ingress,
		CorrelationID: e.CorrelationID,
		UserID:        e.UserID,
		Action:        e.Action,
		Stream:        e.Stream,
		StreamSeq:     e.StreamSeq,
		DeliveryCount: e.DeliveryCount,
		FirstFailure:  e.FirstFailure.UTC(),
		LastFailure:   e.LastFailure.UTC(),
		Failures:      e.Failures,
		Replays:       e.Replays,
	}
	if !e.LastReplayAt.IsZero() {
		at := e.LastReplayAt.UTC()
		j.LastReplayAt = &at
	}
	return j
}

// NewPoisonJSON converts a stored entry to its JSON shape.
func NewPoisonJSON(e store.PoisonEntry) PoisonJSON {
	j := PoisonJSON{
		PoisonSummaryJSON: NewPoisonSummaryJSON(e),
		PayloadBase64:     base64.StdEncoding.EncodeToString(e.Payload),
		Stack:             e.Stack,
	}
	if utf8.Valid(e.Payload) {
		s := string(e.Payload)
		j.Payload = &s
	}
	return j
}

// PoisonPageJSON is one page of a list, for the admin API and
// `poison list --json`. NextCursor is null on the last page; pass it as
// cursor (API) or --cursor (CLI) for the next.
type PoisonPageJSON struct {
	Entries    []PoisonSummaryJSON `json:"entries"`
	Total      int                 `json:"total"`
	Limit      int                 `json:"limit"`
	Order      store.PoisonOrder   `json:"order"`
	NextCursor *string             `json:"next_cursor"`
}

// NewPoisonPageJSON converts a page; no entries is an empty array, not null.
func NewPoisonPageJSON(p store.PoisonPage, r store.PoisonPageRequest) PoisonPageJSON {
	j := PoisonPageJSON{Entries: make([]PoisonSummaryJSON, 0, len(p.Entries)), Total: p.Total, Limit: r.Limit, Order: r.Order}
	for _, e := range p.Entries {
		j.Entries = append(j.Entries, NewPoisonSummaryJSON(e))
	}
	if p.Next != "" {
		next := p.Next
		j.NextCursor = &next
	}
	return j
}

// PoisonCountJSON is one group of the stats.
type PoisonCountJSON struct {
	Key   string `json:"key"`
	Count int    `json:"count"`
}

// PoisonGroupsJSON is one dimension of the stats: the largest groups, and
// how many groups and entries are beyond them.
type PoisonGroupsJSON struct {
	Groups      []PoisonCountJSON `json:"groups"`
	OtherGroups int               `json:"other_groups"`
	OtherCount  int               `json:"other_count"`
}

// PoisonStatsJSON is the JSON of `poison stats --json` and
// GET /admin/poison/stats.
type PoisonStatsJSON struct {
	Total     int                `json:"total"`
	ByClass   PoisonGroupsJSON   `json:"by_class"`
	ByReason  PoisonGroupsJSON   `json:"by_reason_kind"`
	BySubject PoisonGroupsJSON   `json:"by_event_subject"`
	ByIngress PoisonGroupsJSON   `json:"by_ingress"`
	Oldest    *PoisonSummaryJSON `json:"oldest"`
	Newest    *PoisonSummaryJSON `json:"newest"`
}

// NewPoisonStatsJSON converts stats.
func NewPoisonStatsJSON(s store.PoisonStats) PoisonStatsJSON {
	groups := func(g store.PoisonGroups) PoisonGroupsJSON {
		j := PoisonGroupsJSON{Groups: make([]PoisonCountJSON, 0, len(g.Top)), OtherGroups: g.OtherGroups, OtherCount: g.OtherCount}
		for _, c := range g.Top {
			j.Groups = append(j.Groups, PoisonCountJSON(c))
		}
		return j
	}
	j := PoisonStatsJSON{Total: s.Total, ByClass: groups(s.ByClass), ByReason: groups(s.ByReason),
		BySubject: groups(s.BySubject), ByIngress: groups(s.ByIngress)}
	for _, end := range []struct {
		e    *store.PoisonEntry
		into **PoisonSummaryJSON
	}{{s.Oldest, &j.Oldest}, {s.Newest, &j.Newest}} {
		if end.e != nil {
			sum := NewPoisonSummaryJSON(*end.e)
			*end.into = &sum
		}
	}
	return j
}

// PoisonQuery is a poison-list filter and page as people type it, on the
// command line (--since 2h) or in a URL (?since=2h). Parsing lives here
// once, so both accept the same values and name the same parameters in
// their errors. The parameter names are the JSON field names.
type PoisonQuery struct {
	Reason        string
	ReasonKind    string
	Class         string
	Subject       string
	Ingress       string
	CorrelationID string
	UserID        string
	// Since and Until are a duration before now ("2h", "1d") or an RFC
	// 3339 time.
	Since, Until string
	// Limit, Order and Cursor choose the page (Page only).
	Limit  string
	Order  string
	Cursor string
}

// Query parameters of the poison list, and of stats (the filter ones).
var (
	poisonFilterParams = []string{"reason", "reason_kind", "class", "subject", "ingress", "correlation_id", "user_id", "since", "until"}
	poisonPageParams   = append(slices.Clone(poisonFilterParams), "limit", "order", "cursor")
)

// PoisonQueryFromURL reads q's parameters; any other parameter (a typo
// such as clas=) is a *ParamError. allowPage admits limit, order and cursor.
func PoisonQueryFromURL(q url.Values, allowPage bool) (PoisonQuery, error) {
	known := poisonFilterParams
	if allowPage {
		known = poisonPageParams
	}
	for param := range q {
		if !slices.Contains(known, param) {
			return PoisonQuery{}, &ParamError{param, q.Get(param), fmt.Errorf("unknown parameter (want %s)", strings.Join(known, ", "))}
		}
	}
	return PoisonQuery{
		Reason: q.Get("reason"), ReasonKind: q.Get("reason_kind"), Class: q.Get("class"), Subject: q.Get("subject"),
		Ingress: q.Get("ingress"), CorrelationID: q.Get("correlation_id"), UserID: q.Get("user_id"),
		Since: q.Get("since"), Until: q.Get("until"), Limit: q.Get("limit"), Order: q.Get("order"), Cursor: q.Get("cursor"),
	}, nil
}

// IsZeroFilter reports whether q narrows nothing.
func (q PoisonQuery) IsZeroFilter() bool {
	f := q
	f.Limit, f.Order, f.Cursor = "", "", ""
	return f == PoisonQuery{}
}

// ParamError names the filter parameter that has a bad value.
type ParamError struct {
	Param string
	Value string
	Err   error
}

func (e *ParamError) Error() string {
	return fmt.Sprintf("%s=%s: %v", e.Param, strconv.QuoteToASCII(e.Value), e.Err)
}

func (e *ParamError) Unwrap() error { return e.Err }

// poisonClasses are the error classes a filter may name.
var poisonClasses = []string{middleware.ClassPermanent, middleware.ClassPanic, middleware.ClassTransientExhausted}

// poisonIngresses are the ingresses a filter may name; "replay" is on
// entries stored before replays kept the original ingress.
var poisonIngresses = []string{schema.IngressNATS, schema.IngressHTTP, schema.IngressReplay}

// Filter validates q's filter fields and converts them, resolving relative
// times against now. A bad value is a *ParamError naming the parameter;
// several are joined.
func (q PoisonQuery) Filter(now time.Time) (store.PoisonFilter, error) {
	f := store.PoisonFilter{Reason: q.Reason, ReasonKind: q.ReasonKind, Class: q.Class, Subject: q.Subject,
		Ingress: q.Ingress, CorrelationID: q.CorrelationID}
	var errs []error
	bad := func(param, value string, err error) { errs = append(errs, &ParamError{param, value, err}) }
	if q.Class != "" && !slices.Contains(poisonClasses, q.Class) {
		bad("class", q.Class, fmt.Errorf("must be one of %s", strings.Join(poisonClasses, ", ")))
	}
	if q.Ingress != "" && !slices.Contains(poisonIngresses, q.Ingress) {
		bad("ingress", q.Ingress, fmt.Errorf("must be one of %s", strings.Join(poisonIngresses, ", ")))
	}
	if q.UserID != "" {
		if u, err := uuid.Parse(q.UserID); err != nil || len(q.UserID) != 36 {
			bad("user_id", q.UserID, errors.New("must be a user id (a UUID in the 36-character form)"))
		} else {
			f.UserID = u.String()
		}
	}
	for _, v := range []struct{ param, value string }{
		{"reason", q.Reason}, {"reason_kind", q.ReasonKind}, {"subject", q.Subject}, {"correlation_id", q.CorrelationID},
	} {
		switch {
		case strings.ContainsRune(v.value, 0):
			bad(v.param, v.value, errors.New("must not contain NUL (no entry holds one)"))
		case !utf8.ValidString(v.value):
			bad(v.param, v.value, errors.New("must be valid UTF-8"))
		}
	}
	var err error
	if f.Since, err = parseWhen(q.Since, now); err != nil {
		bad("since", q.Since, err)
	}
	if f.Until, err = parseWhen(q.Until, now); err != nil {
		bad("until", q.Until, err)
	}
	if len(errs) == 0 && !f.Since.IsZero() && !f.Until.IsZero() && f.Until.Before(f.Since) {
		bad("until", q.Until, fmt.Errorf("is before since (%s)", f.Since.UTC().Format(time.RFC3339)))
	}
	if err := errors.Join(errs...); err != nil {
		return store.PoisonFilter{}, err
	}
	return f, nil
}

// Page validates all of q and converts it to a page request. An empty limit
// is the default page size (store.DefaultPoisonPageSize); more than
// store.MaxPoisonPageSize is refused, so no request can ask for the whole
// queue at once.
func (q PoisonQuery) Page(now time.Time) (store.PoisonPageRequest, error) {
	f, err := q.Filter(now)
	errs := []error{}
	if err != nil {
		errs = append(errs, err)
	}
	r := store.PoisonPageRequest{Filter: f, Order: store.NewestFirst, Limit: store.DefaultPoisonPageSize, Cursor: q.Cursor}
	if q.Limit != "" {
		n, err := strconv.Atoi(q.Limit)
		if err != nil || n < 1 || n > store.MaxPoisonPageSize {
			errs = append(errs, &ParamError{"limit", q.Limit, fmt.Errorf("must be a whole number from 1 to %d (default %d)", store.MaxPoisonPageSize, store.DefaultPoisonPageSize)})
		}
		r.Limit = n
	}
	switch q.Order {
	case "", string(store.NewestFirst):
	case string(store.OldestFirst):
		r.Order = store.OldestFirst
	default:
		errs = append(errs, &ParamError{"order", q.Order, fmt.Errorf("must be %s (the default) or %s", store.NewestFirst, store.OldestFirst)})
	}
	if err := errors.Join(errs...); err != nil {
		return store.PoisonPageRequest{}, err
	}
	return r, nil
}

// parseWhen reads "2h", "1d", "1d12h" (that long before now) or an RFC 3339
// time.
func parseWhen(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, ok := parseAgo(s); ok {
		if d < 0 {
			return time.Time{}, errors.New("a duration must be positive (it counts back from now)")
		}
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, errors.New("want a duration before now (e.g. 30m, 2h, 1d, 7d) or an RFC 3339 time (e.g. 2026-11-28T13:28:17Z)")
	}
	return t, nil
}

// parseAgo is time.ParseDuration with whole days in front ("1d", "2d12h").
func parseAgo(s string) (time.Duration, bool) {
	rest, negative := strings.CutPrefix(s, "-")
	days := 0
	if i := strings.IndexByte(rest, 'd'); i > 0 {
		n, err := strconv.Atoi(rest[:i])
		if err != nil || n < 0 || n > 100_000 {
			return 0, false
		}
		days, rest = n, rest[i+1:]
	}
	var d time.Duration
	if rest != "" || days == 0 {
		var err error
		if d, err = time.ParseDuration(rest); err != nil || strings.HasPrefix(rest, "-") {
			return 0, false
		}
	}
	d += time.Duration(days) * 24 * time.Hour
	if negative {
		d = -d
	}
	return d, true
}

func (a *admin) list(w http.ResponseWriter, r *http.Request) {
	pq, err := PoisonQueryFromURL(r.URL.Query(), true)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	req, err := pq.Page(a.NowFunc())
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	page, err := a.DB.ListPoison(r.Context(), req)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, NewPoisonPageJSON(page, req))
}

// poisonStatsTop is how many groups of each dimension stats show.
const poisonStatsTop = 20

func (a *admin) stats(w http.ResponseWriter, r *http.Request) {
	pq, err := PoisonQueryFromURL(r.URL.Query(), false)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	f, err := pq.Filter(a.NowFunc())
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	s, err := a.DB.PoisonStats(r.Context(), f, poisonStatsTop)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, NewPoisonStatsJSON(s))
}

func (a *admin) get(w http.ResponseWriter, r *http.Request) {
	e, err := a.DB.GetPoison(r.Context(), r.PathValue("id"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, NewPoisonJSON(e))
}

// replay answers 200 with the ReplayResult whatever became of the entry
// (committed, still_failing, or a dry run's would_*), except retry_later:
// 503, because the same request can succeed once the database is back.
func (a *admin) replay(w http.ResponseWriter, r *http.Request) {
	dryRun := false
	if v := r.URL.Query().Get("dry_run"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			writeError(w, http.StatusBadRequest, &ParamError{"dry_run", v, errors.New("must be true or false")})
			return
		}
		dryRun = b
	}
	res, err := a.Replayer.Replay(r.Context(), r.PathValue("id"), dryRun)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if !dryRun {
		a.logger.InfoContext(r.Context(), "poison entry replayed via admin API", "poison_id", res.ID, "result", res.Result, "reason", res.Reason)
	}
	status := http.StatusOK
	if res.Result == router.ReplayRetryLater {
		status = http.StatusServiceUnavailable
	}
	httpx.WriteJSON(w, status, res)
}

func (a *admin) delete(w http.ResponseWriter, r *http.Request) {
	e, err := a.deletePoison(r.Context(), r.PathValue("id"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.logger.InfoContext(r.Context(), "poison entry deleted via admin API", "poison_id", e.ID, "error_class", e.Class, "subject", e.Subject)
	httpx.WriteJSON(w, http.StatusOK, map[string]string{"deleted": e.ID})
}

// deletePoison deletes the entry id (or a unique prefix of it) names and
// returns it without its payload; the API and the console delete through it.
func (a *admin) deletePoison(ctx context.Context, id string) (store.PoisonEntry, error) {
	// Resolve a prefix first: DeletePoison takes exact ids only.
	e, err := a.DB.GetPoisonSummary(ctx, id)
	if err == nil {
		err = a.DB.DeletePoison(ctx, e.ID)
	}
	return e, err
}

// fail maps a store error to its status; anything unexpected is logged.
func (a *admin) fail(w http.ResponseWriter, r *http.Request, err error) {
	writeError(w, a.failureStatus(r, err), err)
}

// failureStatus is the status of a store error, for the API and the
// console alike; an unexpected one (500) is logged.
func (a *admin) failureStatus(r *http.Request, err error) int {
	switch {
	case errors.Is(err, store.ErrInvalidPoisonID), errors.Is(err, store.ErrInvalidPoisonQuery):
		return http.StatusBadRequest
	case errors.Is(err, store.ErrPoisonNotFound):
		return http.StatusNotFound
	case errors.Is(err, store.ErrPoisonAmbiguous):
		return http.StatusConflict
	}
	a.logger.ErrorContext(r.Context(), "admin request failed", "method", r.Method, "path", r.URL.Path, "error", err)
	return http.StatusInternalServerError
}
