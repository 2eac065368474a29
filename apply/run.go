package apply

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
	wmmiddleware "github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/social/user-events-router/schema"
	"github.com/social/user-events-router/store"
)

// DefaultConsumerGroup is the watermill-sql consumer group apply reads the
// commands table as; its offset lives in watermill's offsets table.
const DefaultConsumerGroup = "monolith-apply"

// ackDeadline bounds one command's stay in apply's handler;
// otherDatabaseAckDeadline when the monolith's database is another one.
const (
	ackDeadline              = 5 * time.Second
	otherDatabaseAckDeadline = time.Second
)

// HandlerName names the Watermill handler (logs, metrics).
const HandlerName = "apply_commands"

// Options configure Run.
type Options struct {
	// Commands is the database the router writes commands to.
	Commands *store.DB
	// Target is the monolith's database. When it is Commands, each command's
	// change commits in the transaction that moves the consumer group's
	// offset past it: applied exactly once. Otherwise the change commits
	// first and the offset after it: a crash between the two applies the
	// command again, which changes nothing (Apply is idempotent).
	Target        *store.DB
	ConsumerGroup string
	Logger        *slog.Logger
	// Registerer, if set, receives the applier's metrics.
	Registerer prometheus.Registerer
	// CloseTimeout bounds the wait for the command in hand on shutdown.
	CloseTimeout time.Duration
	// Ready, if set, is called once the subscriber runs.
	Ready func()
}

// Run creates the monolith's tables if absent and applies commands until
// ctx ends; then it finishes the command in hand and returns nil.
func Run(ctx context.Context, o Options) error {
	if o.Commands == nil || o.Target == nil || o.Logger == nil {
		return errors.New("apply: needs the commands database, the target database and a logger")
	}
	if o.ConsumerGroup == "" {
		o.ConsumerGroup = DefaultConsumerGroup
	}
	if o.CloseTimeout <= 0 {
		o.CloseTimeout = 30 * time.Second
	}
	if err := CreateTables(ctx, o.Target.SQL, o.Target.Dialect); err != nil {
		return err
	}
	m := newMetrics(o.Registerer)
	wlog := watermill.NewSlogLoggerWithLevelMapping(o.Logger.With("component", "apply"), map[slog.Level]slog.Level{slog.LevelInfo: slog.LevelDebug})
	// A command takes milliseconds to apply. watermill-sql hands a rejected
	// message back in the same transaction until the ack deadline, so after
	// a database outage (a dead transaction) a short deadline is what gets
	// apply going again: 5 s rather than 30 s.
	config := o.Commands.SubscriberConfig(o.ConsumerGroup)
	deadline := ackDeadline
	if o.Target != o.Commands {
		// The subscriber's transaction holds locks in the commands
		// database while a command is applied elsewhere (MySQL's
		// serializable read locks the table's end, SQLite's write lock
		// the file): with the monolith's database down, the router's own
		// commits would wait behind it. 1 s is far more than a command
		// takes, and far less than a router's attempt.
		deadline = otherDatabaseAckDeadline
	}
	config.AckDeadline = &deadline
	sub, err := wmsql.NewSubscriber(wmsql.BeginnerFromStdSQL(o.Commands.SQL), config, wlog)
	if err != nil {
		return fmt.Errorf("apply: subscriber: %w", err)
	}
	r, err := message.NewRouter(message.RouterConfig{CloseTimeout: o.CloseTimeout}, wlog)
	if err != nil {
		return err
	}
	r.AddMiddleware(wmmiddleware.Recoverer, wmmiddleware.Retry{
		MaxRetries: 5, InitialInterval: 100 * time.Millisecond, MaxInterval: 2 * time.Second, Multiplier: 2, Logger: wlog,
	}.Middleware)
	h := &handler{applier: NewApplier(o.Target.Dialect), target: o.Target, sameDB: o.Target == o.Commands, logger: o.Logger, m: m}
	r.AddConsumerHandler(HandlerName, store.CommandsTopic, sub, h.handle)

	lagCtx, stopLag := context.WithCancel(ctx)
	defer stopLag()
	go m.pollLag(lagCtx, o.Commands, o.ConsumerGroup, o.Logger)

	errc := make(chan error, 1)
	go func() { errc <- r.Run(context.WithoutCancel(ctx)) }()
	select {
	case <-r.Running():
		if o.Ready != nil {
			o.Ready()
		}
	case err := <-errc:
		return fmt.Errorf("apply: %w", err)
	}
	o.Logger.Info("applying commands", "consumer_group", o.ConsumerGroup, "same_database", h.sameDB)
	select {
	case <-ctx.Done():
	case err := <-errc:
		return fmt.Errorf("apply: %w", err)
	}
	if err := r.Close(); err != nil {
		return fmt.Errorf("apply: close: %w", err)
	}
	return <-errc
}

