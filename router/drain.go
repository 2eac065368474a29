package router

import (
	"context"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
)

// drainingSubscriber makes shutdown graceful. Left alone, closing the
// Watermill router cancels the context of every message in flight (so its
// commit fails) and the watermill-nats subscriber stops waiting for acks
// (so a commit that did finish loses its ack and the message comes back
// after the consumer's ack wait). With this wrapper:
//
//   - messages carry a context that shutdown does not cancel: the handler
//     chain's own per-attempt timeout still bounds them;
//   - Close first stops handing out messages (the router's loop ends; the
//     ones not handed out stay unacked and the broker redelivers them),
//     waits up to timeout until the ones in flight are settled — their
//     acks or NAKs confirmed by the broker (see acker) — and only then
//     closes the subscriber and its connection.
type drainingSubscriber struct {
	inner   message.Subscriber
	acker   *acker
	timeout time.Duration

	once       sync.Once
	draining   chan struct{}
	forwarders sync.WaitGroup
	closed     chan struct{} // closed when Close has closed the inner subscriber

	mu       sync.Mutex
	inflight int
	idle     chan struct{} // closed when inflight drops to 0 while draining
}

func newDrainingSubscriber(inner message.Subscriber, a *acker, timeout time.Duration) *drainingSubscriber {
	return &drainingSubscriber{inner: inner, acker: a, timeout: timeout,
		draining: make(chan struct{}), idle: make(chan struct{}), closed: make(chan struct{})}
}

// Subscribe implements message.Subscriber.
func (d *drainingSubscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	in, err := d.inner.Subscribe(context.WithoutCancel(ctx), topic)
	if err != nil {
		return nil, err
	}
	out := make(chan *message.Message)
	d.forwarders.Add(1)
	go func() {
		defer d.forwarders.Done()
		defer close(out)
		for {
			select {
			case <-d.draining:
				return
			case msg, ok := <-in:
				if !ok {
					return
				}
				d.track(msg)
				select {
				case out <- msg:
				case <-d.draining:
					// Not handed out: leave it unacked for redelivery.
					d.acker.forget(msg)
					d.done()
					return
				}
			}
		}
	}()
	return out, nil
}

func (d *drainingSubscriber) track(msg *message.Message) {
	d.mu.Lock()
	d.inflight++
	d.mu.Unlock()
	go func() {
		select {
		case <-msg.Acked():
			d.acker.settle(msg, true)
		case <-msg.Nacked():
			d.acker.settle(msg, false)
		}
		d.done()
	}()
}

func (d *drainingSubscriber) done() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.inflight--
	if d.inflight == 0 {
		select {
		case <-d.draining:
			d.closeIdle()
		default:
		}
	}
}

// closeIdle closes idle once; d.mu must be held.
func (d *drainingSubscriber) closeIdle() {
	select {
	case <-d.idle:
	default:
		close(d.idle)
	}
}

// InFlight is how many messages are handed out and not yet acked or nacked.
func (d *drainingSubscriber) InFlight() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.inflight
}

// Close implements message.Subscriber.
func (d *drainingSubscriber) Close() error {
	first := false
	d.once.Do(func() {
		first = true
		d.mu.Lock()
		close(d.draining)
		if d.inflight == 0 {
			d.closeIdle()
		}
		d.mu.Unlock()
	})
	if !first {
		<-d.closed
		return nil
	}
	defer close(d.closed)
	// The forwarders exit at once; waiting for them orders their last
	// receive before the inner subscriber closes its channel.
	d.forwarders.Wait()
	select {
	case <-d.idle:
	case <-time.After(d.timeout):
	}
	return d.inner.Close()
}

// waitClosed blocks until Close has finished (acks settled, the inner
// subscriber closed), or timeout passes.
func (d *drainingSubscriber) waitClosed(timeout time.Duration) bool {
	select {
	case <-d.closed:
		return true
	case <-time.After(timeout):
		return false
	}
}
