package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	wmsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
)

// ErrPoisonNotFound is returned for a poison id that matches no entry.
var ErrPoisonNotFound = errors.New("no such poison entry")

// ErrPoisonAmbiguous is returned for an id prefix that matches several entries.
var ErrPoisonAmbiguous = errors.New("id prefix matches several poison entries")

// ErrInvalidPoisonID is returned for text that cannot be a poison id or a
// prefix of one, before any query runs.
var ErrInvalidPoisonID = errors.New("not a poison entry id")

// PoisonEntry is one message the router could not handle. It lives in the
// poison table's standard watermill-sql columns: uuid = ID, payload = the
// original bytes, metadata = every other field (as strings), so any
// watermill-sql subscriber can read the queue too. The poison table also has
// generated columns derived from the metadata for filtering (see
// poisonColumns); they are never written directly.
type PoisonEntry struct {
	// ID keys the entry by content, so repeats of one bad message update it.
	ID string
	// Payload is the original bytes. Lists leave it nil (see ListPoison).
	Payload []byte
	Reason  string
	// ReasonKind is Reason without the values it quotes (see ReasonKind);
	// PutPoison derives it.
	ReasonKind string
	Class      string
	// Subject is the NATS subject; HTTP arrivals have none (see
	// DisplaySubject).
	Subject string
	Handler string
	// Ingress is the way the event first came in (nats, http); a failed
	// replay does not change it.
	Ingress       string
	CorrelationID string
	// UserID and Action are the event's id and action when they could be
	// read (a canonical UUID, a plain lower-case word); PutPoison derives
	// them from the payload when the caller did not set them.
	UserID        string
	Action        string
	Stream        string
	StreamSeq     uint64
	DeliveryCount uint64
	FirstFailure  time.Time
	LastFailure   time.Time
	// Failures counts how often this message was poisoned (or failed replay).
	Failures int
	// Replays counts the replays that failed again, the last at LastReplayAt.
	Replays      int
	LastReplayAt time.Time
	// Stack is a panic's stack trace.
	Stack string
}

// DisplaySubject is the subject to show and to filter by: the NATS subject,
// or for an entry without one (an HTTP arrival) the subject the event would
// have had (user.events.<action>), or "(http)" when its action is unknown.
// The poison table's poison_subject column computes the same in SQL.
func (e PoisonEntry) DisplaySubject() string {
	switch {
	case e.Subject != "":
		return e.Subject
	case e.Action != "":
		return subjectPrefix + e.Action
	}
	return NoSubject
}

// NoSubject is the display subject of an entry that has neither a NATS
// subject nor a readable action.
const NoSubject = "(http)"

// subjectPrefix is what the Auth Service puts before an action.
const subjectPrefix = "user.events."

// metadata keys of a poison row.
const (
	pmReason        = "reason"
	pmReasonKind    = "reason_kind"
	pmClass         = "error_class"
	pmSubject       = "subject"
	pmHandler       = "handler"
	pmIngress       = "ingress"
	pmCorrelationID = "correlation_id"
	pmUserID        = "user_id"
	pmAction        = "action"
	pmStream        = "stream"
	pmStreamSeq     = "stream_seq"
	pmDeliveryCount = "delivery_count"
	pmFirstFailure  = "first_failure_at"
	pmLastFailure   = "last_failure_at"
	pmFailures      = "failures"
	pmReplays       = "replays"
	pmLastReplay    = "last_replay_at"
	pmStack         = "stack"
)

// poisonTimeFormat writes times with a fixed number of fractional digits,
// so the text of two times sorts as the times do: the poison table orders
// and filters by the text of last_failure_at. time.RFC3339Nano reads it.
const poisonTimeFormat = "2006-01-02T15:04:05.000000000Z07:00"

func formatPoisonTime(t time.Time) string { return t.UTC().Format(poisonTimeFormat) }

