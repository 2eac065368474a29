package consume

import "sync"

// workers runs handler calls on long-lived goroutines. Watermill starts a
// new goroutine for every message; the handler chain (retry, timeout,
// decode, JSON encoding, the SQL insert) is deep, so each of them grew its
// stack by copying — a sixth of the router's CPU while draining a backlog.
// A worker's stack grows once and stays grown; Watermill's goroutine only
// waits. There are at most max workers (the subscriber's MaxInFlight, so a
// message never waits for one); they are started when needed and stopped
// by stop.
type workers struct {
	tasks chan func()
	mu    sync.Mutex // held while handing over a task
	count int
	max   int
	done  bool
}

func newWorkers(max int) *workers {
	return &workers{tasks: make(chan func()), max: max}
}

// run calls f on a worker and returns when it has returned. A panic in f is
// raised again in the caller, as if f had run there. After stop, f runs in
// the caller.
func (w *workers) run(f func()) {
	result := make(chan any, 1)
	task := func() {
		defer func() { result <- recover() }()
		f()
	}
	w.mu.Lock()
	if w.done {
		w.mu.Unlock()
		f()
		return
	}
	select {
	case w.tasks <- task: // an idle worker took it
	default:
		if w.count < w.max {
			w.count++
			go w.loop(task)
		} else {
			w.tasks <- task // all are busy: the first one free takes it
		}
	}
	w.mu.Unlock()
	if p := <-result; p != nil {
		panic(p)
	}
}

func (w *workers) loop(first func()) {
	first()
	for task := range w.tasks {
		task()
	}
}

// stop lets the workers exit once they are idle.
func (w *workers) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.done = true
		close(w.tasks)
	}
}
