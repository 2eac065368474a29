package store

import (
	"context"
	"database/sql/driver"
	"fmt"
	"time"

	wmsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// On PostgreSQL a commit runs on one connection's pgx side, in as few round
// trips as its decisions allow. database/sql takes one per statement: BEGIN,
// the lock read, the ledger's insert, its update, the commands' insert and
// COMMIT, five or six for a transaction of one event, and at a steady rate
// a transaction holds one or two. Here BEGIN and the lock read go in one
// pipeline (pgx's Batch), the state functions decide, and the writes and
// COMMIT go in a second one; a table that gets copyMinRows rows or more has
// them copied in between (copy.go).

// The ledger's statements on PostgreSQL take their keys and states as
// arrays, so each is one statement text whatever the number of rows, which
// pgx prepares once.
var (
	pgLockStates = "SELECT user_id, state FROM " + `"` + LedgerTable + `"` +
		" WHERE user_id = ANY($1) ORDER BY user_id FOR UPDATE"
	// pgInsertStates is a plain insert: a concurrent insert of the same
	// key fails this transaction rather than being overwritten.
	pgInsertStates = "INSERT INTO " + `"` + LedgerTable + `"` + " (user_id, state, updated_at)" +
		" SELECT k, s, CURRENT_TIMESTAMP FROM unnest($1::text[], $2::text[]) AS t(k, s)"
	pgUpsertStates = pgInsertStates +
		" ON CONFLICT (user_id) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at"
)

// commitPostgres commits batch in one transaction. With allowCopy, a
// table's rows go in with COPY when there are copyMinRows or more.
func (g *GroupCommitter) commitPostgres(batch []*commitRequest, allowCopy bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), g.opts.Timeout)
	defer cancel()
	conn, err := g.db.SQL.Conn(ctx)
	if err != nil {
		return &beginError{err}
	}
	defer conn.Close()
	return conn.Raw(func(driverConn any) error {
		dc, ok := driverConn.(*stdlib.Conn)
		if !ok {
			return fmt.Errorf("the PostgreSQL commit needs pgx's database/sql driver, the connection is a %T", driverConn)
		}
		err := g.commitPgx(ctx, dc.Conn(), batch, allowCopy)
		if err != nil && dc.Conn().PgConn().TxStatus() != 'I' {
			// Still in a transaction (a ROLLBACK that could not be sent):
			// its locks must not wait in the pool for the next checkout.
			// ErrBadConn makes database/sql close the connection now.
			return fmt.Errorf("%w (the connection was left in a transaction and is closed: %w)", err, driver.ErrBadConn)
		}
		return err
	})
}

// rollbackTimeout bounds the ROLLBACK of a failed commit, which runs even
// when the commit's own deadline has passed.
const rollbackTimeout = 2 * time.Second

// write is one statement of the second pipeline, and what its failure
// means.
type write struct {
	what string
	race bool // a plain insert of new ledger rows: a duplicate key is a race
}