type handler struct {
	applier *Applier
	target  *store.DB
	sameDB  bool
	logger  *slog.Logger
	m       *applyMetrics
}

// handle applies one commands row. A row that is no command is logged and
// passed over: no retry can apply it, and holding it would stop every
// later command.
func (h *handler) handle(msg *message.Message) error {
	ctx := msg.Context()
	c, err := Decode(msg.Payload)
	if err != nil {
		h.m.commands.WithLabelValues("unknown", "undecodable").Inc()
		h.logger.Error("commands row is not a command; passed over", "message_uuid", msg.UUID, "error", err)
		return nil
	}
	var outcome string
	if h.sameDB {
		outcome, err = h.inConsumerTx(ctx, c)
	} else {
		outcome, err = h.inOwnTx(ctx, c)
	}
	if err != nil {
		return err
	}
	h.m.commands.WithLabelValues(string(c.Type), outcome).Inc()
	h.m.lastApplied.SetToCurrentTime()
	if h.logger.Enabled(ctx, slog.LevelDebug) {
		h.logger.Debug("command applied", "command_id", c.CommandID, "type", c.Type, "user_id", c.UserID,
			"generation", c.Generation, "user_sequence", c.UserSequence, "outcome", outcome)
	}
	return nil
}

// inConsumerTx applies c in the transaction that consumes it, behind a
// savepoint, so that a failed attempt leaves the transaction usable for the
// next one (PostgreSQL refuses every statement of a transaction after an
// error).
func (h *handler) inConsumerTx(ctx context.Context, c schema.Command) (string, error) {
	tx, ok := wmsql.TxFromContext(ctx)
	if !ok {
		return "", errors.New("apply: the subscriber's transaction is not in the message context")
	}
	if _, err := tx.ExecContext(ctx, "SAVEPOINT apply_command"); err != nil {
		return "", fmt.Errorf("savepoint: %w", err)
	}
	outcome, err := h.applier.Apply(ctx, tx, c)
	if err != nil {
		_, _ = tx.ExecContext(ctx, "ROLLBACK TO SAVEPOINT apply_command")
		return "", err
	}
	if _, err := tx.ExecContext(ctx, "RELEASE SAVEPOINT apply_command"); err != nil {
		return "", fmt.Errorf("release savepoint: %w", err)
	}
	return outcome, nil
}

func (h *handler) inOwnTx(ctx context.Context, c schema.Command) (string, error) {
	tx, err := h.target.SQL.BeginTx(ctx, nil)
	if err != nil {
		return "", fmt.Errorf("begin: %w", err)
	}
	outcome, err := h.applier.Apply(ctx, wmsql.TxFromStdSQL(tx), c)
	if err != nil {
		_ = tx.Rollback()
		return "", err
	}
	if err := tx.Commit(); err != nil {
		return "", fmt.Errorf("commit: %w", err)
	}
	return outcome, nil
}

// Lag reports how many commands the consumer group has not yet passed.
//
// On PostgreSQL watermill-sql reads the commands in (transaction id,
// offset) order, which is not offset order: two transactions can take
// their offsets in the other order than their ids. So there it counts the
// rows past the group's position, in that order, up to maxLagCount (an
// index range scan of what is left). Elsewhere the group reads in offset
// order, and the lag is the newest command's offset less the group's
// acked offset (rolled-back inserts leave gaps, so it may overstate a
// little).
func Lag(ctx context.Context, db *store.DB, group string) (int64, error) {
	q := db.Bind(`SELECT COALESCE((SELECT MAX(` + offsetColumn(db) + `) FROM watermill_profile_sync_commands), 0)
	- COALESCE((SELECT MAX(offset_acked) FROM watermill_offsets_profile_sync_commands WHERE consumer_group = ?), 0)`)
	if db.Dialect == store.Postgres {
		q = `SELECT COUNT(*) FROM (SELECT 1 FROM watermill_profile_sync_commands
		WHERE ("transaction_id", "offset") > (
			COALESCE((SELECT last_processed_transaction_id FROM watermill_offsets_profile_sync_commands WHERE consumer_group = $1), '0'::xid8),
			COALESCE((SELECT offset_acked FROM watermill_offsets_profile_sync_commands WHERE consumer_group = $1), 0))
		LIMIT ` + strconv.Itoa(maxLagCount) + `) AS pending`
	}
	var n sql.NullInt64
	if err := db.SQL.QueryRowContext(ctx, q, group).Scan(&n); err != nil {
		return 0, fmt.Errorf("apply lag: %w", err)
	}
	return max(n.Int64, 0), nil
}

// maxLagCount bounds the rows Lag counts on PostgreSQL: a lag that large
// reads as that many.
const maxLagCount = 1_000_000

func offsetColumn(db *store.DB) string {
	if db.Dialect == store.MySQL {
		return "`offset`"
	}
	return `"offset"`
}
