package admin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/social/user-events-router/router"
	"github.com/social/user-events-router/router/broker"
	"github.com/social/user-events-router/router/ingress"
	"github.com/social/user-events-router/store"
)

// Component states in /status.
const (
	StateOK      = "ok"
	StateDown    = "down"
	StateUnknown = "unknown" // not checked yet
)

// Defaults of HealthOptions.
const (
	// DefaultCheckInterval is how often the database is probed and the
	// durable's state read: a kubelet probing every few seconds, several
	// scrapers and operators on /status all share one check per interval.
	DefaultCheckInterval = 5 * time.Second
	// DefaultCheckTimeout bounds one check, below a kubelet's usual probe
	// timeout, so a slow backend shows as a failed check, not a hung one.
	DefaultCheckTimeout = 2 * time.Second
	// DefaultRedundancyInterval is how often the stream's replicas and the
	// cluster's JetStream servers are read: they change when the Auth
	// Service starts (it sets Replicas: 1) or an operator edits the stream,
	// and counting the servers waits for each to answer.
	DefaultRedundancyInterval = 30 * time.Second
)

// Health watches what the router depends on, from the background, and
// answers /readyz, /status and the state metrics from what it last saw: no
// caller waits on the database or the broker, and the backends see one
// check per interval however many callers there are.
//
// Readiness is the database alone — it answers, and every table the router
// writes takes an insert (store.DB.ProbeWritable) — because that is all the
// HTTP fallback needs, and the fallback must stay in service exactly while
// NATS is away. The consumer's state (its connection, the durable bound,
// pending counts, the last ack) is reported beside readiness, in /status
// and metrics, never folded into it.
//
// Each component's state changes are logged once, when they happen.
type Health struct {
	o      HealthOptions
	logger *slog.Logger

	mu sync.Mutex
	// The last write probe.
	dbPolled bool
	dbErr    error
	dbAt     time.Time
	// The last read of the durable's state, and the last one that worked.
	infoPolled bool
	infoErr    error
	infoAt     time.Time
	info       *jetstream.ConsumerInfo
	infoOKAt   time.Time
	// watchStart is when the durable began to be watched (the router ran).
	watchStart time.Time
	// The last read of the stream's redundancy that worked, and what was
	// last logged of it.
	redundancy       *broker.Redundancy
	redundancyAt     time.Time
	redundancyLogged string

	database, consumer, embedded tracked
}

// HealthOptions are what Health watches.
type HealthOptions struct {
	DB *store.DB
	// JetStream reads the durable's state; it should not be on ConsumerConn,
	// so that a request never queues behind a flood of deliveries.
	JetStream jetstream.JetStream
	Binding   broker.Binding
	// ConsumerConn is the subscriber's connection.
	ConsumerConn *nats.Conn
	// Router, when set, gives the messages in flight and the last ack, and
	// the durable is watched only once it runs (before, it is not bound).
	Router *router.Router
	// Embedded is the in-process broker; nil with NATS_URL.
	Embedded *broker.EmbeddedServer
	// IngressAddr is where the HTTP fallback listens, for the report.
	IngressAddr string
	// Interval and Timeout default to DefaultCheckInterval and
	// DefaultCheckTimeout; RedundancyInterval to
	// DefaultRedundancyInterval.
	Interval, Timeout, RedundancyInterval time.Duration
	Logger                                *slog.Logger
	// NowFunc is the clock (default time.Now).
	NowFunc func() time.Time
}