func (g *GroupCommitter) commitPgx(ctx context.Context, conn *pgx.Conn, batch []*commitRequest, allowCopy bool) (err error) {
	keys := keysOf(batch)
	rows := 0
	for _, req := range batch {
		rows += req.size()
	}
	cp := &copyTx{conn: conn, types: &g.copyTypes}

	// 1: BEGIN, the lock read, and the transaction's id when COPY is likely.
	first := &pgx.Batch{}
	first.Queue("BEGIN")
	if len(keys) > 0 {
		first.Queue(pgLockStates, keys)
	}
	wantXID := allowCopy && rows >= copyMinRows
	if wantXID {
		first.Queue("SELECT pg_current_xact_id()")
	}
	br := conn.SendBatch(ctx, first)
	if _, err := br.Exec(); err != nil {
		_ = br.Close()
		return &beginError{err}
	}
	defer func() {
		if err != nil {
			// A failed statement leaves the transaction aborted; end it
			// so that the connection goes back to the pool idle, also when
			// the commit's deadline is what failed it.
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackTimeout)
			_, _ = conn.Exec(rctx, "ROLLBACK")
			cancel()
		}
	}()
	states := map[string][]byte{}
	if len(keys) > 0 {
		rs, err := br.Query()
		if err != nil {
			_ = br.Close()
			return fmt.Errorf("lock %d rows of %s: %w", len(keys), LedgerTable, err)
		}
		for rs.Next() {
			var k, s string
			if err := rs.Scan(&k, &s); err != nil {
				rs.Close()
				_ = br.Close()
				return fmt.Errorf("read %s: %w", LedgerTable, err)
			}
			states[k] = []byte(s)
		}
		if err := rs.Err(); err != nil {
			_ = br.Close()
			return fmt.Errorf("read %s: %w", LedgerTable, err)
		}
	}
	if wantXID {
		if err := br.QueryRow().Scan(&cp.xid); err != nil {
			_ = br.Close()
			return fmt.Errorf("read the transaction id: %w", err)
		}
	}
	if err := br.Close(); err != nil {
		return fmt.Errorf("lock %d rows of %s: %w", len(keys), LedgerTable, err)
	}

	// The state functions decide, on the rows as locked.
	msgsOf, inserted, updated, err := runStates(batch, states)
	if err != nil {
		return err
	}

	// 2: the rows COPY takes, then the other writes and COMMIT. New
	// ledger rows always go in before the commands: a COPY of commands
	// runs before the pipeline, so when there is one, the new ledger rows
	// are copied first whatever their number. Two transactions carrying
	// the same event (the same command id) for a new user then both wait
	// on the user's row first, and the second fails on it as a race,
	// instead of each holding the row the other needs (a deadlock).
	topics, byTopic := byTopicOf(batch, msgsOf)
	copiesMessages := false
	for _, topic := range topics {
		copiesMessages = copiesMessages || allowCopy && len(byTopic[topic]) >= copyMinRows
	}
	second := &pgx.Batch{}
	var writes []write
	if len(inserted) >= copyMinRows || copiesMessages && len(inserted) > 0 {
		if err := cp.copyLedger(ctx, inserted, states); err != nil {
			return err
		}
	} else if len(inserted) > 0 {
		second.Queue(pgInsertStates, inserted, stateTexts(states, inserted))
		writes = append(writes, write{what: fmt.Sprintf("write %d rows of %s", len(inserted), LedgerTable), race: true})
	}
	if len(updated) > 0 {
		second.Queue(pgUpsertStates, updated, stateTexts(states, updated))
		writes = append(writes, write{what: fmt.Sprintf("write %d rows of %s", len(updated), LedgerTable)})
	}
	for _, topic := range topics {
		msgs := byTopic[topic]
		if allowCopy && len(msgs) >= copyMinRows {
			if err := cp.copyMessages(ctx, topic, msgs); err != nil {
				return err
			}
			continue
		}
		q, err := g.adapter.InsertQuery(wmsql.InsertQueryParams{Topic: topic, Msgs: msgs})
		if err != nil {
			return fmt.Errorf("build insert into %s: %w", topic, err)
		}
		second.Queue(q.Query, q.Args...)
		writes = append(writes, write{what: fmt.Sprintf("insert %d messages into %s", len(msgs), topic)})
	}
	second.Queue("COMMIT")
	writes = append(writes, write{what: fmt.Sprintf("commit %d messages", len(batch))})
	br = conn.SendBatch(ctx, second)
	for i, w := range writes {
		tag, err := br.Exec()
		if err == nil && i == len(writes)-1 && tag.String() == "ROLLBACK" {
			// COMMIT of a transaction that had failed: nothing was kept.
			err = fmt.Errorf("the transaction was rolled back")
		}
		if err != nil {
			_ = br.Close()
			race := w.race && isUniqueViolation(err)
			err = fmt.Errorf("%s: %w", w.what, err)
			if race {
				return &ledgerRaceError{err}
			}
			return err
		}
	}
	if err := br.Close(); err != nil {
		return fmt.Errorf("commit %d messages: %w", len(batch), err)
	}
	return nil
}

// stateTexts are the states of keys, in their order, as text.
func stateTexts(states map[string][]byte, keys []string) []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = string(states[k])
	}
	return out
}
