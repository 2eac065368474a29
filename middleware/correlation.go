package middleware

import (
	"log/slog"
	"strconv"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/social/user-events-router/handlers"
	"github.com/social/user-events-router/schema"
)

// Correlation makes sure every message has a correlation id before anything
// else runs, so every log line, poison entry and command about it carries the
// same id: the event's request_id when it has one, else an id the transport
// supplied (an HTTP X-Request-ID), else one minted from the message's bytes
// (stable across redeliveries). It reads request_id leniently: a body too
// broken to decode still gets an id. It then logs the outcome of the message.
//
// Both candidates come from outside, so they are taken as
// schema.PrintableText of at most schema.MaxRequestIDBytes, exactly as
// DecodeEvent makes UserEvent.RequestID: the id in every log line, poison
// entry, command and response header is printable, bounded, and the same
// whether the body decodes or not.
func Correlation(logger *slog.Logger) message.HandlerMiddleware {
	return func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			_, requestID := schema.Peek(msg.Payload)
			requestID = schema.PrintableText(requestID, schema.MaxRequestIDBytes)
			existing := schema.PrintableText(msg.Metadata.Get(handlers.MetaCorrelationID), schema.MaxRequestIDBytes)
			corr := handlers.ResolveCorrelationID(requestID, existing, msg.Payload)
			msg.Metadata.Set(handlers.MetaCorrelationID, corr)

			ctx, start := msg.Context(), time.Now()
			out, err := h(msg)
			msg.SetContext(ctx)
			level := slog.LevelDebug
			held := handlers.IsHold(err)
			switch {
			case held:
				level = slog.LevelInfo
			case err != nil:
				level = slog.LevelWarn
			case msg.Metadata.Get(MetaPoisonClass) != "":
				level = slog.LevelError
			case msg.Metadata.Get(handlers.MetaDropped) != "":
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
			case msg.Metadata.Get(MetaPoisonClass) != "":
				logger.LogAttrs(msg.Context(), slog.LevelError, "event sent to the poison queue", append(attrs,
					slog.String("error_class", msg.Metadata.Get(MetaPoisonClass)),
					slog.String("reason", msg.Metadata.Get(MetaPoisonReason)))...)
			case msg.Metadata.Get(handlers.MetaDropped) != "":
				// The user's command is written; what of the event could not
				// be used is said once, here.
				logger.LogAttrs(msg.Context(), slog.LevelWarn, "event handled; unusable optional fields dropped", append(attrs,
					slog.String("verdict", msg.Metadata.Get(handlers.MetaVerdict)),
					slog.String("dropped", msg.Metadata.Get(handlers.MetaDropped)))...)
			default:
				logger.LogAttrs(msg.Context(), slog.LevelDebug, "event handled", append(attrs,
					slog.String("verdict", msg.Metadata.Get(handlers.MetaVerdict)))...)
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
		slog.String("correlation_id", msg.Metadata.Get(handlers.MetaCorrelationID)),
		slog.String("message_uuid", msg.UUID),
		slog.String("ingress", msg.Metadata.Get(handlers.MetaIngress)),
	}
	for _, k := range []string{handlers.MetaSubject, handlers.MetaStreamSeq, handlers.MetaDeliveryAttempt, handlers.MetaHandler, handlers.MetaUserID, MetaPoisonID} {
		v := msg.Metadata.Get(k)
		if v == "" {
			continue
		}
		if k == handlers.MetaStreamSeq || k == handlers.MetaDeliveryAttempt {
			if n, err := strconv.ParseUint(v, 10, 64); err == nil {
				attrs = append(attrs, slog.Uint64(k, n))
				continue
			}
		}
		attrs = append(attrs, slog.String(k, v))
	}
	return attrs
}
