package apply

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	wmsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"

	"github.com/social/user-events-router/schema"
	"github.com/social/user-events-router/store"
)

// Execer runs statements: the transaction in which a watermill-sql
// subscriber consumes the command (so that the change and the consumer's
// offset commit together), or a *sql.Tx through wmsql.TxFromStdSQL.
type Execer = wmsql.ContextExecutor

// Outcomes of applying one command.
const (
	Applied = "applied" // the tables changed
	Skipped = "skipped" // a repeat, a stale copy or an older registration: nothing changed
)

// ErrUndecodable marks a commands row that is not a command the applier
// knows; no retry can apply it.
var ErrUndecodable = errors.New("not a profile-sync command")

// Applier applies commands to one database's tables with the Recipe.
type Applier struct {
	dialect store.Dialect
	recipe  map[schema.CommandType][]compiled
}

// NewApplier returns an applier for dialect d.
func NewApplier(d store.Dialect) *Applier {
	a := &Applier{dialect: d, recipe: map[schema.CommandType][]compiled{}}
	for typ, stmts := range Recipe {
		for _, s := range stmts {
			a.recipe[schema.CommandType(typ)] = append(a.recipe[schema.CommandType(typ)], compile(s, d))
		}
	}
	return a
}

// CreateTables creates user_identities and user_profiles if absent.
func CreateTables(ctx context.Context, db *sql.DB, d store.Dialect) error {
	for _, q := range DDL(d) {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("create the monolith's tables: %w", err)
		}
	}
	return nil
}

// Decode reads a commands row's payload.
func Decode(payload []byte) (schema.Command, error) {
	var c schema.Command
	if err := json.Unmarshal(payload, &c); err != nil {
		return c, fmt.Errorf("%w: %v", ErrUndecodable, err)
	}
	if c.UserID == "" || c.OccurredAt.IsZero() {
		return c, fmt.Errorf("%w: no user_id or occurred_at", ErrUndecodable)
	}
	if !slices.Contains(schema.CommandTypes(), c.Type) {
		return c, fmt.Errorf("%w: unknown type %q", ErrUndecodable, c.Type)
	}
	return c, nil
}

// Apply runs c's statements on ex and reports whether anything changed. It
// is idempotent and order-safe (see Recipe); run it in one transaction.
func (a *Applier) Apply(ctx context.Context, ex Execer, c schema.Command) (string, error) {
	stmts, ok := a.recipe[c.Type]
	if !ok {
		return "", fmt.Errorf("%w: unknown type %q", ErrUndecodable, c.Type)
	}
	gen := c.Generation
	if gen < 1 {
		gen = 1 // written before the ledger: its only registration
	}
	var deletedAt any = c.OccurredAt.UTC()
	if a.dialect == store.SQLite {
		// SQLite has no time type: RFC 3339 text, as people read it.
		deletedAt = c.OccurredAt.UTC().Format(time.RFC3339Nano)
	}
	var p schema.ProfileDefaults
	if c.ProfileDefaults != nil {
		p = *c.ProfileDefaults
	}
	params := map[string]any{
		"user_id": c.UserID, "email": c.Email, "username": c.Username, "generation": gen,
		"occurred_at": orderAt(c.OccurredAt), "user_sequence": int64(c.UserSequence), "deleted_at": deletedAt,
		"display_name": p.DisplayName, "avatar": p.Avatar, "bio": p.Bio,
	}
	changed := false
	for _, s := range stmts {
		args := make([]any, len(s.names))
		for i, n := range s.names {
			v, ok := params[n]
			if !ok {
				return "", fmt.Errorf("apply: recipe names an unknown parameter :%s", n)
			}
			args[i] = v
		}
		res, err := ex.ExecContext(ctx, s.query, args...)
		if err != nil {
			return "", fmt.Errorf("apply %s %s of user %s: %w", c.Type, c.CommandID, c.UserID, err)
		}
		if n, err := res.RowsAffected(); err == nil && n > 0 {
			changed = true
		}
	}
	if changed {
		return Applied, nil
	}
	return Skipped, nil
}
