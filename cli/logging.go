package cli

import (
	"io"
	"log/slog"
	"os"
	"regexp"
	"strings"

	"github.com/mattn/go-isatty"

	"github.com/social/user-events-router/configs"
)

// newLogger builds the process logger from LOG_LEVEL and LOG_FORMAT: JSON by
// default, text when LOG_FORMAT=text or, with LOG_FORMAT unset, when w is a
// terminal. Email addresses are masked in every attribute, and durations
// are Go duration strings in both formats (see replaceAttr).
func newLogger(cfg configs.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel)) // validated by configs
	opts := &slog.HandlerOptions{Level: level, ReplaceAttr: replaceAttr}
	var h slog.Handler
	if cfg.LogFormat == "text" || (cfg.LogFormat == "" && isTerminal(w)) {
		h = slog.NewTextHandler(w, opts)
	} else {
		h = slog.NewJSONHandler(w, opts)
	}
	return slog.New(h).With("service", "user-events-router")
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && (isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd()))
}

// emailPattern finds things shaped like addresses inside any string.
var emailPattern = regexp.MustCompile(`([A-Za-z0-9._%+\-]+)@([A-Za-z0-9.\-]+\.[A-Za-z]{2,})`)

// replaceAttr is the loggers' slog ReplaceAttr.
//
// A duration is written as a Go duration string ("took":"1.064824ms",
// "close_timeout":"30s"): slog's JSON handler would write integer
// nanoseconds while its text handler writes the string, and the string is
// how the variables are set (CLOSE_TIMEOUT=30s), so one form serves both
// formats and reads back as configured.
//
// An address keeps the first character of its local part and its domain:
// a***@example.com. Logs are personal data otherwise.
func replaceAttr(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		return slog.String(a.Key, a.Value.Duration().String())
	}
	if a.Value.Kind() != slog.KindString {
		return a
	}
	s := a.Value.String()
	if !strings.Contains(s, "@") {
		return a
	}
	return slog.String(a.Key, maskEmails(s))
}

// maskEmails masks every address in s.
func maskEmails(s string) string {
	return emailPattern.ReplaceAllStringFunc(s, func(addr string) string {
		at := strings.LastIndexByte(addr, '@')
		return addr[:1] + "***" + addr[at:]
	})
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
