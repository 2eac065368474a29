package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
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
	// Pull: the durable is a pull consumer. Group is the priority group
	// the router pulls in ("" when the consumer has none) and Pinned says
	// its policy pins one client at a time: then one replica holds the
	// stream's order and the others wait as standbys, and PinnedTTL is how
	// long the pinned one may go without pulling before a standby is.
	Pull      bool
	Group     string
	Pinned    bool
	PinnedTTL time.Duration
}

// Kind names the durable's kind for logs and check.
func (b Binding) Kind() string {
	switch {
	case b.Pinned:
		return "pinned pull consumer (priority group " + b.Group + ")"
	case b.Pull:
		return "pull consumer"
	case b.Queue != "":
		return "push consumer (deliver group " + b.Queue + ")"
	}
	return "push consumer"
}

// PriorityGroup is the priority group of the pinned durable the router
// creates.
const PriorityGroup = "router"

// PinnedSupported reports whether a nats-server of version v (as its INFO
// gives it, e.g. "2.11.4" or "2.12.0-RC.1") has priority groups with the
// pinned-client policy: 2.11 and later. An older server ignores the
// consumer settings it does not know, so a pinned durable asked of it
// would come out a plain pull consumer.
func PinnedSupported(v string) bool {
	var major, minor int
	if _, err := fmt.Sscanf(v, "%d.%d", &major, &minor); err != nil {
		return false
	}
	return major > 2 || major == 2 && minor >= 11
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

// PinnedConsumerConfig is the durable the router creates with
// NATS_CONSUMER=pinned: a pull consumer in the priority group "router"
// with the pinned-client policy, so that of all the replicas pulling only
// one gets messages at a time, in stream order; when it stops pulling for
// cfg.PinnedTTL (it died, or hangs), the server pins another. Acks, limits
// and filter are ConsumerConfig's.
func PinnedConsumerConfig(cfg configs.Config) jetstream.ConsumerConfig {
	c := ConsumerConfig(cfg)
	c.DeliverSubject, c.DeliverGroup = "", ""
	c.PriorityPolicy = jetstream.PriorityPolicyPinned
	c.PriorityGroups = []string{PriorityGroup}
	c.PinnedTTL = cfg.PinnedTTL
	return c
}

// ConsumerKind is the kind of durable serve creates on a server of version
// serverVersion: NATS_CONSUMER, with auto resolved (pinned from 2.11, else
// push, with a warning to log). Pinned on a server that cannot pin is
// refused.
func ConsumerKind(cfg configs.Config, serverVersion string) (kind, warning string, err error) {
	switch {
	case cfg.Consumer == configs.ConsumerPush:
		return configs.ConsumerPush, "", nil
	case PinnedSupported(serverVersion):
		return configs.ConsumerPinned, "", nil
	case cfg.Consumer == configs.ConsumerPinned:
		return "", "", fmt.Errorf("NATS_CONSUMER=pinned: nats-server %s has no priority groups (2.11 and later have): upgrade the server, or set NATS_CONSUMER=push (or auto) and run one replica for per-user order", serverVersion)
	}
	return configs.ConsumerPush, "NATS_CONSUMER=auto: nats-server " + serverVersion + " has no priority groups (2.11 and later have), so the durable is a push consumer and replicas would not keep per-user order: run one replica, or upgrade for a pinned durable with hot standbys", nil
}

// ConfigFor is the durable's configuration for kind (ConsumerKind's).
func ConfigFor(cfg configs.Config, kind string) jetstream.ConsumerConfig {
	if kind == configs.ConsumerPinned {
		return PinnedConsumerConfig(cfg)
	}
	return ConsumerConfig(cfg)
}

// createConsumer creates the durable cfg asks for, or reads the one
// another replica created first.
func createConsumer(ctx context.Context, js jetstream.JetStream, cfg configs.Config, logger *slog.Logger) (*jetstream.ConsumerInfo, bool, error) {
	kind, warning, err := ConsumerKind(cfg, js.Conn().ConnectedServerVersion())
	if err != nil {
		return nil, false, err
	}
	if warning != "" {
		logger.Warn(warning, "durable", cfg.Durable)
	}
	var info *jetstream.ConsumerInfo
	if kind == configs.ConsumerPinned {
		var c jetstream.Consumer
		c, err = js.CreateConsumer(ctx, cfg.Stream, PinnedConsumerConfig(cfg))
		if err == nil {
			info = c.CachedInfo()
			if info.Config.PriorityPolicy != jetstream.PriorityPolicyPinned {
				// The server dropped the settings it does not know (a
				// cluster's leader older than the server we talk to). Not
				// left behind: the next start would find a plain pull
				// durable and run every replica on it.
				if derr := js.DeleteConsumer(ctx, cfg.Stream, cfg.Durable); derr != nil {
					logger.Error("could not delete the durable created without the pinned-client policy: delete it before starting more than one replica", "durable", cfg.Durable, "error", derr)
				}
				return nil, false, fmt.Errorf("consumer %s on stream %s: created without the pinned-client policy (the stream's server is older than 2.11?): delete it, and set NATS_CONSUMER=push or upgrade", cfg.Durable, cfg.Stream)
			}
		}
	} else {
		var c jetstream.PushConsumer
		c, err = js.CreatePushConsumer(ctx, cfg.Stream, ConsumerConfig(cfg))
		if err == nil {
			info = c.CachedInfo()
		}
	}
	if errors.Is(err, jetstream.ErrConsumerExists) {
		info, err = ReadConsumer(ctx, js, cfg.Stream, cfg.Durable) // another replica won the race
		return info, false, err
	}
	if err != nil {
		return nil, false, err
	}
	logger.Info("created durable consumer", "stream", cfg.Stream, "durable", cfg.Durable, "kind", kind,
		"max_deliver", cfg.MaxDeliver, "ack_wait", cfg.AckWait, "pinned_ttl", info.Config.PinnedTTL)
	return info, true, nil
}

// ReadConsumer reads a durable's info, whatever its kind (the jetstream
// package reads it only as one kind: push first, the common case).
func ReadConsumer(ctx context.Context, js jetstream.JetStream, stream, durable string) (*jetstream.ConsumerInfo, error) {
	c, err := js.PushConsumer(ctx, stream, durable)
	if errors.Is(err, jetstream.ErrNotPushConsumer) {
		return pullInfo(ctx, js, stream, durable)
	}
	if err != nil {
		return nil, err
	}
	return c.CachedInfo(), nil
}

func pullInfo(ctx context.Context, js jetstream.JetStream, stream, durable string) (*jetstream.ConsumerInfo, error) {
	c, err := js.Consumer(ctx, stream, durable)
	if err != nil {
		return nil, err
	}
	return c.CachedInfo(), nil
}

// ConsumerInfo reads the durable b is bound to, in one request.
func ConsumerInfo(ctx context.Context, js jetstream.JetStream, b Binding) (*jetstream.ConsumerInfo, error) {
	if b.Pull {
		return pullInfo(ctx, js, b.Stream, b.Durable)
	}
	c, err := js.PushConsumer(ctx, b.Stream, b.Durable)
	if err != nil {
		return nil, err
	}
	return c.CachedInfo(), nil
}

// EnsureConsumer binds to the durable cfg.Durable as found, or creates it
// (a push consumer with a deliver group, or with NATS_CONSUMER=pinned or
// auto on nats-server 2.11+ a pinned pull consumer). It refuses consumers
// it cannot use without risking loss: consumers that do not ack
// explicitly, and ack waits shorter than one delivery's in-process retry
// budget.
func EnsureConsumer(ctx context.Context, js jetstream.JetStream, cfg configs.Config, logger *slog.Logger) (Binding, error) {
	info, err := ReadConsumer(ctx, js, cfg.Stream, cfg.Durable)
	created := false
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		info, created, err = createConsumer(ctx, js, cfg, logger)
	}
	if err != nil {
		return Binding{}, fmt.Errorf("consumer %s on stream %s: %w", cfg.Durable, cfg.Stream, err)
	}
	cc := info.Config
	if cc.AckPolicy != jetstream.AckExplicitPolicy {
		return Binding{}, fmt.Errorf("consumer %s has ack policy %v; the router needs explicit acks, or messages leave the stream before their command is committed", cfg.Durable, cc.AckPolicy)
	}
	if cc.FilterSubject != "" && cc.FilterSubject != cfg.Subject {
		return Binding{}, fmt.Errorf("consumer %s filters %q but NATS_SUBJECT=%q", cfg.Durable, cc.FilterSubject, cfg.Subject)
	}
	if budget := cfg.AttemptBudget(); cc.AckWait <= budget {
		return Binding{}, fmt.Errorf("consumer %s has ack wait %v, not more than the in-process retry budget %v: lower HANDLER_TIMEOUT or RETRY_MAX, or raise the consumer's ack wait", cfg.Durable, cc.AckWait, budget)
	}
	pull := cc.DeliverSubject == ""
	group := ""
	if pull && len(cc.PriorityGroups) > 0 {
		group = cc.PriorityGroups[0]
		if slices.Contains(cc.PriorityGroups, PriorityGroup) {
			group = PriorityGroup
		}
	}
	if pull && cc.PriorityPolicy == jetstream.PriorityPolicyOverflow {
		return Binding{}, fmt.Errorf("consumer %s is a pull consumer with the overflow priority policy, which hands messages to several clients at once; the router pulls alone or pinned (delete it, or set NATS_DURABLE to another name and the router creates one)", cfg.Durable)
	}
	if !created {
		logger.Info("bound existing durable consumer", "stream", cfg.Stream, "durable", cfg.Durable, "pull", pull,
			"deliver_group", cc.DeliverGroup, "priority_group", group, "max_deliver", cc.MaxDeliver, "ack_wait", cc.AckWait)
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
		Pull:       pull,
		Group:      group,
		Pinned:     pull && cc.PriorityPolicy == jetstream.PriorityPolicyPinned,
		PinnedTTL:  cc.PinnedTTL,
	}
	if cfg.Consumer == configs.ConsumerPinned && !b.Pinned {
		logger.Warn("NATS_CONSUMER=pinned, but the durable exists and is not a pinned pull consumer: it is used as found, and replicas do not keep per-user order on it (see README, \"Moving from the push durable\")",
			"durable", cfg.Durable, "kind", b.Kind())
	}
	if pull && !b.Pinned {
		logger.Warn("the durable is a pull consumer without the pinned-client policy: replicas pulling it share one user's events, so per-user order holds within one replica only",
			"durable", cfg.Durable)
	}
	level := slog.LevelInfo
	if !b.Limits.ByteBounded() {
		level = slog.LevelWarn
	}
	logger.Log(ctx, level, "memory bound", "durable", cfg.Durable, "bound", MemoryBound(cfg, b.Limits))
	return b, nil
}
