package ingress

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/social/user-events-router/handlers"
	"github.com/social/user-events-router/middleware"
	"github.com/social/user-events-router/router"
	"github.com/social/user-events-router/router/httpx"
	"github.com/social/user-events-router/schema"
)

// Path is where the Auth Service posts events when NATS is down
// (its BACKEND_SYNC_URL).
const Path = "/api/sync/users"

// maxKeptBody is the largest oversized body the ingress still reads to keep
// in the poison queue. Beyond it the body is not read at all: holding more
// in memory per request is the cost a hostile or broken client must not be
// able to impose, and a real identity event is a few hundred bytes.
const maxKeptBody = 1 << 20

// maxEchoedIDBytes bounds the X-Request-ID of an answer. The correlation
// id it renders is at most schema.MaxRequestIDBytes of printable text, and
// schema.PrintableASCII writes no character in more than three times its
// UTF-8 bytes (é, 2 bytes, as \u00e9), so no correlation id is ever cut.
const maxEchoedIDBytes = 3 * schema.MaxRequestIDBytes

// Options configures the HTTP fallback ingress.
type Options struct {
	// Pipeline handles each event exactly as the NATS path does.
	Pipeline *router.Pipeline
	// Poison keeps bodies over MaxBodyBytes (up to 1 MiB), so an event
	// rejected for its size is never lost.
	Poison       middleware.PoisonSink
	MaxBodyBytes int64
	// Token, when set, is required as "Authorization: Bearer <token>".
	// "" means no authentication: the Auth Service sends none.
	Token  string
	Logger *slog.Logger
}

// NewHandler validates o and returns the handler for POST
// /api/sync/users. It answers JSON, and 200 only once the event's command
// is committed, because the Auth Service counts only 200 as delivered and
// drops the event after its third try:
//
//	200 committed (or already committed: commands are idempotent)
//	400 invalid event; kept in the poison queue
//	401 wrong or missing bearer token (only when Token is set)
//	404 any other path
//	405 any other method
//	413 body over MaxBodyBytes; kept in the poison queue when at most 1 MiB
//	415 Content-Type is not application/json, or names a charset other than utf-8
//	500 the handler panicked; kept in the poison queue
//	503 the database is unavailable or too slow: the event may or may not be
//	    stored (a connection can drop mid-commit); a repeat is safe
//
// Every answer carries the correlation id, as "correlation_id" and as the
// X-Request-ID header (in its schema.PrintableASCII form: the two are equal
// for every ASCII id, and the header parses in any HTTP client whatever the
// event's request_id held); a caller's X-Request-ID becomes the correlation
// id unless the event has its own request_id.
func NewHandler(o Options) (http.Handler, error) {
	var missing []string
	if o.Pipeline == nil {
		missing = append(missing, "Pipeline")
	}
	if o.Poison == nil {
		missing = append(missing, "Poison")
	}
	if o.Logger == nil {
		missing = append(missing, "Logger")
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("router: ingress handler needs %s", strings.Join(missing, ", "))
	}
	if o.MaxBodyBytes <= 0 {
		return nil, fmt.Errorf("router: ingress MaxBodyBytes=%d: must be positive", o.MaxBodyBytes)
	}
	in := &ingress{Options: o, logger: o.Logger.With("component", "ingress"), token: httpx.NewToken(o.Token)}
	return in, nil
}

// Timeouts of the ingress server.
const (
	ingressReadHeaderTimeout = 5 * time.Second
	// ingressReadTimeout covers the headers and a body of up to 1 MiB.
	ingressReadTimeout = 15 * time.Second
	// ingressWriteSlack is the time left to write the answer.
	ingressWriteSlack     = 5 * time.Second
	ingressIdleTimeout    = time.Minute
	ingressMaxHeaderBytes = 32 << 10
)

// NewServer returns an *http.Server for addr with a timeout on every
// phase of a request, so no client can hold a connection or a goroutine
// forever. handlerBudget is the longest Pipeline.Run may take (every
// in-process attempt and backoff, configs.Config.AttemptBudget): the write
// deadline starts when the headers are read, so it covers reading the body,
// the handler and writing the answer, and a slow commit still gets its
// answer out instead of a cut connection.
func NewServer(addr string, h http.Handler, handlerBudget time.Duration) *http.Server {
	return &http.Server{
		Addr:              addr,
		Handler:           h,
		ReadHeaderTimeout: ingressReadHeaderTimeout,
		ReadTimeout:       ingressReadTimeout,
		WriteTimeout:      ingressReadTimeout + max(handlerBudget, 0) + ingressWriteSlack,
		IdleTimeout:       ingressIdleTimeout,
		MaxHeaderBytes:    ingressMaxHeaderBytes,
	}
}

type ingress struct {
	Options
	logger *slog.Logger
	token  httpx.Token
}

// ingressReply is the JSON body of every ingress answer.
type ingressReply struct {
	Status        string `json:"status,omitempty"`
	Error         string `json:"error,omitempty"`
	PoisonID      string `json:"poison_id,omitempty"`
	CorrelationID string `json:"correlation_id"`
}

