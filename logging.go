package main

import (
	"io"
	"log/slog"
	"strings"

	"github.com/social/user-events-router/configs"
)

// newLogger builds the process logger from LOG_LEVEL and LOG_FORMAT.
func newLogger(cfg configs.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel)) // validated by configs
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler
	if cfg.LogFormat == "text" {
		h = slog.NewTextHandler(w, opts)
	} else {
		h = slog.NewJSONHandler(w, opts)
	}
	return slog.New(h).With("service", "user-events-router")
}

// loadConfig reads the environment; a bad variable is a usage error (exit 2).
func loadConfig(getenv func(string) string) (configs.Config, error) {
	cfg, err := configs.Load(getenv)
	if err != nil {
		return cfg, usageError{err}
	}
	return cfg, nil
}

// oneLine folds a multi-line error (errors.Join) into one line for stderr.
func oneLine(s string) string {
	return strings.ReplaceAll(s, "\n", "; ")
}
