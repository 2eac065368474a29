package router_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/social/user-events-router/handlers"
	"github.com/social/user-events-router/middleware"
	"github.com/social/user-events-router/router"
	"github.com/social/user-events-router/store"
	"github.com/social/user-events-router/store/storetest"
)

// discardPublisher stands in for the database so the benchmark measures
// the router's own work per event.
type discardPublisher struct{}

func (discardPublisher) Publish(string, ...*message.Message) error { return nil }
func (discardPublisher) Close() error                              { return nil }

// BenchmarkHandlingChain is the CPU and allocations one event costs in the
// handler chain (correlation and its log line, poison, retry, timeout,
// recoverer, decode, build, encode), without the database and the broker.
func BenchmarkHandlingChain(b *testing.B) {
	db := storetest.Open(b, store.SQLite)
	dispatcher, err := handlers.NewDispatcher(handlers.DefaultRegistry(), handlers.NewMemoryCommitter(discardPublisher{}), store.CommandsTopic)
	if err != nil {
		b.Fatal(err)
	}
	poison, err := middleware.NewPoison(db, -1)
	if err != nil {
		b.Fatal(err)
	}
	chain, err := middleware.Chain(middleware.ChainOptions{
		Logger: slog.New(slog.NewJSONHandler(io.Discard, nil)), Poison: poison, RetryMax: 3,
		RetryInitialInterval: 100 * time.Millisecond, RetryMaxInterval: time.Second, HandlerTimeout: 5 * time.Second,
	})
	if err != nil {
		b.Fatal(err)
	}
	p, err := router.NewPipeline(dispatcher, chain)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		body := fmt.Appendf(nil, `{"id":"78af4bc4-afce-4676-b373-%012d","email":"alice@example.com","username":"alice01","action":"created","request_id":"","timestamp":"2026-11-28T13:28:17Z","service_name":"gofiber-auth"}`, i)
		msg := message.NewMessage(fmt.Sprint(i), body)
		msg.Metadata.Set(handlers.MetaSubject, "user.events.created")
		msg.Metadata.Set(handlers.MetaStreamSeq, "1")
		if o := p.Run(context.Background(), msg); o.Err != nil || o.Poisoned {
			b.Fatalf("outcome %+v", o)
		}
	}
}
