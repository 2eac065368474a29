package admin

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/social/user-events-router/store"
)

// TestConsoleStatsWaitsLittleAndKeeps: a slow counting does not hold the
// page (get returns after its wait, not ready); its result is shown on the
// next get and kept while fresh (one counting for many loads); forget and
// age make it count again; a failure is not kept.
func TestConsoleStatsWaitsLittleAndKeeps(t *testing.T) {
	release := make(chan struct{})
	var calls atomic.Int32
	var fail atomic.Bool
	now := time.Unix(1_800_000_000, 0)
	var clock atomic.Int64
	clock.Store(now.UnixNano())
	c := newConsoleStats(func(ctx context.Context, f store.PoisonFilter) (store.PoisonStats, error) {
		calls.Add(1)
		select {
		case <-release:
		case <-ctx.Done():
			return store.PoisonStats{}, ctx.Err()
		}
		if fail.Load() {
			return store.PoisonStats{}, errors.New("boom")
		}
		return store.PoisonStats{Total: 7}, nil
	}, func() time.Time { return time.Unix(0, clock.Load()) })
	ctx := context.Background()

	if run, ready := c.get(ctx, "k", store.PoisonFilter{}, 10*time.Millisecond); run == nil || ready {
		t.Fatalf("a counting that has not ended: run %v, ready %v; want a run, not ready", run, ready)
	}
	close(release)
	run, ready := c.get(ctx, "k", store.PoisonFilter{}, time.Minute)
	if !ready || run.err != nil || run.stats.Total != 7 {
		t.Fatalf("after it ended: ready %v, %+v, %v", ready, run.stats, run.err)
	}
	for range 5 {
		c.get(ctx, "k", store.PoisonFilter{}, time.Minute)
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("7 loads within freshness counted %d times, want 1", n)
	}
	c.forget()
	c.get(ctx, "k", store.PoisonFilter{}, time.Minute)
	clock.Add(int64(consoleStatsFresh))
	c.get(ctx, "k", store.PoisonFilter{}, time.Minute)
	if n := calls.Load(); n != 3 {
		t.Errorf("after forget and after aging: %d countings, want 3", n)
	}

	fail.Store(true)
	c.forget()
	if run, ready := c.get(ctx, "k", store.PoisonFilter{}, time.Minute); !ready || run.err == nil {
		t.Fatalf("a failing counting: ready %v, err %v", ready, run.err)
	}
	fail.Store(false)
	if run, ready := c.get(ctx, "k", store.PoisonFilter{}, time.Minute); !ready || run.err != nil {
		t.Errorf("the load after a failure counts again: ready %v, err %v", ready, run.err)
	}
}

// TestConsoleStatsBounded: at most consoleStatsKept filters are kept or
// counted at once; when all are still counting, no new counting starts.
func TestConsoleStatsBounded(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	c := newConsoleStats(func(ctx context.Context, f store.PoisonFilter) (store.PoisonStats, error) {
		<-release
		return store.PoisonStats{}, nil
	}, time.Now)
	for i := range consoleStatsKept {
		if run := c.start(string(rune('a'+i)), store.PoisonFilter{}); run == nil {
			t.Fatalf("counting %d of %d refused", i+1, consoleStatsKept)
		}
	}
	if run := c.start("one too many", store.PoisonFilter{}); run != nil {
		t.Errorf("counting %d started while %d are under way", consoleStatsKept+1, consoleStatsKept)
	}
	c.mu.Lock()
	n := len(c.runs)
	c.mu.Unlock()
	if n != consoleStatsKept {
		t.Errorf("%d kept, want %d", n, consoleStatsKept)
	}
}
