package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// ErrInvalidPoisonQuery is wrapped by errors about a filter, page size or
// cursor that cannot be used as given, found before any query runs.
var ErrInvalidPoisonQuery = errors.New("invalid poison query")

// Page sizes of ListPoison: no request can read the whole queue at once.
const (
	DefaultPoisonPageSize = 50
	MaxPoisonPageSize     = 1000
)

// poisonBatchSize is how many entries one statement of a bulk operation
// (EachPoison, DeletePoisonMatching) reads or deletes.
const poisonBatchSize = 1000

// PoisonFilter narrows the poison queue. Zero fields match everything; the
// fields are ANDed. Every field but Reason is served by an index.
type PoisonFilter struct {
	Class string
	// Subject matches DisplaySubject: the NATS subject, the subject an
	// HTTP event would have had, or NoSubject.
	Subject       string
	Ingress       string
	CorrelationID string
	UserID        string
	// ReasonKind matches entries of exactly this kind (see ReasonKind and
	// PoisonStats).
	ReasonKind string
	// Reason matches entries whose reason contains it, in any case (ASCII
	// only on SQLite). It scans the entries the other fields leave.
	Reason string
	// Since and Until bound the last failure time, both inclusive.
	Since, Until time.Time
}

// PoisonOrder is the order of a list, by last failure time.
type PoisonOrder string

// The orders; the zero value is NewestFirst.
const (
	NewestFirst PoisonOrder = "newest"
	OldestFirst PoisonOrder = "oldest"
)

// PoisonPageRequest asks for one page of the poison queue.
type PoisonPageRequest struct {
	Filter PoisonFilter
	// Order is NewestFirst when empty.
	Order PoisonOrder
	// Limit is the page size: 0 means DefaultPoisonPageSize, more than
	// MaxPoisonPageSize is refused.
	Limit int
	// Cursor is the Next of the previous page; empty for the first.
	Cursor string
}

// PoisonPage is one page of entries, without their payloads.
type PoisonPage struct {
	Entries []PoisonEntry
	// Total is the number of entries that match the filter, on every page.
	Total int
	// Next is the cursor of the next page; empty on the last page.
	Next string
}

// poisonQuery builds the WHERE clause of a poison query.
type poisonQuery struct {
	db    *DB
	conds []string
	args  []any
}

func (db *DB) newPoisonQuery(f PoisonFilter) (*poisonQuery, error) {
	if err := f.validate(); err != nil {
		return nil, err
	}
	q := &poisonQuery{db: db}
	for _, eq := range []struct{ column, key, value string }{
		{pcClass, pmClass, f.Class},
		{pcSubject, pmSubject, f.Subject},
		{pcIngress, pmIngress, f.Ingress},
		{pcCorrelationID, pmCorrelationID, f.CorrelationID},
		{pcUserID, pmUserID, f.UserID},
	} {
		if eq.value != "" {
			q.equal(eq.column, eq.key, eq.value)
		}
	}
	if f.ReasonKind != "" {
		// Entries stored before reason kinds have none; their reason is
		// matched by the kind's shape instead (… and N are wildcards).
		kind := db.quote(pcReasonKind)
		q.add("("+kind+" = ? OR ("+kind+" IS NULL AND "+db.quote(pcReason)+" LIKE ? ESCAPE '!'))", f.ReasonKind, reasonKindPattern(f.ReasonKind))
	}
	if f.Reason != "" {
		q.add("LOWER("+db.quote(pcReason)+") LIKE ? ESCAPE '!'", "%"+escapeLike(strings.ToLower(f.Reason))+"%")
	}
	if !f.Since.IsZero() {
		q.add(db.quote(pcLastFailure)+" >= ?", formatPoisonTime(f.Since))
	}
	if !f.Until.IsZero() {
		q.add(db.quote(pcLastFailure)+" <= ?", formatPoisonTime(f.Until))
	}
	return q, nil
}

