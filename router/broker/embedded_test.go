package broker_test

import (
	"errors"
	"io/fs"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/social/user-events-router/router/broker"
	"github.com/social/user-events-router/router/routertest"
)

// TestEmbeddedBannerOnlyAtDebug: the nats-server's start-up banner (its
// notices) is a debug matter; at info the embedded server logs nothing.
func TestEmbeddedBannerOnlyAtDebug(t *testing.T) {
	t.Parallel()
	for _, level := range []slog.Level{slog.LevelInfo, slog.LevelDebug} {
		t.Run(level.String(), func(t *testing.T) {
			t.Parallel()
			var logs routertest.LockedBuffer
			logger := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: level}))
			srv, err := broker.StartEmbedded("127.0.0.1:0", t.TempDir(), logger)
			if err != nil {
				t.Fatal(err)
			}
			srv.Shutdown()
			banner := strings.Contains(logs.String(), "Starting nats-server")
			if level == slog.LevelInfo && logs.String() != "" {
				t.Errorf("at info the embedded server logged:\n%s", logs.String())
			}
			if level == slog.LevelDebug && !banner {
				t.Errorf("at debug the banner is missing:\n%s", logs.String())
			}
		})
	}
}

// TestEmbeddedAddrFile: the server's address is in the file while it runs,
// and the file goes with a clean shutdown.
func TestEmbeddedAddrFile(t *testing.T) {
	t.Parallel()
	srv, err := broker.StartEmbedded("0.0.0.0:0", t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), broker.AddrFileName)
	if err := srv.RecordAddr(path); err != nil {
		srv.Shutdown()
		t.Fatal(err)
	}
	got, err := broker.ReadAddrFile(path)
	if err != nil {
		t.Error(err)
	}
	// Listening on every interface, it is dialled on loopback.
	want := strings.Replace(srv.ClientURL(), "0.0.0.0", "127.0.0.1", 1)
	if got != want || !strings.HasPrefix(got, "nats://127.0.0.1:") {
		t.Errorf("recorded %q, want %q", got, want)
	}
	srv.Shutdown()
	if _, err := broker.ReadAddrFile(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("after shutdown: %v, want the file gone", err)
	}
}
