package handlers

import (
	"context"
	"sync"

	"github.com/ThreeDotsLabs/watermill/message"
)

// MemoryCommitter is a Committer that keeps ledgers in memory and hands the
// messages it decides to a message.Publisher. It is not durable: it is for
// tests and tools that measure or exercise the handlers without a database.
type MemoryCommitter struct {
	publisher message.Publisher
	mu        sync.Mutex
	states    map[string][]byte
}

// NewMemoryCommitter returns a MemoryCommitter publishing to publisher.
func NewMemoryCommitter(publisher message.Publisher) *MemoryCommitter {
	return &MemoryCommitter{publisher: publisher, states: map[string][]byte{}}
}

// CommitState decides under a lock held across the publish, so calls for
// one key are serialised as in the database; a failed publish keeps the old
// state.
func (m *MemoryCommitter) CommitState(_ context.Context, topic, key string, fn func([]byte) ([]byte, []*message.Message, error)) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	next, msgs, err := fn(m.states[key])
	if err != nil {
		return err
	}
	if len(msgs) > 0 {
		if err := m.publisher.Publish(topic, msgs...); err != nil {
			return err
		}
	}
	m.states[key] = next
	return nil
}

// LoadState returns key's state.
func (m *MemoryCommitter) LoadState(_ context.Context, key string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.states[key], nil
}
