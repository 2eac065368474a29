package broker_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/social/user-events-router/configs"
	"github.com/social/user-events-router/router/broker"
	"github.com/social/user-events-router/router/routertest"
)

func TestPinnedSupported(t *testing.T) {
	t.Parallel()
	for v, want := range map[string]bool{
		"2.9.25": false, "2.10.22": false, "2.11.0": true, "2.12.0-RC.1": true, "2.15.2": true, "3.0.0": true, "": false, "dev": false,
	} {
		if got := broker.PinnedSupported(v); got != want {
			t.Errorf("PinnedSupported(%q) = %v, want %v", v, got, want)
		}
	}
}

func TestConsumerKind(t *testing.T) {
	t.Parallel()
	cfg := configs.Defaults()
	tests := []struct {
		consumer, version, kind string
		warns, fails            bool
	}{
		{configs.ConsumerPush, "2.15.2", configs.ConsumerPush, false, false},
		{configs.ConsumerPush, "2.9.25", configs.ConsumerPush, false, false},
		{configs.ConsumerAuto, "2.15.2", configs.ConsumerPinned, false, false},
		{configs.ConsumerAuto, "2.9.25", configs.ConsumerPush, true, false},
		{configs.ConsumerPinned, "2.11.0", configs.ConsumerPinned, false, false},
		{configs.ConsumerPinned, "2.10.22", "", false, true},
	}
	for _, tt := range tests {
		cfg.Consumer = tt.consumer
		kind, warning, err := broker.ConsumerKind(cfg, tt.version)
		if kind != tt.kind || (warning != "") != tt.warns || (err != nil) != tt.fails {
			t.Errorf("NATS_CONSUMER=%s on %s: kind %q, warning %q, error %v", tt.consumer, tt.version, kind, warning, err)
		}
		if err != nil && !strings.Contains(err.Error(), tt.version) {
			t.Errorf("the refusal does not name the server's version %s: %v", tt.version, err)
		}
	}
}

// TestPinnedDurableCreated: on a server with priority groups the pinned
// durable is a pull consumer in the group "router" with the pinned-client
// policy and the TTL asked for, and the router binds it as such.
func TestPinnedDurableCreated(t *testing.T) {
	t.Parallel()
	srv := routertest.StartServer(t)
	js := routertest.JetStream(t, srv.URL)
	cfg := configs.Defaults()
	cfg.Consumer, cfg.PinnedTTL = configs.ConsumerPinned, 7*time.Second
	ctx := t.Context()
	logger := slog.New(slog.DiscardHandler)
	if _, err := broker.EnsureStream(ctx, js, cfg.Stream, logger); err != nil {
		t.Fatal(err)
	}
	b, err := broker.EnsureConsumer(ctx, js, cfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	info := routertest.ConsumerInfo(t, js, cfg.Stream, cfg.Durable)
	if info.Config.DeliverSubject != "" || info.Config.PriorityPolicy != jetstream.PriorityPolicyPinned ||
		fmt.Sprint(info.Config.PriorityGroups) != "[router]" || info.Config.PinnedTTL != 7*time.Second {
		t.Errorf("durable created as %+v", info.Config)
	}
	if !b.Pull || !b.Pinned || b.Group != broker.PriorityGroup || b.PinnedTTL != 7*time.Second {
		t.Errorf("bound as %+v", b)
	}
}

// TestPinnedOnAnOlderServer runs against a real nats-server older than
// 2.11 (TEST_NATS_OLD_URL; .ci/run sets it to the machine's server when one
// answers on 4222): NATS_CONSUMER=pinned refuses to start, naming the
// server's version, and auto creates the push durable with a warning. It
// works on a stream and durable of its own, deleted after.
func TestPinnedOnAnOlderServer(t *testing.T) {
	url := os.Getenv("TEST_NATS_OLD_URL")
	if url == "" {
		t.Skip("TEST_NATS_OLD_URL is not set")
	}
	nc, err := nats.Connect(url, nats.Timeout(3*time.Second))
	if err != nil {
		t.Skipf("TEST_NATS_OLD_URL=%s does not answer: %v", url, err)
	}
	defer nc.Close()
	if v := nc.ConnectedServerVersion(); broker.PinnedSupported(v) {
		t.Skipf("nats-server %s at TEST_NATS_OLD_URL has priority groups: not an older server", v)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	suffix := fmt.Sprintf("%d", time.Now().UnixNano())
	cfg := configs.Defaults()
	cfg.Stream, cfg.Subject, cfg.Durable = "ROUTER_TEST_"+suffix, "router.test."+suffix+".*", "router-test-"+suffix
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	sc := broker.AuthServiceStreamConfig(cfg.Stream)
	sc.Subjects = []string{cfg.Subject}
	if _, err := js.CreateStream(ctx, sc); err != nil {
		t.Skipf("cannot create a stream on %s: %v", url, err)
	}
	t.Cleanup(func() { _ = js.DeleteStream(context.Background(), cfg.Stream) })

	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	cfg.Consumer = configs.ConsumerPinned
	_, err = broker.EnsureConsumer(ctx, js, cfg, logger)
	if err == nil || !strings.Contains(err.Error(), nc.ConnectedServerVersion()) || !strings.Contains(err.Error(), "priority groups") {
		t.Errorf("NATS_CONSUMER=pinned on nats-server %s: %v, want a refusal naming the version", nc.ConnectedServerVersion(), err)
	}
	if _, err := broker.ReadConsumer(ctx, js, cfg.Stream, cfg.Durable); err == nil {
		t.Error("the refusal left a durable behind")
	}
	cfg.Consumer = configs.ConsumerAuto
	b, err := broker.EnsureConsumer(ctx, js, cfg, logger)
	if err != nil {
		t.Fatalf("NATS_CONSUMER=auto on nats-server %s: %v", nc.ConnectedServerVersion(), err)
	}
	if b.Pull || b.Queue != cfg.Durable {
		t.Errorf("auto on an older server bound %s, want the push durable with its deliver group", b.Kind())
	}
	if !strings.Contains(logs.String(), "no priority groups") {
		t.Errorf("no warning logged:\n%s", logs.String())
	}
	t.Logf("nats-server %s: pinned refused, auto made a %s", nc.ConnectedServerVersion(), b.Kind())
}
