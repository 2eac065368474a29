package router_test

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/social/user-events-router/router"
)

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestEmbeddedBannerOnlyAtDebug: the nats-server's start-up banner (its
// notices) is a debug matter; at info the embedded server logs nothing.
func TestEmbeddedBannerOnlyAtDebug(t *testing.T) {
	t.Parallel()
	for _, level := range []slog.Level{slog.LevelInfo, slog.LevelDebug} {
		t.Run(level.String(), func(t *testing.T) {
			t.Parallel()
			var logs lockedBuffer
			logger := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: level}))
			srv, err := router.StartEmbedded("127.0.0.1:0", t.TempDir(), logger)
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