func (f PoisonFilter) validate() error {
	var errs []error
	for _, v := range []struct{ name, value string }{
		{"class", f.Class}, {"subject", f.Subject}, {"ingress", f.Ingress}, {"correlation id", f.CorrelationID},
		{"user id", f.UserID}, {"reason kind", f.ReasonKind}, {"reason", f.Reason},
	} {
		switch {
		case strings.ContainsRune(v.value, 0):
			errs = append(errs, fmt.Errorf("%w: %s holds NUL, which no entry can", ErrInvalidPoisonQuery, v.name))
		case !utf8.ValidString(v.value):
			errs = append(errs, fmt.Errorf("%w: %s is not valid UTF-8", ErrInvalidPoisonQuery, v.name))
		}
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && f.Until.Before(f.Since) {
		errs = append(errs, fmt.Errorf("%w: until (%s) is before since (%s)", ErrInvalidPoisonQuery,
			f.Until.UTC().Format(time.RFC3339), f.Since.UTC().Format(time.RFC3339)))
	}
	return errors.Join(errs...)
}

func (q *poisonQuery) add(cond string, args ...any) {
	q.conds = append(q.conds, cond)
	q.args = append(q.args, args...)
}

// equal matches a generated column. Its index holds the first
// maxIndexedChars characters; a longer value is matched by that prefix
// (through the index) and then in full.
func (q *poisonQuery) equal(column, key, value string) {
	if utf8.RuneCountInString(value) <= maxIndexedChars {
		q.add(q.db.quote(column)+" = ?", value)
		return
	}
	q.add(q.db.quote(column)+" = ? AND "+q.db.metadataField(key)+" = ?", string([]rune(value)[:maxIndexedChars]), value)
}

// where is the WHERE clause with extra conditions (and their args).
func (q *poisonQuery) where(extra ...string) string {
	conds := append(slices.Clone(q.conds), extra...)
	if len(conds) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(conds, " AND ")
}

func (q *poisonQuery) with(args ...any) []any { return append(slices.Clone(q.args), args...) }

// reasonKindPattern is a LIKE pattern for the reasons of a kind: what
// ReasonKind replaced ("…" for a value, a word "N" for a number) and the
// prefixes it dropped match anything.
func reasonKindPattern(kind string) string {
	var b strings.Builder
	b.WriteString("%")
	runes := []rune(kind)
	word := func(i int) bool {
		return i >= 0 && i < len(runes) && (unicode.IsLetter(runes[i]) || unicode.IsDigit(runes[i]))
	}
	for i, r := range runes {
		switch {
		case r == '…', r == 'N' && !word(i-1) && !word(i+1):
			b.WriteString("%")
		default:
			b.WriteString(escapeLike(string(r)))
		}
	}
	return b.String()
}

// escapeLike escapes LIKE's wildcards with '!', the ESCAPE character the
// queries name (a backslash means different things to MySQL and the others).
func escapeLike(s string) string {
	return strings.NewReplacer("!", "!!", "%", "!%", "_", "!_").Replace(s)
}

// poisonCursor is a position in a list: the last entry's sort key.
type poisonCursor struct {
	order       PoisonOrder
	lastFailure string
	offset      int64
}

// The cursor's text is opaque to callers: base64url of "order:offset:time".
func (c poisonCursor) String() string {
	return base64.RawURLEncoding.EncodeToString([]byte(string(c.order) + ":" + strconv.FormatInt(c.offset, 10) + ":" + c.lastFailure))
}

func parseCursor(s string, order PoisonOrder) (poisonCursor, error) {
	bad := func(why string) (poisonCursor, error) {
		return poisonCursor{}, fmt.Errorf("%w: cursor %s %s; pass the next_cursor of the page before, unchanged", ErrInvalidPoisonQuery, quoteID(s), why)
	}
	if len(s) > 200 {
		return bad("is too long")
	}
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return bad("is not one of ours")
	}
	parts := strings.SplitN(string(raw), ":", 3)
	if len(parts) != 3 {
		return bad("is not one of ours")
	}
	c := poisonCursor{order: PoisonOrder(parts[0]), lastFailure: parts[2]}
	if c.offset, err = strconv.ParseInt(parts[1], 10, 64); err != nil || !utf8.ValidString(c.lastFailure) || strings.ContainsRune(c.lastFailure, 0) {
		return bad("is not one of ours")
	}
	if c.order != order {
		return bad(fmt.Sprintf("belongs to order %s, not %s", c.order, order))
	}
	return c, nil
}