// answer is what became of one request, for the response and its log line.
type answer struct {
	status int
	reply  ingressReply
	// class is the poison class when the event went to the poison queue.
	class string
	// bodyBytes is the size of the body read, or -1 when it was not read.
	bodyBytes int
	// handled is set when the pipeline ran: the Correlation middleware has
	// logged the outcome's details (a reason may quote event fields), so
	// the request line leaves them out.
	handled bool
	// lost marks an event that was neither committed nor kept, and that no
	// retry can change (a body too large to keep): it is logged at warn.
	lost bool
}

func (in *ingress) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	a := in.handle(w, r)
	// The id may come from the body (request_id, made printable by the
	// decoder and the Correlation middleware) or from a poison entry
	// written by an older version: it is escaped here once more, for the
	// medium, because a control byte in a header makes the Auth Service's
	// client reject an answer whose event was committed.
	w.Header().Set("X-Request-ID", schema.PrintableASCII(a.reply.CorrelationID, maxEchoedIDBytes))
	if a.status == http.StatusServiceUnavailable {
		// The Auth Service's own backoff (+1 s) agrees.
		w.Header().Set("Retry-After", "1")
	}
	httpx.WriteJSON(w, a.status, a.reply)

	level := slog.LevelInfo
	if a.lost {
		level = slog.LevelWarn
	}
	attrs := []slog.Attr{
		slog.String("method", r.Method),
		slog.String("path", r.URL.Path),
		slog.Int("status", a.status),
		slog.String("correlation_id", a.reply.CorrelationID),
		slog.Duration("took", time.Since(start)),
	}
	if a.bodyBytes >= 0 {
		attrs = append(attrs, slog.Int("body_bytes", a.bodyBytes))
	}
	if a.reply.PoisonID != "" {
		attrs = append(attrs, slog.String("poison_id", a.reply.PoisonID), slog.String("error_class", a.class))
	}
	if a.reply.Error != "" && !a.handled {
		attrs = append(attrs, slog.String("error", a.reply.Error))
	}
	in.logger.LogAttrs(r.Context(), level, "ingress request", attrs...)
}

