package router

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/social/user-events-router/configs"
	"github.com/social/user-events-router/middleware"
	"github.com/social/user-events-router/store"
)

// PoisonJSON is the one JSON shape of a poison entry, shared by the admin
// API and `poison … --json`, so scripts written against either read both.
// Field names are stable.
type PoisonJSON struct {
	ID            string    `json:"id"`
	Class         string    `json:"class"`
	Reason        string    `json:"reason"`
	Subject       string    `json:"subject"`
	Handler       string    `json:"handler"`
	Ingress       string    `json:"ingress"`
	CorrelationID string    `json:"correlation_id"`
	Stream        string    `json:"stream"`
	StreamSeq     uint64    `json:"stream_seq"`
	DeliveryCount uint64    `json:"delivery_count"`
	FirstFailure  time.Time `json:"first_failure_at"`
	LastFailure   time.Time `json:"last_failure_at"`
	Failures      int       `json:"failures"`
	// Payload is the original body when it is valid UTF-8, else null;
	// PayloadBase64 always holds the exact bytes.
	Payload       *string `json:"payload"`
	PayloadBase64 string  `json:"payload_base64"`
	// Stack is a panic's stack trace.
	Stack string `json:"stack,omitempty"`
}

// NewPoisonJSON converts a stored entry to its JSON shape.
func NewPoisonJSON(e store.PoisonEntry) PoisonJSON {
	j := PoisonJSON{
		ID:            e.ID,
		Class:         e.Class,
		Reason:        e.Reason,
		Subject:       e.Subject,
		Handler:       e.Handler,
		Ingress:       e.Ingress,
		CorrelationID: e.CorrelationID,
		Stream:        e.Stream,
		StreamSeq:     e.StreamSeq,
		DeliveryCount: e.DeliveryCount,
		FirstFailure:  e.FirstFailure.UTC(),
		LastFailure:   e.LastFailure.UTC(),
		Failures:      e.Failures,
		PayloadBase64: base64.StdEncoding.EncodeToString(e.Payload),
		Stack:         e.Stack,
	}
	if utf8.Valid(e.Payload) {
		s := string(e.Payload)
		j.Payload = &s
	}
	return j
}

// NewPoisonJSONList converts entries; none is an empty array, not null.
func NewPoisonJSONList(entries []store.PoisonEntry) []PoisonJSON {
	out := make([]PoisonJSON, 0, len(entries))
	for _, e := range entries {
		out = append(out, NewPoisonJSON(e))
	}
	return out
}

// PoisonQuery is a poison-list filter as people type it, on the command line
// (--since 2h) or in a URL (?since=2h). Parsing lives here once, so both
// accept the same values and name the same parameters in their errors.
type PoisonQuery struct {
	Reason  string
	Class   string
	Subject string
	// Since and Until are a duration before now ("2h") or an RFC 3339 time.
	Since, Until string
	// Limit is a non-negative integer; 0 or empty means no cap.
	Limit string
}

// ParamError names the filter parameter that has a bad value.
type ParamError struct {
	Param string
	Value string
	Err   error
}

func (e *ParamError) Error() string {
	return fmt.Sprintf("%s=%q: %v", e.Param, e.Value, e.Err)
}

func (e *ParamError) Unwrap() error { return e.Err }

// poisonClasses are the error classes a filter may name.
var poisonClasses = []string{middleware.ClassPermanent, middleware.ClassPanic, middleware.ClassTransientExhausted}

// Filter validates q and converts it, resolving relative times against now.
// A bad value is a *ParamError naming the parameter (reason, class, subject,
// since, until, limit).
func (q PoisonQuery) Filter(now time.Time) (store.PoisonFilter, error) {
	f := store.PoisonFilter{Reason: q.Reason, Class: q.Class, Subject: q.Subject}
	var errs []error
	if q.Class != "" && !slices.Contains(poisonClasses, q.Class) {
		errs = append(errs, &ParamError{"class", q.Class, fmt.Errorf("must be one of %s", strings.Join(poisonClasses, ", "))})
	}
	var err error
	if f.Since, err = parseWhen(q.Since, now); err != nil {
		errs = append(errs, &ParamError{"since", q.Since, err})
	}
	if f.Until, err = parseWhen(q.Until, now); err != nil {
		errs = append(errs, &ParamError{"until", q.Until, err})
	}
	if q.Limit != "" {
		n, err := strconv.Atoi(q.Limit)
		if err != nil || n < 0 {
			errs = append(errs, &ParamError{"limit", q.Limit, errors.New("must be a non-negative integer (0 = no limit)")})
		}
		f.Limit = n
	}
	if err := errors.Join(errs...); err != nil {
		return store.PoisonFilter{}, err
	}
	return f, nil
}