func (e PoisonEntry) metadata() message.Metadata {
	md := message.Metadata{
		pmReason:        e.Reason,
		pmReasonKind:    e.ReasonKind,
		pmClass:         e.Class,
		pmSubject:       e.Subject,
		pmHandler:       e.Handler,
		pmIngress:       e.Ingress,
		pmCorrelationID: e.CorrelationID,
		pmStream:        e.Stream,
		pmFirstFailure:  formatPoisonTime(e.FirstFailure),
		pmLastFailure:   formatPoisonTime(e.LastFailure),
		pmFailures:      strconv.Itoa(e.Failures),
	}
	optional := func(k, v string) {
		if v != "" {
			md[k] = v
		}
	}
	optional(pmUserID, e.UserID)
	optional(pmAction, e.Action)
	if e.StreamSeq > 0 {
		md[pmStreamSeq] = strconv.FormatUint(e.StreamSeq, 10)
	}
	if e.DeliveryCount > 0 {
		md[pmDeliveryCount] = strconv.FormatUint(e.DeliveryCount, 10)
	}
	if e.Replays > 0 {
		md[pmReplays] = strconv.Itoa(e.Replays)
		md[pmLastReplay] = formatPoisonTime(e.LastReplayAt)
	}
	optional(pmStack, e.Stack)
	for k, v := range md {
		md[k] = escapeNUL(v)
	}
	return md
}

// escapeNUL writes U+0000 as the text \x00. Metadata is JSON, and
// PostgreSQL cannot turn a JSON "\u0000" into text: the poison table's
// generated columns would fail, and the entry with them. Every other
// character is kept (JSON escapes the controls).
func escapeNUL(s string) string {
	return strings.ReplaceAll(s, "\x00", `\x00`)
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
		ReasonKind:    md[pmReasonKind],
		Class:         md[pmClass],
		Subject:       md[pmSubject],
		Handler:       md[pmHandler],
		Ingress:       md[pmIngress],
		CorrelationID: md[pmCorrelationID],
		UserID:        md[pmUserID],
		Action:        md[pmAction],
		Stream:        md[pmStream],
		Stack:         md[pmStack],
	}
	if e.ReasonKind == "" && e.Reason != "" { // written before reason_kind existed
		e.ReasonKind = ReasonKind(e.Reason)
	}
	e.StreamSeq, _ = strconv.ParseUint(md[pmStreamSeq], 10, 64)
	e.DeliveryCount, _ = strconv.ParseUint(md[pmDeliveryCount], 10, 64)
	e.FirstFailure, _ = time.Parse(time.RFC3339Nano, md[pmFirstFailure])
	e.LastFailure, _ = time.Parse(time.RFC3339Nano, md[pmLastFailure])
	e.Failures, _ = strconv.Atoi(md[pmFailures])
	e.Replays, _ = strconv.Atoi(md[pmReplays])
	e.LastReplayAt, _ = time.Parse(time.RFC3339Nano, md[pmLastReplay])
	return e, nil
}

// poisonTable is the quoted table name of the poison queue.
func (db *DB) poisonTable() string { return db.quote(messagesTableName(PoisonTopic)) }

// quote quotes an identifier for db's dialect.
func (db *DB) quote(name string) string {
	if db.Dialect == MySQL {
		return "`" + name + "`"
	}
	return quoteStandard(name)
}

