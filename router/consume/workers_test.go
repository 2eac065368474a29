package consume

import (
	"sync"
	"sync/atomic"
	"testing"
)

func TestWorkersRunEveryTaskOnAtMostMaxGoroutines(t *testing.T) {
	w := newWorkers(4)
	var running, peak, ran atomic.Int64
	var wg sync.WaitGroup
	for range 100 {
		wg.Go(func() {
			w.run(func() {
				n := running.Add(1)
				for {
					p := peak.Load()
					if n <= p || peak.CompareAndSwap(p, n) {
						break
					}
				}
				ran.Add(1)
				running.Add(-1)
			})
		})
	}
	wg.Wait()
	if ran.Load() != 100 {
		t.Fatalf("ran %d tasks, want 100", ran.Load())
	}
	if peak.Load() > 4 || w.count > 4 {
		t.Fatalf("peak %d tasks at once on %d workers, want at most 4", peak.Load(), w.count)
	}
	w.stop()
	done := false
	w.run(func() { done = true }) // after stop: in the caller
	if !done {
		t.Fatal("task after stop did not run")
	}
}

func TestWorkersRaisePanicsInTheCaller(t *testing.T) {
	w := newWorkers(1)
	defer w.stop()
	defer func() {
		if r := recover(); r != "boom" {
			t.Fatalf("recovered %v, want the task's panic", r)
		}
		// The worker survived: it runs the next task.
		ok := false
		w.run(func() { ok = true })
		if !ok {
			t.Fatal("worker dead after a panic")
		}
	}()
	w.run(func() { panic("boom") })
}
