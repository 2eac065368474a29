package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	wmsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
)

// ErrPoisonNotFound is returned for a poison id that matches no entry.
var ErrPoisonNotFound = errors.New("no such poison entry")

// ErrPoisonAmbiguous is returned for an id prefix that matches several entries.
var ErrPoisonAmbiguous = errors.New("id prefix matches several poison entries")

// PoisonEntry is one message the router could not handle. It lives in the
// poison table's standard watermill-sql columns: uuid = ID, payload = the
// original bytes, metadata = every other field (as strings), so any
// watermill-sql subscriber can read the queue too.
type PoisonEntry struct {
	// ID keys the entry by content, so repeats of one bad message update it.
	ID            string
	Payload       []byte
	Reason        string
	Class         string
	Subject       string
	Handler       string
	Ingress       string
	CorrelationID string
	Stream        string
	StreamSeq     uint64
	DeliveryCount uint64
	FirstFailure  time.Time
	LastFailure   time.Time
	// Failures counts how often this message was poisoned (or failed replay).
	Failures int
	// Stack is a panic's stack trace.
	Stack string
}

// metadata keys of a poison row.
const (
	pmReason        = "reason"
	pmClass         = "error_class"
	pmSubject       = "subject"
	pmHandler       = "handler"
	pmIngress       = "ingress"
	pmCorrelationID = "correlation_id"
	pmStream        = "stream"
	pmStreamSeq     = "stream_seq"
	pmDeliveryCount = "delivery_count"
	pmFirstFailure  = "first_failure_at"
	pmLastFailure   = "last_failure_at"
	pmFailures      = "failures"
	pmStack         = "stack"
)

func (e PoisonEntry) metadata() message.Metadata {
	md := message.Metadata{
		pmReason:        e.Reason,
		pmClass:         e.Class,
		pmSubject:       e.Subject,
		pmHandler:       e.Handler,
		pmIngress:       e.Ingress,
		pmCorrelationID: e.CorrelationID,
		pmStream:        e.Stream,
		pmFirstFailure:  e.FirstFailure.UTC().Format(time.RFC3339Nano),
		pmLastFailure:   e.LastFailure.UTC().Format(time.RFC3339Nano),
		pmFailures:      strconv.Itoa(e.Failures),
	}
	if e.StreamSeq > 0 {
		md[pmStreamSeq] = strconv.FormatUint(e.StreamSeq, 10)
	}
	if e.DeliveryCount > 0 {
		md[pmDeliveryCount] = strconv.FormatUint(e.DeliveryCount, 10)
	}
	if e.Stack != "" {
		md[pmStack] = e.Stack
	}
	return md
}

func entryFromRow(id string, payload, metadata []byte) (PoisonEntry, error) {
	var md map[string]string
	if len(metadata) > 0 {
		if err := json.Unmarshal(metadata, &md); err != nil {
			return PoisonEntry{}, fmt.Errorf("poison entry %s: metadata is not JSON: %w", id, err)
		}
	}
	e := PoisonEntry{
		ID:            id,
		Payload:       payload,
		Reason:        md[pmReason],
		Class:         md[pmClass],
		Subject:       md[pmSubject],
		Handler:       md[pmHandler],
		Ingress:       md[pmIngress],
		CorrelationID: md[pmCorrelationID],
		Stream:        md[pmStream],
		Stack:         md[pmStack],
	}
	e.StreamSeq, _ = strconv.ParseUint(md[pmStreamSeq], 10, 64)
	e.DeliveryCount, _ = strconv.ParseUint(md[pmDeliveryCount], 10, 64)
	e.FirstFailure, _ = time.Parse(time.RFC3339Nano, md[pmFirstFailure])
	e.LastFailure, _ = time.Parse(time.RFC3339Nano, md[pmLastFailure])
	e.Failures, _ = strconv.Atoi(md[pmFailures])
	return e, nil
}

// poisonTable is the quoted table name of the poison queue.
func (db *DB) poisonTable() string {
	name := messagesTableName(PoisonTopic)
	switch db.Dialect {
	case MySQL:
		return "`" + name + "`"
	default:
		return `"` + name + `"`
	}
}

