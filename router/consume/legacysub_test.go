package consume

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
	"github.com/social/user-events-router/router/broker"
	"github.com/social/user-events-router/router/routertest"
)

// The legacy API is used exactly where the client's default pending limits
// could drop what the durable lets the broker push.
func TestPendingLimitsNeeded(t *testing.T) {
	const mib = 1 << 20
	for _, c := range []struct {
		name   string
		limits broker.DurableLimits
		want   string // a part of the reason; "" for none
	}{
		{"the router's durable on small messages", broker.DurableLimits{MaxDeliver: -1, MaxAckPending: 1000, MaxMsgBytes: 64 << 10}, ""},
		{"64 × 1 MiB fits exactly", broker.DurableLimits{MaxDeliver: -1, MaxAckPending: 64, MaxMsgBytes: mib}, ""},
		{"the router's durable on NATS's 1 MiB", broker.DurableLimits{MaxDeliver: -1, MaxAckPending: 1000, MaxMsgBytes: mib}, "1000 × 1 MiB"},
		{"65 × 1 MiB", broker.DurableLimits{MaxDeliver: -1, MaxAckPending: 65, MaxMsgBytes: mib}, "65 × 1 MiB"},
		{"more messages than the client's default", broker.DurableLimits{MaxDeliver: -1, MaxAckPending: nats.DefaultSubPendingMsgsLimit + 1, MaxMsgBytes: 1}, "pending limits"},
		{"unlimited max ack pending", broker.DurableLimits{MaxDeliver: -1, MaxAckPending: -1, MaxMsgBytes: 100}, "unlimited"},
		{"a max deliver, small messages", broker.DurableLimits{MaxDeliver: 3, MaxAckPending: 10, MaxMsgBytes: 100}, "max deliver 3"},
	} {
		got := broker.PendingLimitsNeeded(c.limits)
		switch {
		case c.want == "" && got != "":
			t.Errorf("%s: legacy API needed (%s), want the jetstream package", c.name, got)
		case c.want != "" && !strings.Contains(got, c.want):
			t.Errorf("%s: reason %q, want one mentioning %q", c.name, got, c.want)
		}
	}
}

// jsFixture is a server with the Auth Service's stream and a durable of
// cfg, and a connection of the test's.
func jsFixture(t *testing.T, cfg configs.Config) (*nats.Conn, broker.Binding) {
	t.Helper()
	cfg.Consumer = configs.ConsumerPush // the legacy API's subscriptions are push ones
	srv := routertest.StartServer(t)
	js := routertest.JetStream(t, srv.URL)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if _, err := broker.EnsureStream(ctx, js, cfg.Stream, logger); err != nil {
		t.Fatal(err)
	}
	b, err := broker.EnsureConsumer(ctx, js, cfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	return routertest.Conn(t, srv.URL), b
}

// The adapter's subscription holds what the broker pushes within
// broker.ClientPendingBytes: all of it on a durable with a max deliver (a drop
// would spend a delivery), the byte budget (at least 8 MiB) elsewhere.
func TestLegacySubscriptionPendingLimits(t *testing.T) {
	for _, c := range []struct {
		name       string
		maxDeliver int
		budget     int64
		wantBytes  int
	}{
		{"a max deliver: no bound", 3, 32 << 20, -1},
		{"redelivers without limit: the budget", -1, 32 << 20, 32 << 20},
		{"a small budget: 8 MiB", -1, 1 << 20, 8 << 20},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := configs.Defaults()
			cfg.MaxDeliver = c.maxDeliver
			nc, b := jsFixture(t, cfg)
			cc, err := subscribeLegacy(nc, b, cfg.Subject, func(jetstream.Msg) {}, broker.ClientPendingBytes(b.Limits, c.budget))
			if err != nil {
				t.Fatal(err)
			}
			msgs, bytes, err := cc.(*legacyConsume).sub.PendingLimits()
			if err != nil {
				t.Fatal(err)
			}
			if msgs != -1 || bytes != c.wantBytes {
				t.Errorf("pending limits %d messages, %d bytes; want -1, %d", msgs, bytes, c.wantBytes)
			}
			cc.Drain()
			select {
			case <-cc.Closed():
			case <-time.After(10 * time.Second):
				t.Fatal("Closed not closed 10s after Drain")
			}
		})
	}
}

// The adapter's messages carry what the subscriber reads of a jetstream
// message: body, subject, headers and the delivery's metadata.
func TestLegacyMessageIsAJetStreamMessage(t *testing.T) {
	cfg := configs.Defaults()
	nc, b := jsFixture(t, cfg)
	got := make(chan jetstream.Msg, 1)
	cc, err := subscribeLegacy(nc, b, cfg.Subject, func(m jetstream.Msg) { got <- m }, -1)
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

// On the jetstream package, a durable without a deliver group takes one
// subscriber only, as the legacy API's bind made sure: a second would get
// every message too.
func TestJetStreamConsumeRefusesASecondSubscriberWithoutDeliverGroup(t *testing.T) {
	cfg := configs.Defaults()
	cfg.MaxAckPending = 64 // within the client's default pending limits
	srv := routertest.StartServer(t)
	js := routertest.JetStream(t, srv.URL)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if _, err := broker.EnsureStream(ctx, js, cfg.Stream, logger); err != nil {
		t.Fatal(err)
	}
	cc := broker.ConsumerConfig(cfg)
	cc.DeliverGroup = ""
	if _, err := js.CreatePushConsumer(ctx, cfg.Stream, cc); err != nil {
		t.Fatal(err)
	}
	b, err := broker.EnsureConsumer(ctx, js, cfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	if why := broker.PendingLimitsNeeded(b.Limits); why != "" {
		t.Fatalf("the durable needs the legacy API (%s); the test is for the jetstream package", why)
	}
	subscriber := func() *Subscriber {
		s, err := NewSubscriber(SubscriberOptions{Conn: routertest.Conn(t, srv.URL), Binding: b, MaxInFlight: 10, MaxInFlightBytes: 1 << 20, CloseTimeout: 5 * time.Second, Logger: logger})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	first := subscriber()
	if _, err := first.Subscribe(ctx, cfg.Subject); err != nil {
		t.Fatal(err)
	}
	if first.api != apiJetStream {
		t.Fatalf("subscribed through %s, want %s", first.api, apiJetStream)
	}
	routertest.Eventually(t, 10*time.Second, "the durable bound", func() bool {
		return routertest.ConsumerInfo(t, js, cfg.Stream, cfg.Durable).PushBound
	})
	if _, err := subscriber().Subscribe(ctx, cfg.Subject); err == nil || !strings.Contains(err.Error(), "another subscriber") {
		t.Fatalf("second subscriber: %v, want it refused", err)
	}
}