// parseWhen reads "2h" (that long before now) or an RFC 3339 time.
func parseWhen(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return time.Time{}, errors.New("a duration must be positive (it counts back from now)")
		}
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, errors.New("want a duration before now (e.g. 2h, 30m) or an RFC 3339 time (e.g. 2026-11-28T13:28:17Z)")
	}
	return t, nil
}

// AdminOptions are the dependencies of the admin HTTP handler.
type AdminOptions struct {
	DB       *store.DB
	Replayer *Replayer
	// Token, when set, is required as "Authorization: Bearer <token>" on
	// every /admin/ route and on /status. See AdminNeedsToken for when it
	// must be set.
	Token  string
	Logger *slog.Logger
	// ReadyFunc reports whether the router can take events (see
	// Health.Ready); its error is the /readyz body. It should answer at
	// once: /readyz gives it readyTimeout at most.
	ReadyFunc func(context.Context) error
	// StatusFunc reports every component for /status (see Health.Status);
	// nil answers 404.
	StatusFunc func() Status
	// Metrics serves /metrics; nil answers 404.
	Metrics http.Handler
	// NowFunc is the clock relative filters count back from (default time.Now).
	NowFunc func() time.Time
}

// readyTimeout bounds one readiness check, so a hung database answers 503
// before the orchestrator's probe gives up.
const readyTimeout = 5 * time.Second

// NewAdminHandler serves the operator's endpoints:
//
//	GET    /healthz                     200 "ok" while the process runs
//	GET    /readyz                      200 while it can take events, or 503 with why not
//	GET    /status                      every component's state and reason (JSON)
//	GET    /metrics                     Prometheus metrics
//	GET    /admin/poison                entries; ?reason ?class ?subject ?since ?until ?limit
//	GET    /admin/poison/{id}           one entry (id or a unique prefix of 8+ characters)
//	POST   /admin/poison/{id}/replay    replay it; ?dry_run=true writes nothing
//	DELETE /admin/poison/{id}           delete it
//
// /admin/ answers JSON, errors as {"error": "..."}. The probes and metrics
// need no token, so orchestrators and scrapers work unchanged; the poison
// API can read and destroy data, so it is behind the token when one is set,
// and so is /status, which tells more about the deployment than a probe
// needs (addresses, error texts).
func NewAdminHandler(o AdminOptions) (http.Handler, error) {
	var missing []string
	if o.DB == nil {
		missing = append(missing, "DB")
	}
	if o.Replayer == nil {
		missing = append(missing, "Replayer")
	}
	if o.Logger == nil {
		missing = append(missing, "Logger")
	}
	if o.ReadyFunc == nil {
		missing = append(missing, "ReadyFunc")
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("router: admin handler needs %s", strings.Join(missing, ", "))
	}
	if o.NowFunc == nil {
		o.NowFunc = time.Now
	}
	a := &admin{AdminOptions: o, logger: o.Logger.With("component", "admin")}

	api := http.NewServeMux()
	api.HandleFunc("GET /admin/poison", a.list)
	api.HandleFunc("GET /admin/poison/{id}", a.get)
	api.HandleFunc("POST /admin/poison/{id}/replay", a.replay)
	api.HandleFunc("DELETE /admin/poison/{id}", a.delete)

	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { writeText(w, http.StatusOK, "ok") })
	mux.HandleFunc("GET /readyz", a.ready)
	if o.Metrics != nil {
		mux.Handle("GET /metrics", o.Metrics)
	}
	if o.StatusFunc != nil {
		mux.Handle("GET /status", a.authenticate(http.HandlerFunc(a.status)))
	}
	// Authentication wraps the whole subtree, so unknown paths and wrong
	// methods under /admin/ tell nothing to a caller without the token.
	mux.Handle("/admin/", a.authenticate(api))
	return mux, nil
}

