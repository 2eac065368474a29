package apply

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/social/user-events-router/store"
)

// lagInterval is how often the lag gauge is refreshed: in the background, so
// that a scrape never waits on the database.
const lagInterval = 5 * time.Second

type applyMetrics struct {
	commands    *prometheus.CounterVec
	lastApplied prometheus.Gauge
	lag         prometheus.Gauge
	lagOK       prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *applyMetrics {
	m := &applyMetrics{
		commands: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "user_events_apply", Name: "commands_total",
			Help: "Commands read by apply, by type and outcome (applied; skipped: a repeat, a stale copy or an older registration; undecodable).",
		}, []string{"type", "outcome"}),
		lastApplied: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "user_events_apply", Name: "last_command_timestamp_seconds",
			Help: "When apply last finished a command.",
		}),
		lag: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "user_events_apply", Name: "lag_commands",
			Help: "Commands written by the router that apply's consumer group has not passed yet.",
		}),
		lagOK: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "user_events_apply", Name: "lag_known",
			Help: "1 when lag_commands was read in the last poll, 0 when the database could not be asked (lag_commands is then stale).",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.commands, m.lastApplied, m.lag, m.lagOK)
	}
	return m
}

func (m *applyMetrics) pollLag(ctx context.Context, db *store.DB, group string, logger *slog.Logger) {
	t := time.NewTicker(lagInterval)
	defer t.Stop()
	failing := false
	for {
		qctx, cancel := context.WithTimeout(ctx, lagInterval)
		n, err := Lag(qctx, db, group)
		cancel()
		switch {
		case err == nil:
			m.lag.Set(float64(n))
			m.lagOK.Set(1)
			failing = false
		case ctx.Err() != nil:
			return
		default:
			m.lagOK.Set(0)
			if !failing {
				logger.Warn("cannot read apply's lag", "error", err)
			}
			failing = true
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