func (r PoisonPageRequest) normalize() (PoisonPageRequest, error) {
	if r.Order == "" {
		r.Order = NewestFirst
	}
	if r.Order != NewestFirst && r.Order != OldestFirst {
		return r, fmt.Errorf("%w: order %q (want %s or %s)", ErrInvalidPoisonQuery, r.Order, NewestFirst, OldestFirst)
	}
	switch {
	case r.Limit == 0:
		r.Limit = DefaultPoisonPageSize
	case r.Limit < 0 || r.Limit > MaxPoisonPageSize:
		return r, fmt.Errorf("%w: page size %d (want 1 to %d)", ErrInvalidPoisonQuery, r.Limit, MaxPoisonPageSize)
	}
	return r, nil
}

// summaryColumns are what a list reads of a row: never the payload.
func (db *DB) summaryColumns() string {
	return db.quote("offset") + ", uuid, metadata, " + db.quote(pcLastFailure)
}

// ListPoison returns one page of the entries matching r.Filter, in r.Order
// of last failure (ties by storage order), without payloads, and how many
// match in all. Paging is by keyset (the cursor holds the last entry's last
// failure time and offset), so every page costs the same however deep, and
// an entry that stays put is neither repeated nor skipped between pages. An
// entry that fails again while someone pages moves to the front.
func (db *DB) ListPoison(ctx context.Context, r PoisonPageRequest) (PoisonPage, error) {
	r, err := r.normalize()
	if err != nil {
		return PoisonPage{}, err
	}
	q, err := db.newPoisonQuery(r.Filter)
	if err != nil {
		return PoisonPage{}, err
	}
	lf, off := db.quote(pcLastFailure), db.quote("offset")
	cmp, dir := "<", "DESC"
	if r.Order == OldestFirst {
		cmp, dir = ">", "ASC"
	}
	var extra []string
	var args []any
	if r.Cursor != "" {
		c, err := parseCursor(r.Cursor, r.Order)
		if err != nil {
			return PoisonPage{}, err
		}
		// (lf, offset) beyond the cursor, written so that every backend
		// reads it as a range on the index.
		extra = append(extra, lf+" "+cmp+"= ? AND ("+lf+" "+cmp+" ? OR "+off+" "+cmp+" ?)")
		args = append(args, c.lastFailure, c.lastFailure, c.offset)
	}
	query := `SELECT ` + db.summaryColumns() + ` FROM ` + db.poisonTable() + q.where(extra...) +
		` ORDER BY ` + lf + ` ` + dir + `, ` + off + ` ` + dir + ` LIMIT ` + strconv.Itoa(r.Limit+1)
	entries, cursors, err := db.scanSummaries(ctx, query, q.with(args...)...)
	if err != nil {
		return PoisonPage{}, err
	}
	page := PoisonPage{Entries: entries}
	if len(entries) > r.Limit {
		page.Entries = entries[:r.Limit]
		c := cursors[r.Limit-1]
		c.order = r.Order
		page.Next = c.String()
	}
	if page.Total, err = db.countMatching(ctx, db.SQL, q); err != nil {
		return PoisonPage{}, err
	}
	return page, nil
}