// AdminNeedsToken reports whether an admin server on addr is reachable
// beyond this machine, so it must not run without ADMIN_TOKEN: true unless
// the host is a loopback address or "localhost". An empty host (":8081")
// listens on every interface; an address that does not parse counts as
// exposed.
func AdminNeedsToken(addr string) bool { return configs.Exposed(addr) }

type admin struct {
	AdminOptions
	logger *slog.Logger
}

func (a *admin) authenticate(next http.Handler) http.Handler {
	if a.Token == "" {
		return next
	}
	want := sha256.Sum256([]byte(a.Token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scheme, token, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		// Comparing digests keeps the comparison constant-time in the
		// token's length too.
		got := sha256.Sum256([]byte(strings.TrimSpace(token)))
		if !strings.EqualFold(scheme, "Bearer") || subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="user-events-router admin"`)
			writeError(w, http.StatusUnauthorized, errors.New("missing or wrong bearer token"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (a *admin) ready(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
	defer cancel()
	if err := a.ReadyFunc(ctx); err != nil {
		writeText(w, http.StatusServiceUnavailable, "not ready: "+err.Error())
		return
	}
	writeText(w, http.StatusOK, "ok")
}

// status answers 200 whatever the components' states: it is a report,
// and its "ready" field says what /readyz says.
func (a *admin) status(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, a.StatusFunc())
}

func (a *admin) list(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	for param := range q {
		if !slices.Contains([]string{"reason", "class", "subject", "since", "until", "limit"}, param) {
			writeError(w, http.StatusBadRequest, fmt.Errorf("unknown parameter %q (want reason, class, subject, since, until, limit)", param))
			return
		}
	}
	f, err := PoisonQuery{
		Reason:  q.Get("reason"),
		Class:   q.Get("class"),
		Subject: q.Get("subject"),
		Since:   q.Get("since"),
		Until:   q.Get("until"),
		Limit:   q.Get("limit"),
	}.Filter(a.NowFunc())
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	entries, err := a.DB.ListPoison(r.Context(), f)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, NewPoisonJSONList(entries))
}

func (a *admin) get(w http.ResponseWriter, r *http.Request) {
	e, err := a.DB.GetPoison(r.Context(), r.PathValue("id"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, NewPoisonJSON(e))
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
	if res.Result == ReplayRetryLater {
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, res)
}

func (a *admin) delete(w http.ResponseWriter, r *http.Request) {
	// Resolve a prefix first: DeletePoison takes exact ids only.
	e, err := a.DB.GetPoison(r.Context(), r.PathValue("id"))
	if err == nil {
		err = a.DB.DeletePoison(r.Context(), e.ID)
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.logger.InfoContext(r.Context(), "poison entry deleted via admin API", "poison_id", e.ID, "error_class", e.Class, "subject", e.Subject)
	writeJSON(w, http.StatusOK, map[string]string{"deleted": e.ID})
}

// fail maps a store error to its status; anything unexpected is logged.
func (a *admin) fail(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, store.ErrPoisonNotFound):
		writeError(w, http.StatusNotFound, err)
	case errors.Is(err, store.ErrPoisonAmbiguous):
		writeError(w, http.StatusConflict, err)
	default:
		a.logger.ErrorContext(r.Context(), "admin request failed", "method", r.Method, "path", r.URL.Path, "error", err)
		writeError(w, http.StatusInternalServerError, err)
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v) // the client went away; nothing to do
}

func writeError(w http.ResponseWriter, status int, err error) {
	writeJSON(w, status, map[string]string{"error": strings.ReplaceAll(err.Error(), "\n", "; ")})
}

func writeText(w http.ResponseWriter, status int, s string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = fmt.Fprintln(w, s)
}