// bind rewrites ? placeholders for PostgreSQL. Queries passed to it must not
// hold a ? anywhere else.
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
// counting the failure (see mergePoison). It derives ReasonKind, and UserID
// and Action when unset. It commits before returning.
func (db *DB) PutPoison(ctx context.Context, e PoisonEntry) error {
	if e.ID == "" {
		return errors.New("poison entry without id")
	}
	e = e.derive()
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

// derive fills in the fields that follow from the others: ReasonKind from
// Reason, and UserID and Action from the payload when the caller did not
// know them.
func (e PoisonEntry) derive() PoisonEntry {
	e.ReasonKind = ReasonKind(e.Reason)
	if e.UserID == "" || e.Action == "" {
		id, action := eventFacts(e.Payload)
		e.UserID = cmpOr(e.UserID, id)
		e.Action = cmpOr(e.Action, action)
	}
	return e
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// eventFacts reads the user id and action of an event body leniently: a body
// that fails validation still names its user, which is what an operator
// searches by. Only values that are safe to index and show are kept: a
// canonical UUID, an action of at most 32 lower-case letters, digits and
// underscores.
func eventFacts(payload []byte) (userID, action string) {
	var probe struct {
		ID     any `json:"id"`
		Action any `json:"action"`
	}
	if json.Unmarshal(payload, &probe) != nil {
		return "", ""
	}
	if s, ok := probe.ID.(string); ok && len(s) == 36 {
		if u, err := uuid.Parse(s); err == nil {
			userID = u.String()
		}
	}
	if s, ok := probe.Action.(string); ok && isActionWord(s) {
		action = s
	}
	return userID, action
}

func isActionWord(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
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

// Message is the watermill message that stores e in the poison table, as
// PutPoison inserts it (for tools that write entries in bulk, such as the
// benchmark), with the derived fields filled in.
func (e PoisonEntry) Message() *message.Message {
	e = e.derive()
	e.Failures = max(e.Failures, 1)
	msg := message.NewMessage(e.ID, e.Payload)
	msg.Metadata = e.metadata()
	return msg
}

// mergePoison records a new failure e of an existing entry old: the new
// reason and class win, the first failure time stays, the count goes up,
// and facts the new failure does not know (a replay has no stream position)
// keep their old values, so the original JetStream delivery stays visible.
// A failed replay (e.Replays > 0) keeps the entry's ingress, the way the
// event first came in, and adds to its count of replays; any other failure
// keeps the replay facts as they were.
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
	if e.Replays > 0 {
		if old.Ingress != "" {
			e.Ingress = old.Ingress
		}
		e.Replays += old.Replays
	} else {
		e.Replays, e.LastReplayAt = old.Replays, old.LastReplayAt
	}
	keep(&e.Subject, old.Subject)
	keep(&e.Handler, old.Handler)
	keep(&e.Ingress, old.Ingress)
	keep(&e.CorrelationID, old.CorrelationID)
	keep(&e.UserID, old.UserID)
	keep(&e.Action, old.Action)
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

// poisonIDTemplate is the shape of a poison id: a canonical, lower-case UUID.
const poisonIDTemplate = "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"

// MinPoisonIDPrefix is the shortest prefix that names an entry.
const MinPoisonIDPrefix = 8

// parsePoisonID checks that s is a poison id (a canonical UUID, any case) or
// a prefix of one of at least MinPoisonIDPrefix characters, and returns it in
// lower case. Nothing else reaches a query, so no character of it can act as
// a wildcard.
func parsePoisonID(s string) (id string, prefix bool, err error) {
	id = strings.ToLower(strings.TrimSpace(s))
	invalid := func(why string) (string, bool, error) {
		return "", false, fmt.Errorf("%w: %s %s; want the id as list shows it (a UUID such as 3d9f6c2b-7a41-4e0d-8c5b-2f6e1a9d4c70), or its first %d or more characters",
			ErrInvalidPoisonID, quoteID(s), why, MinPoisonIDPrefix)
	}
	switch {
	case id == "":
		return invalid("is empty")
	case len(id) > len(poisonIDTemplate):
		return invalid("is longer than an id")
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if poisonIDTemplate[i] == '-' {
			if c != '-' {
				return invalid(fmt.Sprintf("has %s where an id has '-' (character %d)", quoteID(string(c)), i+1))
			}
			continue
		}
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return invalid(fmt.Sprintf("has %s, not a hexadecimal digit (character %d)", quoteID(id[i:i+1]), i+1))
		}
	}
	if len(id) < MinPoisonIDPrefix {
		return invalid(fmt.Sprintf("is %d characters", len(id)))
	}
	return id, len(id) < len(poisonIDTemplate), nil
}

// CheckPoisonID reports, without a query, whether s can name an entry: an
// id or a prefix of one (see ResolvePoisonID). Its error wraps
// ErrInvalidPoisonID and says what an id looks like.
func CheckPoisonID(s string) error {
	_, _, err := parsePoisonID(s)
	return err
}

// quoteID shows an id as typed, cut and Go-quoted so that control
// characters and bidi overrides in it cannot reach a terminal or log raw.
func quoteID(s string) string {
	if len(s) > 64 {
		s = s[:64] + "…"
	}
	return strconv.QuoteToASCII(s)
}

// prefixRange is the range of canonical ids that start with prefix: the
// prefix padded with the lowest and the highest hex digit. All ids share the
// hyphens' positions, so every collation orders them as bytes, and the
// range query uses the uuid index on every backend (LIKE would not, and
// would need its wildcards escaped).
func prefixRange(prefix string) (lo, hi string) {
	rest := poisonIDTemplate[len(prefix):]
	return prefix + strings.ReplaceAll(rest, "x", "0"), prefix + strings.ReplaceAll(rest, "x", "f")
}

// ResolvePoisonID returns the full id of the entry id names: the id itself,
// or the only id that starts with it. Errors: ErrInvalidPoisonID (checked
// before any query), ErrPoisonNotFound, ErrPoisonAmbiguous.
func (db *DB) ResolvePoisonID(ctx context.Context, id string) (string, error) {
	full, prefix, err := parsePoisonID(id)
	if err != nil {
		return "", err
	}
	query, args := `SELECT uuid FROM `+db.poisonTable()+` WHERE uuid = ?`, []any{full}
	if prefix {
		lo, hi := prefixRange(full)
		query, args = `SELECT uuid FROM `+db.poisonTable()+` WHERE uuid >= ? AND uuid <= ? ORDER BY uuid LIMIT 3`, []any{lo, hi}
	}
	rows, err := db.SQL.QueryContext(ctx, db.bind(query), args...)
	if err != nil {
		return "", fmt.Errorf("look up poison entry %s: %w", full, err)
	}
	defer rows.Close()
	var found []string
	for rows.Next() {
		var uid string
		if err := rows.Scan(&uid); err != nil {
			return "", fmt.Errorf("look up poison entry %s: %w", full, err)
		}
		// Belt and braces: a row some other writer put there with an id
		// of another shape may sort into the range.
		if strings.HasPrefix(strings.ToLower(uid), full) {
			found = append(found, uid)
		}
	}
	if err := rows.Err(); err != nil {
		return "", fmt.Errorf("look up poison entry %s: %w", full, err)
	}
	switch len(found) {
	case 0:
		return "", fmt.Errorf("%w: %s", ErrPoisonNotFound, full)
	case 1:
		return found[0], nil
	}
	return "", fmt.Errorf("%w: %s (give more characters)", ErrPoisonAmbiguous, full)
}

// GetPoison returns the entry with id, or the only entry whose id starts with
// it (at least 8 characters), so people can type the short form; the
// errors are ResolvePoisonID's.
func (db *DB) GetPoison(ctx context.Context, id string) (PoisonEntry, error) {
	return db.getPoison(ctx, id, true)
}

// GetPoisonSummary is GetPoison without the payload.
func (db *DB) GetPoisonSummary(ctx context.Context, id string) (PoisonEntry, error) {
	return db.getPoison(ctx, id, false)
}

func (db *DB) getPoison(ctx context.Context, id string, withPayload bool) (PoisonEntry, error) {
	full, err := db.ResolvePoisonID(ctx, id)
	if err != nil {
		return PoisonEntry{}, err
	}
	payload := "NULL"
	if withPayload {
		payload = "payload"
	}
	var payloadBytes, metadata []byte
	err = db.SQL.QueryRowContext(ctx, db.bind(`SELECT `+payload+`, metadata FROM `+db.poisonTable()+` WHERE uuid = ?`), full).
		Scan(&payloadBytes, &metadata)
	if errors.Is(err, sql.ErrNoRows) {
		return PoisonEntry{}, fmt.Errorf("%w: %s", ErrPoisonNotFound, full)
	}
	if err != nil {
		return PoisonEntry{}, fmt.Errorf("poison entry %s: %w", full, err)
	}
	return entryFromRow(full, payloadBytes, metadata)
}

// DeletePoison removes the entry with exactly this id.
func (db *DB) DeletePoison(ctx context.Context, id string) error {
	full, prefix, err := parsePoisonID(id)
	if err != nil {
		return err
	}
	if prefix {
		return fmt.Errorf("%w: %s is a prefix; delete takes the full id (see ResolvePoisonID)", ErrInvalidPoisonID, full)
	}
	res, err := db.SQL.ExecContext(ctx, db.bind(`DELETE FROM `+db.poisonTable()+` WHERE uuid = ?`), full)
	if err != nil {
		return fmt.Errorf("delete poison entry %s: %w", full, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("%w: %s", ErrPoisonNotFound, full)
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
