// Package metrics is the router's Prometheus instrumentation: one registry
// of our own (never the global one) holding Watermill's router metrics and
// the router's own — events by action and outcome, poison writes and depth,
// retries, redeliveries, ingress requests by status, the durable's pending
// and ack-pending counts, and the lag from event to commit.
package metrics

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/social/user-events-router/handlers"
)

const namespace = "user_events_router"

// Outcomes of one delivery of an event.
const (
	OutcomeCommitted = "committed" // its command is committed
	OutcomePoisoned  = "poisoned"  // it went to the poison queue
	OutcomeFailed    = "failed"    // neither: handed back for redelivery (NATS) or 503 (HTTP)
	// OutcomeCarried: the user's ledger found it carried already (a copy, a
	// redelivery, another try) or superseded (stale); nothing was written.
	OutcomeCarried = "already_carried"
	// OutcomeHeld: handed back to be decided later (handlers.VerdictHold).
	OutcomeHeld = "held_back"
)

// Metrics holds the registry and the router's collectors.
type Metrics struct {
	Registry *prometheus.Registry

	events          *prometheus.CounterVec
	poisonWrites    *prometheus.CounterVec
	retries         prometheus.Counter
	redeliveries    prometheus.Counter
	ingressRequests *prometheus.CounterVec
	lag             prometheus.Histogram
	batch           prometheus.Histogram
	receiveToAck    prometheus.Histogram
	handlerTime     *prometheus.HistogramVec
	timers          sync.Map // handler name → handlerTimers
	known           map[string]bool
}

// New builds a registry with Go and process collectors and the router's
// own metrics. actions are the event actions with a handler; any other
// action is counted as "other" so a producer cannot blow up cardinality.
func New(actions []string) *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{
		Registry: reg,
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "events_total",
			Help: "Event deliveries by action, ingress and outcome (committed, poisoned, failed).",
		}, []string{"action", "ingress", "outcome"}),
		poisonWrites: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "poison_writes_total",
			Help: "Poison-queue writes by error class.",
		}, []string{"class"}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "retries_total",
			Help: "In-process retries of failed handling attempts.",
		}),
		redeliveries: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "redeliveries_total",
			Help: "JetStream deliveries that were not the message's first.",
		}),
		ingressRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "ingress_requests_total",
			Help: "HTTP fallback ingress requests by status code.",
		}, []string{"code"}),
		lag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Name: "commit_lag_seconds",
			Help:    "Time from the event's timestamp to its command's commit.",
			Buckets: []float64{.01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600},
		}),
		batch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Name: "commit_batch_commands",
			Help:    "Commands written per SQL transaction (group commit).",
			Buckets: []float64{1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000},
		}),
		receiveToAck: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Name: "receive_to_ack_seconds",
			Help:    "Time from this process receiving a JetStream message to acking it, its command committed (waiting behind the same user's events and the group commit included).",
			Buckets: []float64{.001, .0025, .005, .01, .015, .02, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}),
		handlerTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: "watermill", Name: "handler_execution_time_seconds",
			Help:    "The total time elapsed while executing the handler function in seconds",
			Buckets: handlerTimeBuckets,
		}, []string{"handler_name", "success"}),
		known: map[string]bool{},
	}
	for _, a := range actions {
		m.known[a] = true
	}
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.events, m.poisonWrites, m.retries, m.redeliveries, m.ingressRequests, m.lag, m.batch, m.receiveToAck, m.handlerTime,
	)
	return m
}

// Handler serves the registry in the Prometheus exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{Registry: m.Registry})
}

// AddRouter adds the handler execution time, by handler and success, to
// r: the series Watermill's metrics builder registers
// (user_events_router_watermill_handler_execution_time_seconds, its help,
// labels and buckets), which dashboards and the benchmark read. It is
// observed here rather than by Watermill's middleware, which built a label
// map and looked its series up again for every message; the observers are
// looked up once per handler. Not Watermill's subscriber and publisher
// decorators: the subscriber one puts every message through one more
// goroutine and channel, and counts what events_total already counts (~5%
// of the router's CPU while draining); the handler publishes nothing.
func (m *Metrics) AddRouter(r *message.Router) {
	r.AddMiddleware(m.timeHandler)
}

// handlerTimeBuckets are Watermill's for handler_execution_time_seconds.
var handlerTimeBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1}

// handlerTimers are one handler's observers: failed, succeeded.
type handlerTimers [2]prometheus.Observer

