// Package routertest gives tests a real, in-process NATS server with
// JetStream and the small helpers every broker test needs, so no test
// depends on a server running on the machine.
package routertest

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/social/user-events-router/router/broker"
)

// Server is an in-process NATS server for one test.
type Server struct {
	*server.Server
	URL  string
	dir  string
	port int
}

// StartServer starts a JetStream-enabled server on a random loopback port
// with its store in a temporary directory; it stops when the test ends.
func StartServer(t testing.TB) *Server {
	t.Helper()
	dir := t.TempDir()
	s := &Server{dir: dir}
	// Restart and Start listen on the same port again: one the kernel
	// does not hand out on its own, so nothing takes it meanwhile.
	port, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	s.start(t, port)
	t.Cleanup(s.Stop)
	return s
}

func (s *Server) start(t testing.TB, port int) {
	t.Helper()
	srv, err := server.NewServer(&server.Options{
		Host:      "127.0.0.1",
		Port:      port,
		JetStream: true,
		StoreDir:  s.dir,
		NoSigs:    true,
		NoLog:     true,
	})
	if err != nil {
		t.Fatalf("nats server: %v", err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready within 10s")
	}
	s.Server = srv
	s.URL = srv.ClientURL()
	s.port = srv.Addr().(*net.TCPAddr).Port
}

// Stop shuts the server down (idempotent).
func (s *Server) Stop() {
	if s.Server != nil && s.Server.Running() {
		s.Server.Shutdown()
		s.Server.WaitForShutdown()
	}
}

// Restart stops the server and starts it again on the same port with the
// same store: what a broker restart looks like to clients.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Stop()
	s.start(t, s.port)
}

// Start starts a stopped server again on its port with its store: the end
// of a broker outage that began with Stop.
func (s *Server) Start(t testing.TB) {
	t.Helper()
	s.start(t, s.port)
}

// Conn connects a plain client, closed when the test ends.
func Conn(t testing.TB, url string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// JetStream returns a JetStream handle on a new connection.
func JetStream(t testing.TB, url string) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(Conn(t, url))
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// Publish stores body on subject the way the Auth Service does: plain JSON,
// no headers, waiting for the stream's ack.
func Publish(t testing.TB, js jetstream.JetStream, subject string, body []byte) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ack, err := js.Publish(ctx, subject, body)
	if err != nil {
		t.Fatalf("publish %s: %v", subject, err)
	}
	return ack.Sequence
}

// StreamMsgs is how many messages the stream holds now.
func StreamMsgs(t testing.TB, js jetstream.JetStream, stream string) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatalf("stream %s: %v", stream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatalf("stream %s info: %v", stream, err)
	}
	return info.State.Msgs
}

// ConsumerInfo fetches the current state of a durable.
func ConsumerInfo(t testing.TB, js jetstream.JetStream, stream, durable string) *jetstream.ConsumerInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	info, err := broker.ReadConsumer(ctx, js, stream, durable)
	if err != nil {
		t.Fatalf("consumer %s: %v", durable, err)
	}
	return info
}

// Eventually polls cond every 20ms until it holds or timeout passes.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