// handle checks the request from the cheapest reason to refuse it to the
// most expensive, and runs an acceptable event through the pipeline. It
// sets the headers an error status needs; ServeHTTP writes the body.
func (in *ingress) handle(w http.ResponseWriter, r *http.Request) answer {
	headerID := requestIDHeader(r)
	refuse := func(status int, format string, args ...any) answer {
		// Nothing of the body was read: the caller's id, or a fresh one.
		corr := headerID
		if corr == "" {
			corr = watermill.NewUUID()
		}
		return answer{status: status, reply: ingressReply{Error: fmt.Sprintf(format, args...), CorrelationID: corr}, bodyBytes: -1}
	}

	if r.URL.Path != Path {
		return refuse(http.StatusNotFound, "no such path %q: events go to POST %s", r.URL.Path, Path)
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		return refuse(http.StatusMethodNotAllowed, "method %s not allowed: POST the event to %s", r.Method, Path)
	}
	if in.token.Set() && !in.token.Bearer(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="user-events-router ingress"`)
		return refuse(http.StatusUnauthorized, "missing or wrong bearer token")
	}
	if problem := checkContentType(r.Header.Get("Content-Type")); problem != "" {
		return refuse(http.StatusUnsupportedMediaType, "%s", problem)
	}

	// The read limit is the larger of the ingress limit and what is worth
	// keeping; a declared length beyond it is refused unread, and an
	// undeclared or understated one is cut off by MaxBytesReader.
	limit := max(in.MaxBodyBytes, maxKeptBody)
	if r.ContentLength > limit {
		return in.tooLargeToKeep(refuse, fmt.Sprintf("body is %d bytes", r.ContentLength))
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return in.tooLargeToKeep(refuse, fmt.Sprintf("body is over %d bytes", limit))
		}
		return refuse(http.StatusBadRequest, "read body: %v", err)
	}
	if int64(len(body)) > in.MaxBodyBytes {
		return in.keepOversized(r, headerID, body)
	}
	return in.run(r, headerID, body)
}

// tooLargeToKeep refuses a body over 1 MiB without reading (the rest of)
// it. The event is lost: the Auth Service gives up on a 413, and there is
// no copy to keep, so the log line is a warning.
func (in *ingress) tooLargeToKeep(refuse func(int, string, ...any) answer, size string) answer {
	a := refuse(http.StatusRequestEntityTooLarge, "%s, over the ingress limit of %d bytes, and too large to keep in the poison queue: it was not stored", size, in.MaxBodyBytes)
	a.lost = true
	return a
}

// keepOversized stores a body over MaxBodyBytes (but at most 1 MiB) in the
// poison queue, byte for byte, and refuses it with 413: the event is not
// handled, yet not lost either, and an operator can inspect or replay it.
// When even the poison entry cannot be written, the answer is 503, so the
// Auth Service tries again rather than drop the event on our word.
func (in *ingress) keepOversized(r *http.Request, headerID string, body []byte) answer {
	corr := handlers.ResolveCorrelationID("", headerID, body)
	// No subject (HTTP has none), and nothing decoded: the entry holds
	// the body, where it came from and why.
	md := make(message.Metadata, 2)
	handlers.SetIngress(md, schema.IngressHTTP)
	handlers.SetCorrelationID(md, corr)
	reason := fmt.Sprintf("body is %d bytes, over the ingress limit of %d bytes", len(body), in.MaxBodyBytes)
	e := middleware.NewPoisonEntry(body, md, middleware.ClassPermanent, reason, time.Now())
	if err := in.Poison.PutPoison(r.Context(), e); err != nil {
		in.logger.WarnContext(r.Context(), "oversized body could not be kept in the poison queue", "correlation_id", corr, "poison_id", e.ID, "error", err)
		a := unavailable(corr)
		a.bodyBytes = len(body)
		return a
	}
	return answer{
		status:    http.StatusRequestEntityTooLarge,
		reply:     ingressReply{Error: e.Reason, PoisonID: e.ID, CorrelationID: corr},
		class:     e.Class,
		bodyBytes: len(body),
	}
}

// run hands the event to the pipeline as the NATS path would, with no
// subject (HTTP has none, so the decoder skips the subject/action check).
// Pipeline.Run returns only after the command or the poison entry is
// committed, or with Outcome.Err when neither is.
func (in *ingress) run(r *http.Request, headerID string, body []byte) answer {
	msg := message.NewMessage(watermill.NewUUID(), body)
	handlers.SetIngress(msg.Metadata, schema.IngressHTTP)
	if headerID != "" {
		// handlers.Admit (in the Correlation middleware) lets the body's
		// request_id win.
		handlers.SetCorrelationID(msg.Metadata, headerID)
	}
	o := in.Pipeline.Run(r.Context(), msg)
	corr := o.CorrelationID
	if corr == "" { // the Correlation middleware always sets one; belt and braces
		corr = handlers.ResolveCorrelationID("", headerID, body)
	}
	var a answer
	switch {
	case o.Err != nil:
		// The caller learns only that nothing was stored; the Correlation
		// middleware has logged the error under the same correlation id.
		a = unavailable(corr)
	case o.Poisoned && o.Class == middleware.ClassPermanent:
		a = answer{status: http.StatusBadRequest, reply: ingressReply{Error: o.Reason, PoisonID: o.PoisonID}}
	case o.Poisoned:
		// A panic (or any other class): our bug, not the caller's. The
		// reason and the stack are in the poison entry.
		a = answer{status: http.StatusInternalServerError, reply: ingressReply{
			Error: "internal error while handling the event; it is kept in the poison queue", PoisonID: o.PoisonID,
		}}
	default:
		a = answer{status: http.StatusOK, reply: ingressReply{Status: "ok"}}
	}
	a.reply.CorrelationID, a.class, a.bodyBytes, a.handled = corr, o.Class, len(body), true
	return a
}

// unavailable is the answer when the database is down or too slow. It
// cannot say that nothing was stored: a connection that drops during the
// COMMIT leaves the router not knowing whether it took (1 in 86 answers in
// a database outage had been committed). It can say that a repeat is safe:
// the user's ledger turns a second copy of a committed event into a no-op.
// Retry-After matches the Auth Service's first backoff.
func unavailable(corr string) answer {
	return answer{status: http.StatusServiceUnavailable, reply: ingressReply{
		Error:         "the database is unavailable or too slow: the event may or may not have been stored; sending it again is safe (a repeat of a stored event changes nothing)",
		CorrelationID: corr,
	}}
}

// checkContentType returns why ct is not acceptable, or "". JSON is the
// only body the ingress takes, and JSON is UTF-8 (RFC 8259): a charset
// parameter is allowed only when it says so (utf-8, any case), since a body
// in another encoding would be read as the wrong text. The media type is
// matched case-insensitively; the Auth Service sends application/json.
func checkContentType(ct string) string {
	if strings.TrimSpace(ct) == "" {
		return "missing Content-Type: send the event as application/json"
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil {
		return fmt.Sprintf("Content-Type %q is not a valid media type (%v): send application/json", ct, err)
	}
	if mt != "application/json" {
		return fmt.Sprintf("Content-Type %q is not supported: send application/json", ct)
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
		return fmt.Sprintf("Content-Type %q: charset %q is not supported: send the event as UTF-8 (charset=utf-8, or no charset)", ct, cs)
	}
	return ""
}

// requestIDHeader is the caller's X-Request-ID when it is fit to be a
// correlation id as it is (visible ASCII, at most schema.MaxRequestIDBytes);
// anything else is ignored rather than escaped: an id that had to be
// changed would no longer be the caller's, and a minted one is as good.
func requestIDHeader(r *http.Request) string {
	id := strings.TrimSpace(r.Header.Get("X-Request-ID"))
	if len(id) > schema.MaxRequestIDBytes {
		return ""
	}
	for i := 0; i < len(id); i++ {
		if id[i] < 0x21 || id[i] > 0x7e {
			return ""
		}
	}
	return id
}