// NewHealth checks o. Nothing is checked until Run.
func NewHealth(o HealthOptions) (*Health, error) {
	var missing []string
	if o.DB == nil {
		missing = append(missing, "DB")
	}
	if o.JetStream == nil {
		missing = append(missing, "JetStream")
	}
	if o.ConsumerConn == nil {
		missing = append(missing, "ConsumerConn")
	}
	if o.Logger == nil {
		missing = append(missing, "Logger")
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("router: health needs %v", missing)
	}
	if o.Interval <= 0 {
		o.Interval = DefaultCheckInterval
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultCheckTimeout
	}
	if o.RedundancyInterval <= 0 {
		o.RedundancyInterval = DefaultRedundancyInterval
	}
	if o.NowFunc == nil {
		o.NowFunc = time.Now
	}
	h := &Health{o: o, logger: o.Logger.With("component", "health")}
	start := o.NowFunc()
	for _, c := range []*tracked{&h.database, &h.consumer, &h.embedded} {
		*c = tracked{state: StateUnknown, reason: "not checked yet", since: start}
	}
	return h, nil
}

// Run checks until ctx ends: the database at once and then every
// interval; the durable likewise, from when the router runs; the stream's
// redundancy at once and then every redundancy interval.
func (h *Health) Run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Add(3)
	go func() {
		defer wg.Done()
		h.every(ctx, h.o.Interval, h.probeDatabase)
	}()
	go func() {
		defer wg.Done()
		h.every(ctx, h.o.RedundancyInterval, h.readRedundancy)
	}()
	go func() {
		defer wg.Done()
		if h.o.Router != nil {
			select {
			case <-h.o.Router.Running():
			case <-ctx.Done():
				return
			}
		}
		h.awaitBound(ctx)
		h.every(ctx, h.o.Interval, h.readConsumer)
	}()
	wg.Wait()
}

