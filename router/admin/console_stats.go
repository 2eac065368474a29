package admin

import (
	"context"
	"sync"
	"time"

	"github.com/social/user-events-router/store"
)

// The list page's counts are a scan of every entry that matches, where
// the page itself is an index walk: at 200,000 entries on MariaDB, counts
// under a filter take seconds. The page therefore waits for them only a
// little (consoleStatsWait), and shows the total from its own page query
// with a note when they are not ready yet; the counting goes on, and the
// next load shows its result. Counts are kept for consoleStatsFresh and
// shown with the time they were taken; the console's own replays and
// deletions drop them.
const (
	consoleStatsWait  = 500 * time.Millisecond
	consoleStatsFresh = 15 * time.Second
	// consoleStatsTimeout bounds one counting: longer, and the database
	// is better asked with `poison stats`.
	consoleStatsTimeout = time.Minute
	// consoleStatsKept bounds how many filters' counts are kept or under
	// way at once.
	consoleStatsKept = 16
)

// statsRun is one counting of one filter's entries.
type statsRun struct {
	done  chan struct{} // closed when stats and err are set
	stats store.PoisonStats
	err   error
	at    time.Time // when the counting ended
}

// consoleStats runs the countings and keeps their results.
type consoleStats struct {
	count func(context.Context, store.PoisonFilter) (store.PoisonStats, error)
	now   func() time.Time
	fresh time.Duration

	mu   sync.Mutex
	runs map[string]*statsRun // by filter text
}

func newConsoleStats(count func(context.Context, store.PoisonFilter) (store.PoisonStats, error), now func() time.Time) *consoleStats {
	return &consoleStats{count: count, now: now, fresh: consoleStatsFresh, runs: map[string]*statsRun{}}
}

// get returns the counts of filter (key is its text), waiting for them
// until wait has passed or ctx ends. ready is false when they are still
// being counted; run is then nil when no counting could be started
// (consoleStatsKept are under way).
func (c *consoleStats) get(ctx context.Context, key string, filter store.PoisonFilter, wait time.Duration) (run *statsRun, ready bool) {
	run = c.start(key, filter)
	if run == nil {
		return nil, false
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case <-run.done:
		return run, true
	case <-timer.C:
	case <-ctx.Done():
	}
	return run, false
}

// start returns the run for key: a fresh or running one, or a new one.
func (c *consoleStats) start(key string, filter store.PoisonFilter) *statsRun {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if run, ok := c.runs[key]; ok {
		select {
		case <-run.done:
			if run.err == nil && now.Sub(run.at) < c.fresh {
				return run
			}
		default:
			return run // still counting
		}
		delete(c.runs, key)
	}
	if len(c.runs) >= consoleStatsKept && !c.evictLocked() {
		return nil
	}
	run := &statsRun{done: make(chan struct{})}
	c.runs[key] = run
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), consoleStatsTimeout)
		defer cancel()
		stats, err := c.count(ctx, filter)
		c.mu.Lock()
		run.stats, run.err, run.at = stats, err, c.now()
		if run.err != nil && c.runs[key] == run {
			delete(c.runs, key) // the next load tries again
		}
		c.mu.Unlock()
		close(run.done)
	}()
	return run
}

// evictLocked drops the oldest finished run; false when all are running.
func (c *consoleStats) evictLocked() bool {
	var oldest string
	var at time.Time
	for key, run := range c.runs {
		select {
		case <-run.done:
			if oldest == "" || run.at.Before(at) {
				oldest, at = key, run.at
			}
		default:
		}
	}
	if oldest == "" {
		return false
	}
	delete(c.runs, oldest)
	return true
}

// forget drops every kept count: the queue has just changed. Countings
// under way finish, but nobody is shown their result.
func (c *consoleStats) forget() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.runs)
}
