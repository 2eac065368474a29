package admin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/social/user-events-router/router"
	"github.com/social/user-events-router/router/httpx"
	"github.com/social/user-events-router/store"
)

// Options are the dependencies of the admin HTTP handler.
type Options struct {
	DB       *store.DB
	Replayer *router.Replayer
	// Token, when set, is required as "Authorization: Bearer <token>" on
	// every /admin/ route and on /status. It must be set when the admin
	// server is reachable beyond this machine (configs.Exposed).
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

// NewHandler serves the operator's endpoints:
//
//	GET    /healthz                     200 "ok" while the process runs
//	GET    /readyz                      200 while it can take events, or 503 with why not
//	GET    /status                      every component's state and reason (JSON)
//	GET    /metrics                     Prometheus metrics
//	GET    /admin/poison                a page of entries, newest first, without payloads:
//	                                    ?class ?subject ?ingress ?correlation_id ?user_id
//	                                    ?reason_kind ?reason ?since ?until ?order ?limit ?cursor
//	GET    /admin/poison/stats          counts by class, reason kind, subject, ingress (same filters)
//	GET    /admin/poison/{id}           one entry (id or a unique prefix of 8+ characters)
//	POST   /admin/poison/{id}/replay    replay it; ?dry_run=true writes nothing
//	DELETE /admin/poison/{id}           delete it
//	       /admin/ui/                   the web console over the same (see newConsole)
//
// /admin/ answers JSON, errors as {"error": "..."}. The probes and metrics
// need no token, so orchestrators and scrapers work unchanged; the poison
// API can read and destroy data, so it is behind the token when one is set,
// and so is /status, which tells more about the deployment than a probe
// needs (addresses, error texts).
func NewHandler(o Options) (http.Handler, error) {
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
	a := &admin{Options: o, logger: o.Logger.With("component", "admin"), token: httpx.NewToken(o.Token)}

	api := http.NewServeMux()
	api.HandleFunc("GET /admin/poison", a.list)
	api.HandleFunc("GET /admin/poison/stats", a.stats)
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
	console, err := newConsole(a)
	if err != nil {
		return nil, err
	}
	// Under /admin/, outermost first: the cross-origin refusal (DESIGN §3
	// "Admin": a browser request from another origin changes nothing,
	// token or not, loopback or not), then authentication, which wraps the
	// whole API subtree so unknown paths and wrong methods tell nothing to
	// a caller without the token. The console authenticates by its session
	// cookie (a browser cannot send the bearer header), with the same token.
	mux.Handle("/admin/ui/", a.refuseCrossOrigin(console, console.refused))
	mux.Handle("/admin/", a.refuseCrossOrigin(a.authenticate(api), func(w http.ResponseWriter, _ *http.Request, err error) {
		writeError(w, http.StatusForbidden, err)
	}))
	return mux, nil
}

type admin struct {
	Options
	logger *slog.Logger
	// token is Token, checked by the API's bearer header and the
	// console's login form alike.
	token httpx.Token
}

func (a *admin) authenticate(next http.Handler) http.Handler {
	if !a.token.Set() {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !a.token.Bearer(r) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="user-events-router admin"`)
			writeError(w, http.StatusUnauthorized, errors.New("missing or wrong bearer token"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// refuseCrossOrigin answers a state-changing request (any method but GET,
// HEAD and OPTIONS) that a browser sent from another origin with deny,
// whatever credentials it carries: net/http's CrossOriginProtection reads
// Sec-Fetch-Site (every current browser sends it), or compares Origin with
// Host for a browser that does not. A request with neither header is not a
// browser's (curl, scripts) and passes, to meet authentication next.
func (a *admin) refuseCrossOrigin(next http.Handler, deny func(http.ResponseWriter, *http.Request, error)) http.Handler {
	guard := http.NewCrossOriginProtection()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := guard.Check(r); err != nil {
			a.logger.WarnContext(r.Context(), "cross-origin admin request refused", "method", r.Method, "path", r.URL.Path,
				"origin", strconv.QuoteToASCII(r.Header.Get("Origin")), "sec_fetch_site", strconv.QuoteToASCII(r.Header.Get("Sec-Fetch-Site")))
			deny(w, r, fmt.Errorf("refused: %w (state-changing admin requests must come from the admin address's own pages)", err))
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
	httpx.WriteJSON(w, http.StatusOK, a.StatusFunc())
}

func writeError(w http.ResponseWriter, status int, err error) {
	httpx.WriteJSON(w, status, map[string]string{"error": strings.ReplaceAll(err.Error(), "\n", "; ")})
}

func writeText(w http.ResponseWriter, status int, s string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = fmt.Fprintln(w, s)
}