func (m *Metrics) timeHandler(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		start, name := time.Now(), message.HandlerNameFromCtx(msg.Context())
		out, err := h(msg)
		timers := m.handlerTimers(name)
		ok := 1
		if err != nil {
			ok = 0
		}
		timers[ok].Observe(time.Since(start).Seconds())
		return out, err
	}
}

func (m *Metrics) handlerTimers(name string) handlerTimers {
	if t, ok := m.timers.Load(name); ok {
		return t.(handlerTimers)
	}
	t := handlerTimers{m.handlerTime.WithLabelValues(name, "false"), m.handlerTime.WithLabelValues(name, "true")}
	m.timers.Store(name, t)
	return t
}

// Committed records one group-commit transaction of n commands (hook for
// store.GroupOptions.Committed).
func (m *Metrics) Committed(n int) { m.batch.Observe(float64(n)) }

// Acked records how long an acked JetStream message spent in the router
// (hook for router.Options.OnAck).
func (m *Metrics) Acked(d time.Duration) { m.receiveToAck.Observe(d.Seconds()) }

// Retried counts one in-process retry (hook for the Retry middleware).
func (m *Metrics) Retried() { m.retries.Inc() }

// Middleware records the outcome of every delivery. It sits right inside
// Correlation, outside Poison, so it sees the final verdict.
func (m *Metrics) Middleware(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		if n, _ := handlers.DeliveryAttempt(msg.Metadata); n > 1 {
			m.redeliveries.Inc()
		}
		out, err := h(msg)
		outcome := OutcomeCommitted
		held := handlers.IsHold(err)
		switch {
		case held:
			outcome = OutcomeHeld
		case err != nil:
			outcome = OutcomeFailed
		case handlers.PoisonClass(msg.Metadata) != "":
			outcome = OutcomePoisoned
			m.poisonWrites.WithLabelValues(handlers.PoisonClass(msg.Metadata)).Inc()
		case handlers.VerdictOf(msg.Metadata) != "" && handlers.VerdictOf(msg.Metadata) != handlers.VerdictNew:
			outcome = OutcomeCarried
		default:
			if at, ok := handlers.OccurredAt(msg.Metadata); ok {
				m.lag.Observe(time.Since(at).Seconds())
			}
		}
		m.events.WithLabelValues(m.action(msg), handlers.Ingress(msg.Metadata), outcome).Inc()
		return out, err
	}
}

func (m *Metrics) action(msg *message.Message) string {
	a := handlers.Action(msg.Metadata)
	switch {
	case a == "":
		return "undecodable"
	case m.known[a]:
		return a
	}
	return "other"
}

// InstrumentIngress counts ingress responses by status code.
func (m *Metrics) InstrumentIngress(h http.Handler) http.Handler {
	return promhttp.InstrumentHandlerCounter(m.ingressRequests, h)
}

// GaugeSource reports values at scrape time. A source that reads a
// backend makes the scrape wait for it; one that serves a value kept by a
// background check (admin.Health) answers at once, outages included.
type GaugeSource func(ctx context.Context) (float64, error)

// ErrNoValue is what a GaugeSource returns when it has no value yet (say,
// before the first background check): the sample is skipped, silently.
var ErrNoValue = errors.New("no value yet")

// AddGauge registers a gauge whose value is read at scrape time, bounded
// by a short timeout. A failing read skips its sample; the failure is
// logged when it starts and when it ends, not on every scrape.
func (m *Metrics) AddGauge(name, help string, read GaugeSource, logger *slog.Logger) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	m.Registry.MustRegister(&scrapeGauge{
		name:   prometheus.BuildFQName(namespace, "", name),
		desc:   prometheus.NewDesc(prometheus.BuildFQName(namespace, "", name), help, nil, nil),
		read:   read,
		logger: logger,
	})
}

type scrapeGauge struct {
	name    string
	desc    *prometheus.Desc
	read    GaugeSource
	logger  *slog.Logger
	failing atomic.Bool
}

func (g *scrapeGauge) Describe(ch chan<- *prometheus.Desc) { ch <- g.desc }

func (g *scrapeGauge) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	v, err := g.read(ctx)
	if errors.Is(err, ErrNoValue) {
		return
	}
	if err != nil {
		if !g.failing.Swap(true) {
			g.logger.Warn("metric not collected; logged again only once it is back", "metric", g.name, "error", err)
		}
		return
	}
	if g.failing.Swap(false) {
		g.logger.Info("metric collected again", "metric", g.name)
	}
	ch <- prometheus.MustNewConstMetric(g.desc, prometheus.GaugeValue, v)
}