func (db *DB) scanSummaries(ctx context.Context, query string, args ...any) ([]PoisonEntry, []poisonCursor, error) {
	return scanSummariesWith(ctx, db.SQL, db.bind(query), args...)
}

func scanSummariesWith(ctx context.Context, q querier, query string, args ...any) ([]PoisonEntry, []poisonCursor, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, nil, fmt.Errorf("list poison entries: %w", err)
	}
	defer rows.Close()
	var entries []PoisonEntry
	var cursors []poisonCursor
	for rows.Next() {
		var c poisonCursor
		var id string
		var metadata []byte
		if err := rows.Scan(&c.offset, &id, &metadata, &c.lastFailure); err != nil {
			return nil, nil, fmt.Errorf("list poison entries: %w", err)
		}
		e, err := entryFromRow(id, nil, metadata)
		if err != nil {
			return nil, nil, err
		}
		entries = append(entries, e)
		cursors = append(cursors, c)
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("list poison entries: %w", err)
	}
	return entries, cursors, nil
}

func (db *DB) countMatching(ctx context.Context, q querier, pq *poisonQuery) (int, error) {
	rows, err := q.QueryContext(ctx, db.bind(`SELECT COUNT(*) FROM `+db.poisonTable()+pq.where()), pq.args...)
	if err != nil {
		return 0, fmt.Errorf("count poison entries: %w", err)
	}
	defer rows.Close()
	var n int
	if rows.Next() {
		if err := rows.Scan(&n); err != nil {
			return 0, fmt.Errorf("count poison entries: %w", err)
		}
	}
	return n, rows.Err()
}

// CountPoisonMatching is the number of entries that match f.
func (db *DB) CountPoisonMatching(ctx context.Context, f PoisonFilter) (int, error) {
	q, err := db.newPoisonQuery(f)
	if err != nil {
		return 0, err
	}
	return db.countMatching(ctx, db.SQL, q)
}

// PoisonCount is one group of PoisonStats.
type PoisonCount struct {
	Key   string
	Count int
}

// PoisonGroups are the largest groups of one dimension, and what is left.
type PoisonGroups struct {
	Top []PoisonCount
	// OtherGroups and OtherCount sum up the groups beyond Top.
	OtherGroups, OtherCount int
}

// PoisonStats sums up the entries that match a filter.
type PoisonStats struct {
	Total     int
	ByClass   PoisonGroups
	ByReason  PoisonGroups // by ReasonKind
	BySubject PoisonGroups // by DisplaySubject
	ByIngress PoisonGroups
	// Oldest and Newest are the entries with the least and the most recent
	// last failure (nil when none match), without payloads.
	Oldest, Newest *PoisonEntry
}

