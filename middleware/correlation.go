package middleware

import (
	"log/slog"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/social/user-events-router/handlers"
)

// Correlation makes sure every message has a correlation id before anything
// else runs, so every log line, poison entry and command about it carries the
// same id: it admits the message (handlers.Admit, the id's one owner, which
// also decodes the body once for all attempts). It then logs the outcome of
// the message.
func Correlation(logger *slog.Logger) message.HandlerMiddleware {
	return func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			ctx, start := msg.Context(), time.Now()
			handlers.Admit(msg)
			out, err := h(msg)
			msg.SetContext(ctx)
			level := slog.LevelDebug
			held := handlers.IsHold(err)
			switch {
			case held:
				level = slog.LevelInfo
			case err != nil:
				level = slog.LevelWarn
			case handlers.PoisonClass(msg.Metadata) != "":
				level = slog.LevelError
			case handlers.Dropped(msg.Metadata) != "":
				level = slog.LevelWarn
			}
			if !logger.Enabled(ctx, level) {
				return out, err
			}
			attrs := append(LogAttrs(msg), slog.Duration("took", time.Since(start)))
			switch {
			case held:
				logger.LogAttrs(msg.Context(), slog.LevelInfo, "event held back; it will be delivered again", append(attrs, slog.String("reason", err.Error()))...)
			case err != nil:
				logger.LogAttrs(msg.Context(), slog.LevelWarn, "event not handled; it will be delivered again", append(attrs, slog.String("error", err.Error()))...)
			case handlers.PoisonClass(msg.Metadata) != "":
				logger.LogAttrs(msg.Context(), slog.LevelError, "event sent to the poison queue", append(attrs,
					slog.String("error_class", handlers.PoisonClass(msg.Metadata)),
					slog.String("reason", handlers.PoisonReason(msg.Metadata)))...)
			case handlers.Dropped(msg.Metadata) != "":
				// The user's command is written; what of the event could not
				// be used is said once, here.
				logger.LogAttrs(msg.Context(), slog.LevelWarn, "event handled; unusable optional fields dropped", append(attrs,
					slog.String("verdict", handlers.VerdictOf(msg.Metadata)),
					slog.String("dropped", handlers.Dropped(msg.Metadata)))...)
			default:
				logger.LogAttrs(msg.Context(), slog.LevelDebug, "event handled", append(attrs,
					slog.String("verdict", handlers.VerdictOf(msg.Metadata)))...)
			}
			return out, err
		}
	}
}

// LogAttrs are the attributes every log line about msg carries, with the
// same keys and types everywhere (stream_seq and delivery_attempt are
// numbers, as in the poison queue's JSON and the command's source);
// poison_id once the message has (or was about to have) a poison entry.
func LogAttrs(msg *message.Message) []slog.Attr {
	attrs := []slog.Attr{
		slog.String("correlation_id", handlers.CorrelationID(msg.Metadata)),
		slog.String("message_uuid", msg.UUID),
		slog.String("ingress", handlers.Ingress(msg.Metadata)),
	}
	md := msg.Metadata
	attrs = appendText(attrs, handlers.MetaSubject, handlers.Subject(md))
	seq, isSeq := handlers.StreamSeq(md)
	attrs = appendNumber(attrs, handlers.MetaStreamSeq, seq, isSeq, handlers.StreamSeqText(md))
	attempt, isAttempt := handlers.DeliveryAttempt(md)
	attrs = appendNumber(attrs, handlers.MetaDeliveryAttempt, attempt, isAttempt, handlers.DeliveryAttemptText(md))
	attrs = appendText(attrs, handlers.MetaHandler, handlers.HandlerName(md))
	attrs = appendText(attrs, handlers.MetaUserID, handlers.UserID(md))
	attrs = appendText(attrs, handlers.MetaPoisonID, handlers.PoisonID(md))
	return attrs
}

// appendText adds key's value to attrs, if there is one.
func appendText(attrs []slog.Attr, key, v string) []slog.Attr {
	if v == "" {
		return attrs
	}
	return append(attrs, slog.String(key, v))
}

// appendNumber adds key's value to attrs as the number n when it is one
// (isNumber), else as the text it is, if there is one.
func appendNumber(attrs []slog.Attr, key string, n uint64, isNumber bool, text string) []slog.Attr {
	if isNumber {
		return append(attrs, slog.Uint64(key, n))
	}
	return appendText(attrs, key, text)
}
