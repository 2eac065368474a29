package e2e

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/social/user-events-router/router/routertest"
)

// freeAddr returns a loopback address with a port free right now.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// waitForConsumer waits until the router has bound (or created) its durable.
func waitForConsumer(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	routertest.Eventually(t, 20*time.Second, "the durable consumer", func() bool {
		_, err := js.PushConsumer(context.Background(), "USER_EVENTS", "social-backend-consumer")
		return err == nil
	})
}

// createMonolithDurable leaves behind the durable the monolith's old
// in-process subscriber created on nc: a push consumer delivering to an
// inbox, with a deliver group. Closing nc (not unsubscribing) keeps it, as a
// crashed monolith would. It returns once the server, asked through js, has
// seen the subscriber go: a message published before that could be pushed
// to the dead subscriber and come back only after the 30s ack wait.
func createMonolithDurable(t *testing.T, nc *nats.Conn, js jetstream.JetStream) {
	t.Helper()
	legacy, err := nc.JetStream()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := legacy.QueueSubscribe("user.events.*", "social-backend-consumer", func(*nats.Msg) {},
		nats.Durable("social-backend-consumer"), nats.ManualAck(), nats.MaxDeliver(3), nats.AckWait(30*time.Second)); err != nil {
		t.Fatal(err)
	}
	nc.Close()
	routertest.Eventually(t, 10*time.Second, "the monolith's subscriber to go", func() bool {
		return !routertest.ConsumerInfo(t, js, "USER_EVENTS", "social-backend-consumer").PushBound
	})
}

// monolithWorld is the broker as the Auth Service and the monolith's old
// subscriber leave it: the stream created with the Auth Service's settings
// (through the legacy JetStream API, as they use it) and the monolith's push
// durable, its subscriber gone.
func monolithWorld(t *testing.T, url string) {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	legacy, err := nc.JetStream()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := legacy.AddStream(&nats.StreamConfig{
		Name: "USER_EVENTS", Subjects: []string{"user.events.*"}, Retention: nats.WorkQueuePolicy,
		Storage: nats.FileStorage, MaxAge: 7 * 24 * time.Hour, Duplicates: 5 * time.Minute, Replicas: 1,
	}); err != nil {
		t.Fatal(err)
	}
	createMonolithDurable(t, nc, routertest.JetStream(t, url))
}
