package router

import (
	"context"
	"log/slog"

	"github.com/ThreeDotsLabs/watermill"
)

// watermillLogger adapts slog for Watermill, which logs several trace and
// debug lines for every message. Watermill's own slog adapter converts the
// fields of each call before slog drops it as below the level, which cost
// allocations per message; this one asks slog first.
type watermillLogger struct {
	slog  *slog.Logger
	inner watermill.LoggerAdapter
}

// watermillLevels maps Watermill's levels to the router's: Watermill logs
// every message at info, which is debug for the router.
var watermillLevels = map[slog.Level]slog.Level{slog.LevelInfo: slog.LevelDebug}

func newWatermillLogger(l *slog.Logger) watermill.LoggerAdapter {
	return watermillLogger{slog: l, inner: watermill.NewSlogLoggerWithLevelMapping(l, watermillLevels)}
}

func (w watermillLogger) enabled(level slog.Level) bool {
	if mapped, ok := watermillLevels[level]; ok {
		level = mapped
	}
	return w.slog.Enabled(context.Background(), level)
}

// handlerReturnedError is the line Watermill's router logs for every
// handler error (message/router.go). Every such error has passed
// middleware.Correlation, which logged it already, with the correlation id
// and the message's fields; Watermill's copy has neither.
const handlerReturnedError = "Handler returned error"

func (w watermillLogger) Error(msg string, err error, fields watermill.LogFields) {
	if msg == handlerReturnedError {
		return // logged once, by middleware.Correlation
	}
	w.inner.Error(msg, err, fields) // any other error is wanted
}

func (w watermillLogger) Info(msg string, fields watermill.LogFields) {
	if w.enabled(slog.LevelInfo) {
		w.inner.Info(msg, fields)
	}
}

func (w watermillLogger) Debug(msg string, fields watermill.LogFields) {
	if w.enabled(slog.LevelDebug) {
		w.inner.Debug(msg, fields)
	}
}

func (w watermillLogger) Trace(msg string, fields watermill.LogFields) {
	if w.enabled(watermill.LevelTrace) {
		w.inner.Trace(msg, fields)
	}
}

func (w watermillLogger) With(fields watermill.LogFields) watermill.LoggerAdapter {
	return watermillLogger{slog: w.slog, inner: w.inner.With(fields)}
}
