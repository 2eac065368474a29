package main

import (
	"context"
	"net"
	"testing"
	"time"

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