// PoisonStats counts the entries matching f by class, reason kind, subject
// and ingress (the largest top groups of each, largest first), and finds
// the oldest and the newest. On PostgreSQL and MySQL it reads one snapshot.
func (db *DB) PoisonStats(ctx context.Context, f PoisonFilter, top int) (PoisonStats, error) {
	q, err := db.newPoisonQuery(f)
	if err != nil {
		return PoisonStats{}, err
	}
	if top <= 0 {
		top = 20
	}
	var src querier = db.SQL
	if db.Dialect != SQLite { // an SQLite transaction would take the write lock
		tx, err := db.SQL.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true})
		if err != nil {
			return PoisonStats{}, fmt.Errorf("poison stats: begin: %w", err)
		}
		defer tx.Rollback() //nolint:errcheck // read-only
		src = tx
	}
	var s PoisonStats
	class, subject, ingress := newTopGroups(top), newTopGroups(top), newTopGroups(top)
	kinds := map[string]int{} // reason kinds are few: a field and a rule each
	if db.Dialect == Postgres {
		// One scan for all four (stored columns): under load this is
		// what keeps the console's first page well under a second.
		if err := db.groupingSets(ctx, src, q, class, subject, ingress, kinds); err != nil {
			return s, err
		}
	} else {
		// MySQL and SQLite have no GROUPING SETS; their virtual columns'
		// indexes make each GROUP BY an index scan instead.
		for _, g := range []struct {
			column string
			into   *topGroups
		}{{pcClass, class}, {pcSubject, subject}, {pcIngress, ingress}} {
			if err := db.groupCounts(ctx, src, q, g.column, "", g.into.add); err != nil {
				return s, err
			}
		}
		if err := db.groupCounts(ctx, src, q, pcReasonKind, db.quote(pcReasonKind)+" IS NOT NULL",
			func(kind string, n int) { kinds[kind] += n }); err != nil {
			return s, err
		}
	}
	// Entries written before reason kinds existed: kind them here.
	if err := db.groupCounts(ctx, src, q, pcReason, db.quote(pcReasonKind)+" IS NULL",
		func(reason string, n int) { kinds[ReasonKind(reason)] += n }); err != nil {
		return s, err
	}
	byKind := newTopGroups(top)
	for kind, n := range kinds {
		byKind.add(kind, n)
	}
	s.ByClass, s.BySubject, s.ByIngress, s.ByReason = class.groups(), subject.groups(), ingress.groups(), byKind.groups()
	s.Total = class.total // every entry has one class (NULL counts as "")
	for _, end := range []struct {
		dir  string
		into **PoisonEntry
	}{{"ASC", &s.Oldest}, {"DESC", &s.Newest}} {
		lf, off := db.quote(pcLastFailure), db.quote("offset")
		entries, _, err := scanSummariesWith(ctx, src, db.bind(`SELECT `+db.summaryColumns()+` FROM `+db.poisonTable()+q.where()+
			` ORDER BY `+lf+` `+end.dir+`, `+off+` `+end.dir+` LIMIT 1`), q.args...)
		if err != nil {
			return s, err
		}
		if len(entries) == 1 {
			*end.into = &entries[0]
		}
	}
	return s, nil
}

// groupCounts counts the matching entries by a generated column, and
// gives each group to add (a NULL key as ""). The database sends every
// group; only the caller decides what it keeps.
func (db *DB) groupCounts(ctx context.Context, src querier, q *poisonQuery, column, cond string, add func(key string, n int)) error {
	var extra []string
	if cond != "" {
		extra = append(extra, cond)
	}
	col := db.quote(column)
	rows, err := src.QueryContext(ctx, db.bind(`SELECT `+col+`, COUNT(*) FROM `+db.poisonTable()+q.where(extra...)+` GROUP BY `+col), q.args...)
	if err != nil {
		return fmt.Errorf("poison stats by %s: %w", column, err)
	}
	defer rows.Close()
	for rows.Next() {
		var key sql.NullString
		var n int
		if err := rows.Scan(&key, &n); err != nil {
			return fmt.Errorf("poison stats by %s: %w", column, err)
		}
		add(key.String, n)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("poison stats by %s: %w", column, err)
	}
	return nil
}

