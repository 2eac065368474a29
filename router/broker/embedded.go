package broker

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/social/user-events-router/configs"
)

// EmbeddedServer is an in-process NATS server with JetStream, for running
// the router with no infrastructure at all.
type EmbeddedServer struct {
	srv *server.Server
	// addrFile is the file RecordAddr wrote, removed by Shutdown.
	addrFile string
}

// EmbeddedServerName is the embedded server's name, which its clients see
// (nats.Conn.ConnectedServerName): check tells by it that the server it
// reached is a router's embedded one.
const EmbeddedServerName = "user-events-router-embedded"

// AddrFileName is the file in DATA_DIR where serve records the embedded
// server's client URL while it runs, so that publish and check in another
// shell with the same DATA_DIR reach that server, whatever NATS_LISTEN says
// there. Shutdown removes it; a file left by a crash names a server that no
// longer answers, and its readers say so.
const AddrFileName = "nats.addr"

// EmbeddedMaxPayload is the largest message the embedded server takes
// (NATS's default).
const EmbeddedMaxPayload = 1 << 20

// EmbeddedConsumerConfig is the durable serve creates on its embedded
// server: NATS_CONSUMER resolved for the nats-server built in (ConsumerKind).
func EmbeddedConsumerConfig(cfg configs.Config) (jetstream.ConsumerConfig, error) {
	kind, _, err := ConsumerKind(cfg, server.VERSION)
	if err != nil {
		return jetstream.ConsumerConfig{}, err
	}
	return ConfigFor(cfg, kind), nil
}

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
		ServerName: EmbeddedServerName,
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

// Shutdown stops the server and waits until it has stopped, then removes
// the file RecordAddr wrote (unless another server has recorded itself
// there since).
func (e *EmbeddedServer) Shutdown() {
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
	if e.addrFile != "" {
		if got, err := ReadAddrFile(e.addrFile); err == nil && got == e.dialURL() {
			_ = os.Remove(e.addrFile)
		}
	}
}

// dialURL is ClientURL with an unspecified host (0.0.0.0, ::) replaced by
// loopback: the address a client on this machine dials.
func (e *EmbeddedServer) dialURL() string {
	u, err := url.Parse(e.ClientURL())
	if err != nil {
		return e.ClientURL()
	}
	if ip := net.ParseIP(u.Hostname()); u.Hostname() == "" || (ip != nil && ip.IsUnspecified()) {
		u.Host = net.JoinHostPort("127.0.0.1", u.Port())
	}
	return u.String()
}

// RecordAddr writes the server's client URL to path (see AddrFileName),
// atomically, so that a reader never sees half of it.
func (e *EmbeddedServer) RecordAddr(path string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("embedded NATS: record address: %w", err)
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed
	if _, err := tmp.WriteString(e.dialURL() + "\n"); err != nil {
		tmp.Close()
		return fmt.Errorf("embedded NATS: record address: %w", err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return fmt.Errorf("embedded NATS: record address: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("embedded NATS: record address: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("embedded NATS: record address: %w", err)
	}
	e.addrFile = path
	return nil
}

// ReadAddrFile returns the URL a running serve recorded in path (see
// AddrFileName); an error wrapping fs.ErrNotExist when there is none.
func ReadAddrFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	u := strings.TrimSpace(string(b))
	if u == "" || strings.ContainsAny(u, " \t\n,") {
		return "", fmt.Errorf("%s: not a NATS URL: %q", path, u)
	}
	return u, nil
}

// natsLogger forwards the server's log lines to slog. Its notices are
// debug lines: at start they are the 25-line banner (version, ports, store
// limits), which the router sums up in one line of its own ("embedded NATS
// server started"); warnings and errors stay what they are.
type natsLogger struct{ l *slog.Logger }

func (n natsLogger) Noticef(format string, v ...any) { n.l.Debug(fmt.Sprintf(format, v...)) }
func (n natsLogger) Warnf(format string, v ...any)   { n.l.Warn(fmt.Sprintf(format, v...)) }
func (n natsLogger) Fatalf(format string, v ...any)  { n.l.Error(fmt.Sprintf(format, v...)) }
func (n natsLogger) Errorf(format string, v ...any)  { n.l.Error(fmt.Sprintf(format, v...)) }
func (n natsLogger) Debugf(format string, v ...any)  { n.l.Debug(fmt.Sprintf(format, v...)) }
func (n natsLogger) Tracef(format string, v ...any)  { n.l.Debug(fmt.Sprintf(format, v...)) }
