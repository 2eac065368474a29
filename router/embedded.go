package router

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// EmbeddedServer is an in-process NATS server with JetStream, for running
// the router with no infrastructure at all.
type EmbeddedServer struct {
	srv *server.Server
}

// EmbeddedMaxPayload is the largest message the embedded server takes
// (NATS's default).
const EmbeddedMaxPayload = 1 << 20

// StartEmbedded starts a NATS server with JetStream persisted under
// storeDir, listening on listen (host:port; port 0 picks a free one). It
// fails with a clear error when the port is taken, rather than letting the
// server library exit the process.
func StartEmbedded(listen, storeDir string, logger *slog.Logger) (*EmbeddedServer, error) {
	host, portStr, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, fmt.Errorf("embedded NATS: NATS_LISTEN=%q: %w", listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("embedded NATS: NATS_LISTEN=%q: port is not a number", listen)
	}
	if port != 0 {
		// The server library treats a busy port as fatal; probe first.
		l, err := net.Listen("tcp", listen)
		if err != nil {
			return nil, fmt.Errorf("embedded NATS: cannot listen on %s (NATS_LISTEN): %w; another NATS server may be running there: set NATS_URL to use it, or NATS_LISTEN to another port", listen, err)
		}
		_ = l.Close()
	} else {
		port = server.RANDOM_PORT
	}
	opts := &server.Options{
		ServerName: "user-events-router-embedded",
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   storeDir,
		NoSigs:     true,
		MaxPayload: EmbeddedMaxPayload,
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded NATS: %w", err)
	}
	if logger != nil {
		srv.SetLoggerV2(natsLogger{logger.With("component", "nats-server")}, false, false, false)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		return nil, errors.New("embedded NATS: not ready within 10s")
	}
	if !srv.JetStreamEnabled() {
		srv.Shutdown()
		return nil, errors.New("embedded NATS: JetStream did not start (is the store directory writable?)")
	}
	return &EmbeddedServer{srv: srv}, nil
}

// ClientURL is the URL clients use to reach the server.
func (e *EmbeddedServer) ClientURL() string { return e.srv.ClientURL() }

// Running reports whether the server runs with JetStream, as the router
// needs it.
func (e *EmbeddedServer) Running() bool { return e.srv.Running() && e.srv.JetStreamEnabled() }

// Shutdown stops the server and waits until it has stopped.
func (e *EmbeddedServer) Shutdown() {
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
}

// natsLogger forwards the server's log lines to slog.
type natsLogger struct{ l *slog.Logger }

func (n natsLogger) Noticef(format string, v ...any) { n.l.Info(fmt.Sprintf(format, v...)) }
func (n natsLogger) Warnf(format string, v ...any)   { n.l.Warn(fmt.Sprintf(format, v...)) }
func (n natsLogger) Fatalf(format string, v ...any)  { n.l.Error(fmt.Sprintf(format, v...)) }
func (n natsLogger) Errorf(format string, v ...any)  { n.l.Error(fmt.Sprintf(format, v...)) }
func (n natsLogger) Debugf(format string, v ...any)  { n.l.Debug(fmt.Sprintf(format, v...)) }
func (n natsLogger) Tracef(format string, v ...any)  { n.l.Debug(fmt.Sprintf(format, v...)) }