// groupingSets counts the matching entries by class, subject, ingress and
// reason kind in one scan (PostgreSQL). Entries without a reason kind are
// left to the caller.
func (db *DB) groupingSets(ctx context.Context, src querier, q *poisonQuery, class, subject, ingress *topGroups, kinds map[string]int) error {
	cols := []string{db.quote(pcClass), db.quote(pcSubject), db.quote(pcIngress), db.quote(pcReasonKind)}
	list := strings.Join(cols, ", ")
	// GROUPING(...) has a bit per column, set for the columns a row is
	// not grouped by: 0b0111 is a class row, 0b1011 subject, 0b1101
	// ingress, 0b1110 reason kind.
	query := `SELECT GROUPING(` + list + `), ` + list + `, COUNT(*) FROM ` + db.poisonTable() + q.where() +
		` GROUP BY GROUPING SETS ((` + strings.Join(cols, "), (") + `))`
	rows, err := src.QueryContext(ctx, db.bind(query), q.args...)
	if err != nil {
		return fmt.Errorf("poison stats: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var set int
		var key [4]sql.NullString
		var n int
		if err := rows.Scan(&set, &key[0], &key[1], &key[2], &key[3], &n); err != nil {
			return fmt.Errorf("poison stats: %w", err)
		}
		switch set {
		case 0b0111:
			class.add(key[0].String, n)
		case 0b1011:
			subject.add(key[1].String, n)
		case 0b1101:
			ingress.add(key[2].String, n)
		case 0b1110:
			if key[3].Valid {
				kinds[key[3].String] += n
			}
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("poison stats: %w", err)
	}
	return nil
}

// topGroups keeps the n largest groups it is given (ties by key) and sums
// up the rest, so a dimension with a group per entry (200,000 subjects)
// holds n groups, not all of them.
type topGroups struct {
	n                       int
	top                     []PoisonCount // largest first
	otherGroups, otherCount int
	total                   int
	// empty sums the groups without a key: NULL and "" are one group,
	// kept aside until groups is called.
	empty    int
	hasEmpty bool
}

func newTopGroups(n int) *topGroups { return &topGroups{n: n, top: []PoisonCount{}} }

// add takes a group; a key other than "" is given once.
func (t *topGroups) add(key string, count int) {
	if key == "" {
		t.empty += count
		t.hasEmpty = true
		t.total += count
		return
	}
	t.total += count
	t.insert(key, count)
}

func (t *topGroups) insert(key string, count int) {
	before := func(a, b PoisonCount) bool {
		return a.Count > b.Count || (a.Count == b.Count && a.Key < b.Key)
	}
	c := PoisonCount{Key: key, Count: count}
	if len(t.top) == t.n && !before(c, t.top[len(t.top)-1]) {
		t.otherGroups++
		t.otherCount += count
		return
	}
	i, _ := slices.BinarySearchFunc(t.top, c, func(e, target PoisonCount) int {
		if before(e, target) {
			return -1
		}
		return 1
	})
	t.top = slices.Insert(t.top, i, c)
	if len(t.top) > t.n {
		out := t.top[len(t.top)-1]
		t.top = t.top[:t.n]
		t.otherGroups++
		t.otherCount += out.Count
	}
}

// groups is the result; call it once, after the last add.
func (t *topGroups) groups() PoisonGroups {
	if t.hasEmpty {
		t.insert("", t.empty)
		t.hasEmpty = false
	}
	return PoisonGroups{Top: t.top, OtherGroups: t.otherGroups, OtherCount: t.otherCount}
}

// maxOffset is the highest offset in the poison table now (0 when empty):
// bulk operations stop there, so entries that arrive while they run are
// left alone.
func (db *DB) maxOffset(ctx context.Context) (int64, error) {
	var n sql.NullInt64
	if err := db.SQL.QueryRowContext(ctx, `SELECT MAX(`+db.quote("offset")+`) FROM `+db.poisonTable()).Scan(&n); err != nil {
		return 0, fmt.Errorf("poison queue: %w", err)
	}
	return n.Int64, nil
}

// EachPoison calls fn with the entries matching f, without payloads, in
// batches of at most 1,000, in the order they were stored. Entries stored
// after it started are left out. fn may delete or change the entries it is
// given (a replay does): the walk goes by offset, which never changes, so
// it still visits every entry once.
func (db *DB) EachPoison(ctx context.Context, f PoisonFilter, fn func([]PoisonEntry) error) error {
	q, err := db.newPoisonQuery(f)
	if err != nil {
		return err
	}
	bound, err := db.maxOffset(ctx)
	if err != nil {
		return err
	}
	off := db.quote("offset")
	for after := int64(0); ; {
		entries, cursors, err := db.scanSummaries(ctx, `SELECT `+db.summaryColumns()+` FROM `+db.poisonTable()+
			q.where(off+" > ?", off+" <= ?")+` ORDER BY `+off+` LIMIT `+strconv.Itoa(poisonBatchSize), q.with(after, bound)...)
		if err != nil || len(entries) == 0 {
			return err
		}
		if err := fn(entries); err != nil {
			return err
		}
		after = cursors[len(cursors)-1].offset
	}
}

// DeletePoisonMatching deletes the entries matching f that exist when it
// starts, in batches of 1,000 (a statement each, so no transaction holds
// the table long), and returns how many it deleted. progress, when not nil,
// is called after each batch with the number deleted so far.
func (db *DB) DeletePoisonMatching(ctx context.Context, f PoisonFilter, progress func(deleted int)) (int, error) {
	q, err := db.newPoisonQuery(f)
	if err != nil {
		return 0, err
	}
	bound, err := db.maxOffset(ctx)
	if err != nil {
		return 0, err
	}
	if len(q.conds) == 0 && db.Dialect != Postgres {
		truncate := db.truncatePoison
		if db.Dialect == MySQL {
			truncate = db.truncatePoisonMySQL
		}
		if n, ok, err := truncate(ctx, bound); err != nil || ok {
			if progress != nil && ok {
				progress(n)
			}
			return n, err
		}
	}
	off := db.quote("offset")
	deleted := 0
	for after := int64(0); ; {
		offsets, err := db.offsets(ctx, `SELECT `+off+` FROM `+db.poisonTable()+q.where(off+" > ?", off+" <= ?")+
			` ORDER BY `+off+` LIMIT `+strconv.Itoa(poisonBatchSize), q.with(after, bound)...)
		if err != nil {
			return deleted, err
		}
		if len(offsets) == 0 {
			return deleted, nil
		}
		in := make([]any, len(offsets))
		for i, o := range offsets {
			in[i] = o
		}
		// The filter again: an entry that changed since (failed again
		// with another reason) may no longer match.
		placeholders := strings.TrimSuffix(strings.Repeat("?,", len(in)), ",")
		res, err := db.SQL.ExecContext(ctx, db.bind(`DELETE FROM `+db.poisonTable()+q.where(off+" IN ("+placeholders+")")), q.with(in...)...)
		if err != nil {
			return deleted, fmt.Errorf("delete poison entries: %w", err)
		}
		n, _ := res.RowsAffected()
		deleted += int(n)
		if progress != nil {
			progress(deleted)
		}
		after = offsets[len(offsets)-1]
	}
}

// truncatePoison empties SQLite's poison table in one statement when
// nothing has arrived past bound: a DELETE without WHERE drops the table's
// pages instead of removing each row from its eight indexes (whose
// generated columns would each be computed from the JSON again), 200,000
// entries in well under a second against 45 s in batches. The write lock,
// taken when the transaction begins, keeps new entries out meanwhile; ok
// is false when some arrived after bound, and the caller deletes in
// batches instead.
func (db *DB) truncatePoison(ctx context.Context, bound int64) (n int, ok bool, err error) {
	tx, err := db.SQL.BeginTx(ctx, nil)
	if err != nil {
		return 0, false, fmt.Errorf("delete poison entries: %w", err)
	}
	defer func() {
		if !ok || err != nil {
			_ = tx.Rollback()
		}
	}()
	off := db.quote("offset")
	var later int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM `+db.poisonTable()+` WHERE `+off+` > ?`, bound).Scan(&later); err != nil {
		return 0, false, fmt.Errorf("delete poison entries: %w", err)
	}
	if later > 0 {
		return 0, false, nil
	}
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM `+db.poisonTable()).Scan(&n); err != nil {
		return 0, false, fmt.Errorf("delete poison entries: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM `+db.poisonTable()); err != nil {
		return 0, false, fmt.Errorf("delete poison entries: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return 0, false, fmt.Errorf("delete poison entries: %w", err)
	}
	return n, true, nil
}

// truncatePoisonMySQL empties MySQL's poison table with TRUNCATE TABLE
// when nothing has arrived past bound. Deleting row by row must compute
// each row's eight virtual columns from its JSON to find their index
// entries: 200,000 entries took 25–150 s on MariaDB at its default buffer
// pool, against well under a second. TRUNCATE is DDL and would start the
// table's AUTO_INCREMENT at 1 again, under the offsets watermill-sql's
// consumers have stored, so the table is write-locked from the check to
// setting AUTO_INCREMENT back past bound. A user without the LOCK TABLES,
// DROP or ALTER privilege gets ok = false, and the caller deletes in
// batches.
func (db *DB) truncatePoisonMySQL(ctx context.Context, bound int64) (n int, ok bool, err error) {
	conn, err := db.SQL.Conn(ctx)
	if err != nil {
		return 0, false, fmt.Errorf("delete poison entries: %w", err)
	}
	defer conn.Close()
	table := db.poisonTable()
	if _, err := conn.ExecContext(ctx, `LOCK TABLES `+table+` WRITE`); err != nil {
		return 0, false, nil //nolint:nilerr // no privilege: batches instead
	}
	// UNLOCK on every path, even when ctx has ended: the connection goes
	// back to the pool.
	defer func() {
		if _, uerr := conn.ExecContext(context.WithoutCancel(ctx), `UNLOCK TABLES`); uerr != nil {
			_ = conn.Raw(func(any) error { return driver.ErrBadConn }) // drop it
			if err == nil && !ok {
				err = fmt.Errorf("delete poison entries: unlock: %w", uerr)
			}
		}
	}()
	var later int
	if err := conn.QueryRowContext(ctx, `SELECT COUNT(*) FROM `+table+` WHERE `+db.quote("offset")+` > ?`, bound).Scan(&later); err != nil {
		return 0, false, fmt.Errorf("delete poison entries: %w", err)
	}
	if later > 0 {
		return 0, false, nil
	}
	if err := conn.QueryRowContext(ctx, `SELECT COUNT(*) FROM `+table).Scan(&n); err != nil {
		return 0, false, fmt.Errorf("delete poison entries: %w", err)
	}
	// MySQL 8 caches information_schema's table figures for a day
	// unless told not to (MariaDB has no such setting, nor cache).
	_, _ = conn.ExecContext(ctx, `SET SESSION information_schema_stats_expiry = 0`)
	var next int64
	if err := conn.QueryRowContext(ctx, `SELECT AUTO_INCREMENT FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = ?`,
		messagesTableName(PoisonTopic)).Scan(&next); err != nil {
		return 0, false, fmt.Errorf("delete poison entries: %w", err)
	}
	next = max(next, bound+1)
	if _, err := conn.ExecContext(ctx, `TRUNCATE TABLE `+table); err != nil {
		return 0, false, nil //nolint:nilerr // no DROP privilege: batches instead
	}
	// From here the rows are gone; failing to set the counter back is an
	// error, not a reason to delete in batches.
	if _, err := conn.ExecContext(ctx, `ALTER TABLE `+table+` AUTO_INCREMENT = `+strconv.FormatInt(next, 10)); err != nil {
		return n, true, fmt.Errorf("deleted %d poison entries, but could not set the table's AUTO_INCREMENT back to %d (new entries would reuse offsets): %w", n, next, err)
	}
	return n, true, nil
}

func (db *DB) offsets(ctx context.Context, query string, args ...any) ([]int64, error) {
	rows, err := db.SQL.QueryContext(ctx, db.bind(query), args...)
	if err != nil {
		return nil, fmt.Errorf("poison queue: %w", err)
	}
	defer rows.Close()
	var out []int64
	for rows.Next() {
		var o int64
		if err := rows.Scan(&o); err != nil {
			return nil, fmt.Errorf("poison queue: %w", err)
		}
		out = append(out, o)
	}
	return out, rows.Err()
}
