package router

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/social/user-events-router/configs"
	"github.com/social/user-events-router/router/routertest"
)

// jsFixture is a server with the Auth Service's stream and a durable of
// cfg, and a connection of the test's.
func jsFixture(t *testing.T, cfg configs.Config) (*nats.Conn, Binding) {
	t.Helper()
	srv := routertest.StartServer(t)
	js := routertest.JetStream(t, srv.URL)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if _, err := EnsureStream(ctx, js, cfg.Stream, logger); err != nil {
		t.Fatal(err)
	}
	b, err := EnsureConsumer(ctx, js, cfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	return routertest.Conn(t, srv.URL), b
}

// The adapter's subscription has no pending limits: the client keeps all
// that the broker pushes, however slowly the subscriber takes it.
func TestLegacySubscriptionHasNoPendingLimits(t *testing.T) {
	cfg := configs.Defaults()
	nc, b := jsFixture(t, cfg)
	cc, err := subscribeLegacy(nc, b, cfg.Subject, func(jetstream.Msg) {})
	if err != nil {
		t.Fatal(err)
	}
	msgs, bytes, err := cc.(*legacyConsume).sub.PendingLimits()
	if err != nil {
		t.Fatal(err)
	}
	if msgs != -1 || bytes != -1 {
		t.Errorf("pending limits %d messages, %d bytes; want none (-1, -1)", msgs, bytes)
	}
	cc.Drain()
	select {
	case <-cc.Closed():
	case <-time.After(10 * time.Second):
		t.Fatal("Closed not closed 10s after Drain")
	}
}

// The adapter's messages carry what the subscriber reads of a jetstream
// message: body, subject, headers and the delivery's metadata.
func TestLegacyMessageIsAJetStreamMessage(t *testing.T) {
	cfg := configs.Defaults()
	nc, b := jsFixture(t, cfg)
	got := make(chan jetstream.Msg, 1)
	cc, err := subscribeLegacy(nc, b, cfg.Subject, func(m jetstream.Msg) { got <- m })
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Stop()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	seq := routertest.Publish(t, js, "user.events.created", []byte(`{"id":"u1"}`))
	var m jetstream.Msg
	select {
	case m = <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("no message within 10s")
	}
	md, err := m.Metadata()
	if err != nil {
		t.Fatal(err)
	}
	if string(m.Data()) != `{"id":"u1"}` || m.Subject() != "user.events.created" || !strings.HasPrefix(m.Reply(), "$JS.ACK.") {
		t.Errorf("message %q on %q, reply %q", m.Data(), m.Subject(), m.Reply())
	}
	if md.Sequence.Stream != seq || md.NumDelivered != 1 || md.Stream != cfg.Stream || md.Consumer != cfg.Durable {
		t.Errorf("metadata %+v, want stream sequence %d, first delivery, of %s/%s", md, seq, cfg.Stream, cfg.Durable)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := m.DoubleAck(ctx); err != nil {
		t.Fatalf("double ack: %v", err)
	}
	if err := m.Ack(); err == nil {
		t.Error("a second ack was sent; want it refused")
	}
}
