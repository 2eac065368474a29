package faults

import (
	"context"
	"fmt"
	"regexp"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// authProducer sends events the way the Auth Service does with events on
// (DESIGN §2): each of up to 3 tries (waits of 1 s and 2 s) rebuilds the
// payload with a fresh timestamp, publishes it to NATS with a timeout and,
// if that fails, POSTs it to the HTTP fallback; only a 200 or a stream's
// ack counts. A publish that timed out stays in the NATS client's
// reconnect buffer and may reach the stream later. It runs on its own
// goroutines, so it records instead of failing the test.
type authProducer struct {
	js          jetstream.JetStream
	http        *authClient
	natsTimeout time.Duration

	mu sync.Mutex
	// natsOK and httpOK are the user ids whose event was acked by the
	// stream, or answered 200, on some try; dropped, those whose three
	// tries all failed.
	natsOK, httpOK, dropped []string
	natsFailed              int // tries whose publish failed (timed out, no responders)
	retried                 int // events that needed more than one try
	failures                []string
}

// newAuthProducer publishes through js (the Auth Service's own connection)
// and falls back to the router's ingress at httpAddr. The real timeout is
// 5 s; tests pass less so an outage costs less.
func newAuthProducer(js jetstream.JetStream, httpAddr string, natsTimeout time.Duration) *authProducer {
	return &authProducer{js: js, http: newAuthClient(httpAddr), natsTimeout: natsTimeout}
}

// run sends events with workers sends at once (the Auth Service serves
// sign-ups concurrently) and returns when every event was sent or ctx ends.
func (p *authProducer) run(ctx context.Context, events []event, workers int) {
	next := make(chan event)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for ev := range next {
				p.send(ctx, ev)
			}
		})
	}
	for _, ev := range events {
		select {
		case next <- ev:
		case <-ctx.Done():
		}
	}
	close(next)
	wg.Wait()
	p.http.client.CloseIdleConnections()
}

// authTryWaits are the waits before each try of one sync (DESIGN §2).
var authTryWaits = []time.Duration{0, time.Second, 2 * time.Second}

// send tries one `created` event on the Auth Service's schedule.
func (p *authProducer) send(ctx context.Context, ev event) {
	for try, wait := range authTryWaits {
		if try > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
			if try == 1 {
				p.record(func() { p.retried++ })
			}
		}
		body := restamp(ev.body, time.Now())
		pctx, cancel := context.WithTimeout(ctx, p.natsTimeout)
		_, err := p.js.Publish(pctx, "user.events.created", body)
		cancel()
		if err == nil {
			p.record(func() { p.natsOK = append(p.natsOK, ev.userID) })
			return
		}
		p.record(func() { p.natsFailed++ })
		if ctx.Err() != nil {
			return
		}
		problem := p.http.post(ctx, body)
		if problem == "" {
			p.record(func() { p.httpOK = append(p.httpOK, ev.userID) })
			return
		}
		p.record(func() {
			p.failures = append(p.failures, fmt.Sprintf("%s try %d at %s: nats: %v; http: %s",
				ev.userID, try+1, time.Now().Format("15:04:05.000"), err, problem))
		})
	}
	p.record(func() { p.dropped = append(p.dropped, ev.userID) })
}

func (p *authProducer) record(f func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f()
}

var timestampField = regexp.MustCompile(`"timestamp":"[^"]*"`)

// restamp gives an event body a new timestamp, UTC RFC 3339 at whole
// seconds, as the Auth Service does on every try.
func restamp(body []byte, at time.Time) []byte {
	return timestampField.ReplaceAll(body, fmt.Appendf(nil, `"timestamp":%q`, at.UTC().Format(time.RFC3339)))
}
