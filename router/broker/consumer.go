package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/social/user-events-router/configs"
)

// Binding is what the router needs to know about the durable it consumes.
type Binding struct {
	Stream  string
	Durable string
	// Queue is the consumer's deliver group; "" when it has none.
	Queue string
	// MaxDeliver is the consumer's limit (-1 unlimited): the router poisons
	// a failing message on its last delivery instead of stranding it.
	MaxDeliver int
	AckWait    time.Duration
	// Limits say what bounds the process's memory (see MemoryBound).
	Limits DurableLimits
}

// DeliverSubject is where a consumer created by the router pushes messages.
// It is fixed (not an inbox) so that a least-privilege NATS user can be
// allowed to subscribe to exactly it.
func DeliverSubject(durable string) string { return "router.deliver." + durable }

// ConsumerConfig is the durable the router creates when none exists: a push
// consumer with a deliver group (so replicas share it, and so it has the
// same shape as the one the monolith's old subscriber created), explicit
// acks, and the limits from cfg.
//
// It has no rate limit, though one would keep a backlog of large messages
// from arriving faster than the subscriber hands them back: nats-server
// (2.15) lets a message through its limiter only if the message, with its
// subjects, fits in a burst of the stream's largest message, so a message
// of the largest payload it accepts would stop the durable for good.
func ConsumerConfig(cfg configs.Config) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:        cfg.Durable,
		Description:    "user-events router: profile-sync commands",
		DeliverSubject: DeliverSubject(cfg.Durable),
		DeliverGroup:   cfg.Durable,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        cfg.AckWait,
		MaxDeliver:     cfg.MaxDeliver,
		MaxAckPending:  cfg.MaxAckPending,
		FilterSubject:  cfg.Subject,
	}
}

// EnsureConsumer binds to the durable cfg.Durable as found, or creates it.
// It refuses consumers it cannot use without risking loss: pull consumers
// (the Watermill subscriber pushes), consumers that do not ack explicitly,
// and ack waits shorter than one delivery's in-process retry budget.
func EnsureConsumer(ctx context.Context, js jetstream.JetStream, cfg configs.Config, logger *slog.Logger) (Binding, error) {
	created := false
	c, err := js.PushConsumer(ctx, cfg.Stream, cfg.Durable)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		c, err = js.CreatePushConsumer(ctx, cfg.Stream, ConsumerConfig(cfg))
		if errors.Is(err, jetstream.ErrConsumerExists) {
			c, err = js.PushConsumer(ctx, cfg.Stream, cfg.Durable) // another replica won the race
		} else if err == nil {
			created = true
			logger.Info("created durable consumer", "stream", cfg.Stream, "durable", cfg.Durable,
				"deliver_subject", DeliverSubject(cfg.Durable), "max_deliver", cfg.MaxDeliver, "ack_wait", cfg.AckWait)
		}
	}
	if errors.Is(err, jetstream.ErrNotPushConsumer) {
		return Binding{}, fmt.Errorf("consumer %s on stream %s is a pull consumer; the router consumes push durables (delete it, or set NATS_DURABLE to another name and the router creates one)", cfg.Durable, cfg.Stream)
	}
	if err != nil {
		return Binding{}, fmt.Errorf("consumer %s on stream %s: %w", cfg.Durable, cfg.Stream, err)
	}
	cc := c.CachedInfo().Config
	if cc.AckPolicy != jetstream.AckExplicitPolicy {
		return Binding{}, fmt.Errorf("consumer %s has ack policy %v; the router needs explicit acks, or messages leave the stream before their command is committed", cfg.Durable, cc.AckPolicy)
	}
	if cc.FilterSubject != "" && cc.FilterSubject != cfg.Subject {
		return Binding{}, fmt.Errorf("consumer %s filters %q but NATS_SUBJECT=%q", cfg.Durable, cc.FilterSubject, cfg.Subject)
	}
	if budget := cfg.AttemptBudget(); cc.AckWait <= budget {
		return Binding{}, fmt.Errorf("consumer %s has ack wait %v, not more than the in-process retry budget %v: lower HANDLER_TIMEOUT or RETRY_MAX, or raise the consumer's ack wait", cfg.Durable, cc.AckWait, budget)
	}
	if !created {
		logger.Info("bound existing durable consumer", "stream", cfg.Stream, "durable", cfg.Durable,
			"deliver_group", cc.DeliverGroup, "max_deliver", cc.MaxDeliver, "ack_wait", cc.AckWait)
	}
	maxMsg := js.Conn().MaxPayload()
	if s, err := js.Stream(ctx, cfg.Stream); err == nil {
		maxMsg = MaxMessageBytes(s.CachedInfo().Config, maxMsg)
	}
	b := Binding{
		Stream:     cfg.Stream,
		Durable:    cfg.Durable,
		Queue:      cc.DeliverGroup,
		MaxDeliver: cc.MaxDeliver,
		AckWait:    cc.AckWait,
		Limits:     LimitsOf(cc, maxMsg),
	}
	level := slog.LevelInfo
	if !b.Limits.ByteBounded() {
		level = slog.LevelWarn
	}
	logger.Log(ctx, level, "memory bound", "durable", cfg.Durable, "bound", MemoryBound(cfg, b.Limits))
	return b, nil
}
