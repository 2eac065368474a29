package store_test

import (
	"context"
	"sync"

	wmsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
)

// closingSubscriber wraps a watermill-sql subscriber so that Close returns
// only after every channel Subscribe returned is closed.
//
// watermill-sql v4.1.2's Subscriber.Close waits for its consume goroutines,
// but each one closes its output channel just after Close stops waiting for
// it, so for a moment after Close the channel is still open. The universal
// suite checks right after Close that the channel is closed (TestPublishSubscribe)
// and fails now and then on that race, on every backend and with plain
// watermill-sql adapters too. Nothing else changes: messages, acks and
// contexts pass through untouched.
type closingSubscriber struct {
	*wmsql.Subscriber

	closing   chan struct{}
	closeOnce sync.Once
	forwards  sync.WaitGroup
}

func newClosingSubscriber(sub *wmsql.Subscriber) *closingSubscriber {
	return &closingSubscriber{Subscriber: sub, closing: make(chan struct{})}
}

func (s *closingSubscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	in, err := s.Subscriber.Subscribe(ctx, topic)
	if err != nil {
		return nil, err
	}
	out := make(chan *message.Message)
	s.forwards.Add(1)
	go func() {
		defer s.forwards.Done()
		defer close(out)
		for msg := range in {
			select {
			case out <- msg:
			case <-s.closing:
				// The inner subscriber is closing and will not wait for
				// this message's ack; drain until it closes its channel.
			}
		}
	}()
	return out, nil
}

func (s *closingSubscriber) Close() error {
	s.closeOnce.Do(func() { close(s.closing) })
	err := s.Subscriber.Close()
	s.forwards.Wait()
	return err
}