// every runs check now and then every interval until ctx ends, each run
// bounded by the timeout. Runs never overlap: a check that outlives its
// timeout (a driver that ignores its context) delays the next one, and
// its result ageing shows it.
func (h *Health) every(ctx context.Context, interval time.Duration, check func(context.Context)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		cctx, cancel := context.WithTimeout(ctx, h.o.Timeout)
		check(cctx)
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// awaitBound reads the durable every startupPoll until it first shows a
// bound subscriber, for at most the startup grace: the subscription the
// router has just made reaches the durable's state a moment later, and
// reporting the consumer down for that moment would be a false alarm.
func (h *Health) awaitBound(ctx context.Context) {
	h.mu.Lock()
	h.watchStart = h.o.NowFunc()
	h.mu.Unlock()
	t := time.NewTicker(startupPoll)
	defer t.Stop()
	for {
		cctx, cancel := context.WithTimeout(ctx, h.o.Timeout)
		h.readConsumer(cctx)
		cancel()
		h.mu.Lock()
		waiting := h.consumer.state == StateUnknown && h.o.NowFunc().Sub(h.watchStart) < h.stale()
		h.mu.Unlock()
		if !waiting {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// startupPoll is how often awaitBound looks.
const startupPoll = 100 * time.Millisecond

func (h *Health) probeDatabase(ctx context.Context) {
	err := h.o.DB.ProbeWritable(ctx)
	if ctx.Err() != nil && err != nil {
		err = fmt.Errorf("write probe did not finish within %v: %w", h.o.Timeout, err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.dbPolled, h.dbErr, h.dbAt = true, err, h.o.NowFunc()
	h.observeDatabase(h.dbAt)
}

func (h *Health) readConsumer(ctx context.Context) {
	info, err := broker.ConsumerInfo(ctx, h.o.JetStream, h.o.Binding)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.infoPolled, h.infoErr, h.infoAt = true, err, h.o.NowFunc()
	if err == nil {
		h.info, h.infoOKAt = info, h.infoAt
	}
	h.observeConsumer(h.infoAt)
}

// readRedundancy reads the stream's replicas and counts its cluster's
// JetStream servers (broker.StreamRedundancy; the count waits for the
// servers' answers within the check's timeout). A failed read keeps the
// last one. Logged once when the stream becomes weaker than its cluster,
// when it no longer is, and when the servers cannot be counted.
func (h *Health) readRedundancy(ctx context.Context) {
	r, err := broker.StreamRedundancy(ctx, h.o.JetStream, h.o.Binding.Stream, h.o.Timeout)
	if err != nil {
		h.logger.Debug("stream redundancy not read", "stream", h.o.Binding.Stream, "error", err)
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.redundancy, h.redundancyAt = &r, h.o.NowFunc()
	state := "ok"
	switch {
	case r.Weaker():
		state = "weaker"
	case r.ServersErr != nil:
		state = "unknown"
	}
	if state == h.redundancyLogged {
		return
	}
	attrs := []any{"stream", r.Stream, "replicas", r.Replicas, "cluster", r.Cluster, "jetstream_servers", r.Servers}
	switch state {
	case "weaker":
		h.logger.Warn("stream has fewer replicas than its cluster could hold", append(attrs, "detail", r.String())...)
	case "unknown":
		h.logger.Warn("cannot count the cluster's JetStream servers; logged again only once it changes", append(attrs, "error", r.ServersErr)...)
	default:
		if h.redundancyLogged != "" {
			h.logger.Info("stream redundancy as wanted", attrs...)
		}
	}
	h.redundancyLogged = state
}

// Redundancy is the stream's redundancy as last read, and when; nil
// before the first read.
func (h *Health) Redundancy() (*broker.Redundancy, time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.redundancy, h.redundancyAt
}

// stale is how old the last check may be before it no longer counts:
// past it, a check has hung or the checks stopped.
func (h *Health) stale() time.Duration { return 2*h.o.Interval + h.o.Timeout }

// observeDatabase updates the database's state from the last probe.
// h.mu is held.
func (h *Health) observeDatabase(now time.Time) {
	state, reason := StateOK, ""
	switch {
	case !h.dbPolled:
		state, reason = StateUnknown, "not checked yet"
	case now.Sub(h.dbAt) > h.stale():
		state, reason = StateDown, fmt.Sprintf("no write probe has finished for %v", now.Sub(h.dbAt).Round(time.Second))
	case h.dbErr != nil:
		state, reason = StateDown, h.dbErr.Error()
	}
	h.set(&h.database, "database", state, reason, now)
}

// observeConsumer updates the consumer's state from its connection now and
// the last read of the durable. h.mu is held.
func (h *Health) observeConsumer(now time.Time) {
	durable := h.o.Binding.Durable
	state, reason := StateOK, ""
	switch status := h.o.ConsumerConn.Status(); {
	case status != nats.CONNECTED:
		state, reason = StateDown, "consumer connection "+status.String()
	case !h.infoPolled:
		state, reason = StateUnknown, "not checked yet"
	case h.infoErr != nil:
		state, reason = StateDown, fmt.Sprintf("durable %s: %v", durable, h.infoErr)
	case now.Sub(h.infoAt) > h.stale():
		state, reason = StateDown, fmt.Sprintf("no answer about durable %s for %v", durable, now.Sub(h.infoAt).Round(time.Second))
	case h.o.Binding.Pull:
		// Pulls come and go with the work; a standby waits on its own
		// (the process's own subscription is what a pull durable has).
	case !h.info.PushBound && h.consumer.state == StateUnknown && now.Sub(h.watchStart) < h.stale():
		state, reason = StateUnknown, fmt.Sprintf("waiting for durable %s to show the router's subscription", durable)
	case !h.info.PushBound:
		state, reason = StateDown, fmt.Sprintf("durable %s on stream %s has no bound subscriber", durable, h.o.Binding.Stream)
	}
	h.set(&h.consumer, "consumer", state, reason, now)
}

// observeEmbedded updates the embedded broker's state. h.mu is held.
func (h *Health) observeEmbedded(now time.Time) {
	if h.o.Embedded == nil {
		return
	}
	state, reason := StateOK, ""
	if !h.o.Embedded.Running() {
		state, reason = StateDown, "embedded NATS server is not running with JetStream"
	}
	h.set(&h.embedded, "embedded_nats", state, reason, now)
}

// tracked is a component's state and since when it holds.
type tracked struct {
	state, reason string
	since         time.Time
}

// set records a component's state, logging when it changes (not when only
// the reason does: an error's text may differ on every check).
func (h *Health) set(c *tracked, component, state, reason string, now time.Time) {
	prev := *c
	c.reason = reason
	if prev.state == state {
		return
	}
	c.state, c.since = state, now
	switch {
	case state == StateDown:
		h.logger.Warn(component+" down", "reason", reason, "was", prev.state)
	case prev.state == StateDown:
		h.logger.Info(component+" back", "state", state, "down_for", now.Sub(prev.since).Round(time.Millisecond).String())
	default:
		h.logger.Debug(component+" "+state, "was", prev.state)
	}
}

func (c tracked) status() ComponentStatus {
	return ComponentStatus{State: c.state, Reason: c.reason, Since: c.since.UTC()}
}

// Ready is nil while the router can take events: the last write probe,
// recent enough, passed. Otherwise it says why not. It never waits for a
// check.
func (h *Health) Ready(context.Context) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.observeDatabase(h.o.NowFunc())
	if h.database.state != StateOK {
		return errors.New("database: " + h.database.reason)
	}
	return nil
}

// ComponentStatus is what every component of a Status reports.
type ComponentStatus struct {
	// State is ok, down, or unknown (not checked yet).
	State string `json:"state"`
	// Reason says why the state is not ok; absent when it is.
	Reason string `json:"reason,omitempty"`
	// Since is when the state last changed (at first, the start).
	Since time.Time `json:"since"`
}

// Status is the JSON of GET /status: every component the router depends
// on, its state and why. Field names are stable.
type Status struct {
	// Ready is what /readyz answers: the router can take events (over
	// HTTP, whatever NATS does).
	Ready    bool           `json:"ready"`
	Database DatabaseStatus `json:"database"`
	Consumer ConsumerStatus `json:"consumer"`
	// Stream is the stream's replicas against its cluster; null before
	// the first read.
	Stream *StreamStatus `json:"stream"`
	// EmbeddedNATS is the in-process broker; absent with NATS_URL.
	EmbeddedNATS *EmbeddedNATSStatus `json:"embedded_nats,omitempty"`
	Ingress      IngressStatus       `json:"ingress"`
}

// DatabaseStatus is the database's part of Status.
type DatabaseStatus struct {
	ComponentStatus
	Dialect string `json:"dialect"`
	// Tables are those the write probe covers.
	Tables []string `json:"tables"`
	// CheckedAt is when the last write probe finished; null before one.
	CheckedAt *time.Time `json:"checked_at"`
}

// ConsumerStatus is the JetStream consumer's part of Status.
type ConsumerStatus struct {
	ComponentStatus
	Stream  string `json:"stream"`
	Durable string `json:"durable"`
	// Connection is the consumer connection's state as nats.go names it:
	// CONNECTED, RECONNECTING, CLOSED, …
	Connection string `json:"connection"`
	// Info is the durable as the broker last described it; null before
	// the broker first answered. During an outage it is the last answer,
	// AgeSeconds old.
	Info *DurableInfo `json:"info"`
	// InFlight is how many messages this process holds.
	InFlight int `json:"in_flight"`
	// LastAckAt is when this process last acked a message; null before
	// the first.
	LastAckAt *time.Time `json:"last_ack_at"`
}

// DurableInfo is the broker's account of the durable.
type DurableInfo struct {
	// Bound: some subscriber (this process or a replica) is bound to it.
	Bound bool `json:"bound"`
	// Pending messages are in the stream, not yet delivered to it.
	Pending uint64 `json:"pending"`
	// AckPending messages are delivered and not yet acknowledged.
	AckPending  int       `json:"ack_pending"`
	Redelivered int       `json:"redelivered"`
	At          time.Time `json:"at"`
	AgeSeconds  float64   `json:"age_seconds"`
}

// StreamStatus is the stream's redundancy (broker.Redundancy) as last
// read, every DefaultRedundancyInterval.
type StreamStatus struct {
	Name     string `json:"name"`
	Replicas int    `json:"replicas"`
	// Cluster is the cluster holding the stream; absent when the server is
	// not clustered.
	Cluster string `json:"cluster,omitempty"`
	// JetStreamServers is how many JetStream servers that cluster has (1
	// when not clustered; 0 when they could not be counted).
	JetStreamServers int `json:"jetstream_servers"`
	// Weaker: fewer replicas than the cluster could hold (Reason says
	// what to do).
	Weaker bool `json:"weaker"`
	// Reason is check's line when weaker, or why the servers are unknown.
	Reason string    `json:"reason,omitempty"`
	At     time.Time `json:"at"`
}

// EmbeddedNATSStatus is the in-process broker's part of Status.
type EmbeddedNATSStatus struct {
	ComponentStatus
	URL string `json:"url"`
}

// IngressStatus is the HTTP fallback's part of Status: it takes events
// while the database does.
type IngressStatus struct {
	ComponentStatus
	Addr string `json:"addr"`
}

// Status reports every component as last checked; it never waits for a
// check.
func (h *Health) Status() Status {
	now := h.o.NowFunc()
	h.mu.Lock()
	defer h.mu.Unlock()
	h.observeDatabase(now)
	h.observeConsumer(now)
	h.observeEmbedded(now)

	st := Status{
		Ready:    h.database.state == StateOK,
		Database: DatabaseStatus{ComponentStatus: h.database.status(), Dialect: string(h.o.DB.Dialect), Tables: h.o.DB.WrittenTables()},
		Consumer: h.consumerStatus(now),
		Ingress:  IngressStatus{ComponentStatus: h.database.status(), Addr: h.o.IngressAddr},
	}
	if h.dbPolled {
		at := h.dbAt.UTC()
		st.Database.CheckedAt = &at
	}
	if h.database.state == StateDown {
		st.Ingress.Reason = "database not writable, so POST " + ingress.Path + " answers 503: " + h.database.reason
	}
	if r := h.redundancy; r != nil {
		st.Stream = &StreamStatus{Name: r.Stream, Replicas: r.Replicas, Cluster: r.Cluster, JetStreamServers: r.Servers,
			Weaker: r.Weaker(), At: h.redundancyAt.UTC()}
		if r.Weaker() || r.ServersErr != nil {
			st.Stream.Reason = r.String()
		}
	}
	if h.o.Embedded != nil {
		st.EmbeddedNATS = &EmbeddedNATSStatus{ComponentStatus: h.embedded.status(), URL: h.o.Embedded.ClientURL()}
	}
	return st
}

// Consumer reports the consumer as last checked, for metrics.
func (h *Health) Consumer() ConsumerStatus {
	now := h.o.NowFunc()
	h.mu.Lock()
	defer h.mu.Unlock()
	h.observeConsumer(now)
	return h.consumerStatus(now)
}

// consumerStatus builds the consumer's report. h.mu is held.
func (h *Health) consumerStatus(now time.Time) ConsumerStatus {
	cs := ConsumerStatus{
		ComponentStatus: h.consumer.status(),
		Stream:          h.o.Binding.Stream,
		Durable:         h.o.Binding.Durable,
		Connection:      h.o.ConsumerConn.Status().String(),
	}
	if h.info != nil {
		cs.Info = &DurableInfo{
			Bound:       h.info.PushBound || h.info.NumWaiting > 0,
			Pending:     h.info.NumPending,
			AckPending:  h.info.NumAckPending,
			Redelivered: h.info.NumRedelivered,
			At:          h.infoOKAt.UTC(),
			AgeSeconds:  now.Sub(h.infoOKAt).Seconds(),
		}
	}
	if h.o.Router != nil {
		cs.InFlight = h.o.Router.InFlight()
		if at := h.o.Router.LastAck(); !at.IsZero() {
			at = at.UTC()
			cs.LastAckAt = &at
		}
	}
	return cs
}