// bind rewrites ? placeholders for PostgreSQL.
func (db *DB) bind(query string) string {
	if db.Dialect != Postgres {
		return query
	}
	var b strings.Builder
	n := 0
	for _, r := range query {
		if r == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// PutPoison stores e, or, when an entry with e.ID exists, updates it with e's
// reason and delivery facts while keeping its first failure time and
// counting the failure. It commits before returning.
func (db *DB) PutPoison(ctx context.Context, e PoisonEntry) error {
	if e.ID == "" {
		return errors.New("poison entry without id")
	}
	// Two passes: if the entry is deleted between our insert attempt and
	// our update, the second pass inserts it again.
	for attempt := 0; attempt < 2; attempt++ {
		done, err := db.putPoisonOnce(ctx, e)
		if err != nil || done {
			return err
		}
	}
	return fmt.Errorf("poison entry %s: deleted while being updated, twice", e.ID)
}

func (db *DB) putPoisonOnce(ctx context.Context, e PoisonEntry) (bool, error) {
	tx, err := db.SQL.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("poison entry %s: begin: %w", e.ID, err)
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it is a no-op

	// Insert first: a new entry is the common case, and an insert-if-absent
	// takes no gap locks (a SELECT … FOR UPDATE of a missing row does, and
	// deadlocks concurrent writers on MySQL).
	fresh := e
	fresh.Failures = max(e.Failures, 1)
	msg := message.NewMessage(e.ID, e.Payload)
	msg.Metadata = fresh.metadata()
	q, err := db.SchemaAdapter().InsertQuery(wmsql.InsertQueryParams{Topic: PoisonTopic, Msgs: message.Messages{msg}})
	if err != nil {
		return false, err
	}
	res, err := tx.ExecContext(ctx, q.Query, q.Args...)
	if err != nil {
		return false, fmt.Errorf("poison entry %s: insert: %w", e.ID, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		// The entry exists: count this failure, keep its first failure time.
		lock := ""
		if db.Dialect != SQLite { // SQLite transactions are already exclusive (immediate)
			lock = " FOR UPDATE"
		}
		var metadata []byte
		err = tx.QueryRowContext(ctx, db.bind(`SELECT metadata FROM `+db.poisonTable()+` WHERE uuid = ?`+lock), e.ID).Scan(&metadata)
		if errors.Is(err, sql.ErrNoRows) {
			return false, nil // deleted in between: insert again
		}
		if err != nil {
			return false, fmt.Errorf("poison entry %s: look-up: %w", e.ID, err)
		}
		old, err := entryFromRow(e.ID, nil, metadata)
		if err != nil {
			return false, err
		}
		e = mergePoison(old, e)
		md, _ := json.Marshal(e.metadata())
		if _, err := tx.ExecContext(ctx, db.bind(`UPDATE `+db.poisonTable()+` SET metadata = ? WHERE uuid = ?`), string(md), e.ID); err != nil {
			return false, fmt.Errorf("poison entry %s: update: %w", e.ID, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("poison entry %s: commit: %w", e.ID, err)
	}
	return true, nil
}

// mergePoison records a new failure e of an existing entry old: the new
// reason and class win, the first failure time stays, the count goes up,
// and facts the new failure does not know (a replay has no stream position)
// keep their old values, so the original JetStream delivery stays visible.
func mergePoison(old, e PoisonEntry) PoisonEntry {
	if !old.FirstFailure.IsZero() && old.FirstFailure.Before(e.FirstFailure) {
		e.FirstFailure = old.FirstFailure
	}
	e.Failures = old.Failures + 1
	keep := func(now *string, was string) {
		if *now == "" {
			*now = was
		}
	}
	keep(&e.Subject, old.Subject)
	keep(&e.Handler, old.Handler)
	keep(&e.CorrelationID, old.CorrelationID)
	keep(&e.Stream, old.Stream)
	keep(&e.Stack, old.Stack)
	if e.StreamSeq == 0 {
		e.StreamSeq = old.StreamSeq
	}
	if e.DeliveryCount == 0 {
		e.DeliveryCount = old.DeliveryCount
	}
	return e
}

// PoisonFilter narrows ListPoison. Zero fields match everything.
type PoisonFilter struct {
	// Reason matches entries whose reason contains it (case-insensitive).
	Reason  string
	Class   string
	Subject string
	// Since and Until bound the last failure time.
	Since, Until time.Time
	// Limit caps the result (0 = no cap).
	Limit int
}

func (f PoisonFilter) match(e PoisonEntry) bool {
	switch {
	case f.Reason != "" && !strings.Contains(strings.ToLower(e.Reason), strings.ToLower(f.Reason)):
		return false
	case f.Class != "" && e.Class != f.Class:
		return false
	case f.Subject != "" && e.Subject != f.Subject:
		return false
	case !f.Since.IsZero() && e.LastFailure.Before(f.Since):
		return false
	case !f.Until.IsZero() && e.LastFailure.After(f.Until):
		return false
	}
	return true
}

// ListPoison returns the entries matching f, oldest first failure first.
// The poison queue is small by nature (a handful of bad messages), so the
// filter runs here rather than in three SQL dialects of JSON.
func (db *DB) ListPoison(ctx context.Context, f PoisonFilter) ([]PoisonEntry, error) {
	rows, err := db.SQL.QueryContext(ctx, `SELECT uuid, payload, metadata FROM `+db.poisonTable())
	if err != nil {
		return nil, fmt.Errorf("list poison entries: %w", err)
	}
	defer rows.Close()
	var out []PoisonEntry
	for rows.Next() {
		var id string
		var payload, metadata []byte
		if err := rows.Scan(&id, &payload, &metadata); err != nil {
			return nil, fmt.Errorf("list poison entries: %w", err)
		}
		e, err := entryFromRow(id, payload, metadata)
		if err != nil {
			return nil, err
		}
		if f.match(e) {
			out = append(out, e)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list poison entries: %w", err)
	}
	slices.SortFunc(out, func(a, b PoisonEntry) int {
		if c := a.FirstFailure.Compare(b.FirstFailure); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	if f.Limit > 0 && len(out) > f.Limit {
		out = out[:f.Limit]
	}
	return out, nil
}

// GetPoison returns the entry with id, or the only entry whose id starts with
// it (at least 8 characters), so people can type the short form.
func (db *DB) GetPoison(ctx context.Context, id string) (PoisonEntry, error) {
	id = strings.ToLower(strings.TrimSpace(id))
	query := `SELECT uuid, payload, metadata FROM ` + db.poisonTable() + ` WHERE uuid = ?`
	arg := id
	if len(id) < 36 {
		if len(id) < 8 {
			return PoisonEntry{}, fmt.Errorf("%w: %q (give at least 8 characters of the id)", ErrPoisonNotFound, id)
		}
		query = `SELECT uuid, payload, metadata FROM ` + db.poisonTable() + ` WHERE uuid LIKE ?`
		arg = strings.NewReplacer("%", "", "_", "").Replace(id) + "%"
	}
	rows, err := db.SQL.QueryContext(ctx, db.bind(query), arg)
	if err != nil {
		return PoisonEntry{}, fmt.Errorf("poison entry %s: %w", id, err)
	}
	defer rows.Close()
	var found []PoisonEntry
	for rows.Next() {
		var uid string
		var payload, metadata []byte
		if err := rows.Scan(&uid, &payload, &metadata); err != nil {
			return PoisonEntry{}, err
		}
		e, err := entryFromRow(uid, payload, metadata)
		if err != nil {
			return PoisonEntry{}, err
		}
		found = append(found, e)
	}
	if err := rows.Err(); err != nil {
		return PoisonEntry{}, err
	}
	switch len(found) {
	case 0:
		return PoisonEntry{}, fmt.Errorf("%w: %s", ErrPoisonNotFound, id)
	case 1:
		return found[0], nil
	}
	return PoisonEntry{}, fmt.Errorf("%w: %s", ErrPoisonAmbiguous, id)
}

// DeletePoison removes the entry with exactly this id.
func (db *DB) DeletePoison(ctx context.Context, id string) error {
	res, err := db.SQL.ExecContext(ctx, db.bind(`DELETE FROM `+db.poisonTable()+` WHERE uuid = ?`), id)
	if err != nil {
		return fmt.Errorf("delete poison entry %s: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("%w: %s", ErrPoisonNotFound, id)
	}
	return nil
}

// CountPoison is the number of entries in the poison queue.
func (db *DB) CountPoison(ctx context.Context) (int, error) {
	var n int
	if err := db.SQL.QueryRowContext(ctx, `SELECT COUNT(*) FROM `+db.poisonTable()).Scan(&n); err != nil {
		return 0, fmt.Errorf("count poison entries: %w", err)
	}
	return n, nil
}
