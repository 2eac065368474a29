package store_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"

	"github.com/social/user-events-router/redact"
	"github.com/social/user-events-router/store"
	"github.com/social/user-events-router/store/storetest"
)

// testTimeout bounds each database operation of a test.
const testTimeout = 30 * time.Second

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

func TestOpenURLForms(t *testing.T) {
	t.Parallel()

	dir := t.TempDir()
	tests := []struct {
		name    string
		dialect store.Dialect
		url     func(t *testing.T) string
	}{
		{"sqlite:PATH in a new directory", store.SQLite, func(*testing.T) string {
			return "sqlite:" + filepath.Join(dir, "a", "b", "router.db")
		}},
		{"sqlite://PATH", store.SQLite, func(*testing.T) string {
			return "sqlite://" + filepath.Join(dir, "c", "router.db") // absolute: three slashes
		}},
		{"sqlite:file: URI", store.SQLite, func(*testing.T) string {
			return "sqlite:file:" + filepath.Join(dir, "d", "router.db") + "?mode=rwc"
		}},
		{"postgres://", store.Postgres, func(t *testing.T) string { return storetest.URL(t, store.Postgres) }},
		{"postgresql://", store.Postgres, func(t *testing.T) string {
			return "postgresql" + strings.TrimPrefix(storetest.URL(t, store.Postgres), "postgres")
		}},
		{"mysql:// with driver and session parameters", store.MySQL, func(t *testing.T) string {
			return storetest.URL(t, store.MySQL) + "?timeout=5s&charset=utf8mb4&time_zone=%27%2B00%3A00%27"
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := testContext(t)
			db, err := store.Open(ctx, tt.url(t))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = db.Close() })
			if db.Dialect != tt.dialect {
				t.Errorf("dialect = %s, want %s", db.Dialect, tt.dialect)
			}
			if err := db.Ping(ctx); err != nil {
				t.Fatal(err)
			}
			if err := db.InitSchema(ctx, store.CommandsTopic); err != nil {
				t.Fatal(err)
			}
			if tt.dialect == store.MySQL {
				var tz string
				if err := db.SQL.QueryRowContext(ctx, "SELECT @@session.time_zone").Scan(&tz); err != nil {
					t.Fatal(err)
				}
				if tz != "+00:00" {
					t.Errorf("time_zone = %q, want the URL's session variable +00:00", tz)
				}
			}
		})
	}
}

// TestOpenSQLiteOptions checks that every connection, not just the first,
// gets the options the subscribers' correctness depends on.
func TestOpenSQLiteOptions(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	db := storetest.Open(t, store.SQLite)

	// Hold several connections at once so the pool has to open new ones.
	for i := range 3 {
		conn, err := db.SQL.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		for pragma, want := range map[string]string{
			"journal_mode": "wal",
			"busy_timeout": "10000",
			"synchronous":  "2", // FULL
			"foreign_keys": "1",
		} {
			var got string
			if err := conn.QueryRowContext(ctx, "PRAGMA "+pragma).Scan(&got); err != nil {
				t.Fatal(err)
			}
			if got != want {
				t.Errorf("connection %d: PRAGMA %s = %s, want %s", i, pragma, got, want)
			}
		}
	}
}

// TestOpenSQLiteImmediateTransactions shows that a transaction takes the
// write lock at BEGIN: a second one cannot begin while the first is open.
func TestOpenSQLiteImmediateTransactions(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	// A short busy_timeout (the caller's _pragma wins) keeps the test fast.
	databaseURL := storetest.URL(t, store.SQLite) + "?_pragma=busy_timeout(50)"
	db, err := store.Open(ctx, databaseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()

	first, err := db.SQL.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Rollback()

	second, err := db.SQL.BeginTx(ctx, nil)
	if err == nil {
		_ = second.Rollback()
		t.Fatal("a second transaction began while the first held the write lock; _txlock=immediate is not in effect")
	}
	if !strings.Contains(err.Error(), "locked") && !strings.Contains(err.Error(), "busy") {
		t.Errorf("second BEGIN failed with %v, want a lock error", err)
	}

	if err := first.Rollback(); err != nil {
		t.Fatal(err)
	}
	third, err := db.SQL.BeginTx(ctx, nil)
	if err != nil {
		t.Fatalf("BEGIN after the first transaction ended: %v", err)
	}
	_ = third.Rollback()
}

func TestOpenRejectsBadURLs(t *testing.T) {
	t.Parallel()

	const password = "Tr0ub4dor-and-3"
	tests := []struct {
		name, url, problem string
		invalidURL         bool
	}{
		{"unknown scheme", "redis://:" + password + "@cache:6379/0", "unsupported scheme", true},
		{"mysql without database", "mysql://root:" + password + "@127.0.0.1:3306", "database name", true},
		{"postgres bad port", "postgres://app:" + password + "@127.0.0.1:99999/x", "port", true},
		{"sqlite in memory", "sqlite::memory:", "in-memory", true},
		// A well-formed URL to a server that is not there fails at ping.
		{"postgres unreachable", "postgres://app:" + password + "@127.0.0.1:1/x?connect_timeout=5", "ping postgres://app:xxxxx@127.0.0.1:1/x", false},
		{"mysql unreachable", "mysql://app:" + password + "@127.0.0.1:1/x?timeout=5s", "ping mysql://app:xxxxx@127.0.0.1:1/x", false},
		{"sqlite directory not creatable", "sqlite:/proc/no-such/router.db", "create directory", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			db, err := store.Open(testContext(t), tt.url)
			if err == nil {
				_ = db.Close()
				t.Fatalf("Open(%q) succeeded", redact.URL(tt.url))
			}
			if !strings.Contains(err.Error(), tt.problem) {
				t.Errorf("error %q does not name the problem (%q)", err, tt.problem)
			}
			if strings.Contains(err.Error(), password) {
				t.Errorf("error %q leaks the password", err)
			}
			if got := errors.Is(err, store.ErrInvalidURL); got != tt.invalidURL {
				t.Errorf("errors.Is(%q, ErrInvalidURL) = %v, want %v", err, got, tt.invalidURL)
			}
		})
	}
}

func TestParseURLDialects(t *testing.T) {
	t.Parallel()
	for url, want := range map[string]store.Dialect{
		"postgres://app@db/router":   store.Postgres,
		"postgresql://app@db/router": store.Postgres,
		"mysql://root@db:3306/test":  store.MySQL,
		"sqlite:data/router.db":      store.SQLite,
	} {
		got, err := store.ParseURL(url)
		if err != nil || got != want {
			t.Errorf("ParseURL(%q) = %q, %v; want %q", url, got, err, want)
		}
	}
	if _, err := store.ParseURL("sqlite:"); !errors.Is(err, store.ErrInvalidURL) {
		t.Errorf("ParseURL(sqlite:) error = %v, want ErrInvalidURL", err)
	}
}

func TestInitSchemaIsIdempotent(t *testing.T) {
	t.Parallel()
	storetest.EachBackend(t, func(t *testing.T, d store.Dialect) {
		ctx := testContext(t)
		db := storetest.Open(t, d) // already initialised once
		for range 2 {
			if err := db.InitSchema(ctx, store.CommandsTopic, store.PoisonTopic); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// TestInitSchemaConcurrently runs InitSchema from several connection pools at
// once, as several router replicas starting together would.
func TestInitSchemaConcurrently(t *testing.T) {
	t.Parallel()
	storetest.EachBackend(t, func(t *testing.T, d store.Dialect) {
		ctx := testContext(t)
		databaseURL := storetest.URL(t, d)
		const processes = 4
		var wg sync.WaitGroup
		errs := make(chan error, processes)
		for range processes {
			wg.Go(func() {
				db, err := store.Open(ctx, databaseURL)
				if err != nil {
					errs <- err
					return
				}
				defer db.Close()
				errs <- db.InitSchema(ctx, store.CommandsTopic, store.PoisonTopic, "concurrent_init")
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Error(err)
			}
		}
	})
}

func TestInitSchemaRejectsBadTopics(t *testing.T) {
	t.Parallel()
	storetest.EachBackend(t, func(t *testing.T, d store.Dialect) {
		ctx := testContext(t)
		db := storetest.Open(t, d)
		for _, topic := range []string{"", "drop table;", `a"b`, "a`b"} {
			err := db.InitSchema(ctx, topic)
			if !errors.Is(err, wmsql.ErrInvalidTopicName) {
				t.Errorf("InitSchema(%q) = %v, want ErrInvalidTopicName", topic, err)
			}
		}
		if d != store.SQLite {
			if err := db.InitSchema(ctx, strings.Repeat("x", 60)); err == nil || !strings.Contains(err.Error(), "too long") {
				t.Errorf("InitSchema(long topic) = %v, want a too-long error", err)
			}
		}
	})
}

// TestPublishIsIdempotent is the contract that makes redelivery harmless: a
// message whose uuid is already stored is not stored again, and that is not
// an error.
func TestPublishIsIdempotent(t *testing.T) {
	t.Parallel()
	storetest.EachBackend(t, func(t *testing.T, d store.Dialect) {
		for _, topic := range []string{store.CommandsTopic, store.PoisonTopic} {
			t.Run(topic, func(t *testing.T) {
				t.Parallel()
				db := storetest.Open(t, d)
				pub, err := db.Publisher(watermill.NopLogger{})
				if err != nil {
					t.Fatal(err)
				}
				defer pub.Close()

				newMsg := func(id string) *message.Message {
					msg := message.NewMessage(id, []byte(`{"user_id":"`+id+`"}`))
					msg.Metadata.Set("correlation_id", "corr-"+id)
					return msg
				}
				a, b, c := uuid.NewString(), uuid.NewString(), uuid.NewString()

				// The same uuid twice, separately.
				mustPublish(t, pub, topic, newMsg(a))
				mustPublish(t, pub, topic, newMsg(a))
				// The same uuid twice within one multi-message publish, next
				// to a new one, and an old one again.
				mustPublish(t, pub, topic, newMsg(b), newMsg(b), newMsg(c), newMsg(a))

				got := uuids(t, db, topic)
				if want := []string{a, b, c}; !slices.Equal(got, want) {
					t.Errorf("rows = %v, want %v (one each, in publish order)", got, want)
				}
			})
		}
	})
}

func mustPublish(t *testing.T, pub message.Publisher, topic string, msgs ...*message.Message) {
	t.Helper()
	if err := pub.Publish(topic, msgs...); err != nil {
		t.Fatalf("publish %d message(s) to %s: %v", len(msgs), topic, err)
	}
}

// uuids returns the uuid column of a topic's table in offset order.
func uuids(t *testing.T, db *store.DB, topic string) []string {
	t.Helper()
	return queryStrings(t, db, `SELECT uuid FROM `+quoteIdent(db.Dialect, "watermill_"+topic)+
		` ORDER BY `+quoteIdent(db.Dialect, "offset"))
}

func quoteIdent(d store.Dialect, name string) string {
	if d == store.MySQL {
		return "`" + name + "`"
	}
	return `"` + name + `"`
}

// TestPoisonPayloadIsKeptByteForByte: a poison entry keeps the original
// event, and that may be anything but JSON.
func TestPoisonPayloadIsKeptByteForByte(t *testing.T) {
	t.Parallel()
	storetest.EachBackend(t, func(t *testing.T, d store.Dialect) {
		db := storetest.Open(t, d)
		pub, err := db.Publisher(watermill.NopLogger{})
		if err != nil {
			t.Fatal(err)
		}
		defer pub.Close()
		payload := []byte("{\"id\": \"x\", trailing garbage \xff\x00 }")
		mustPublish(t, pub, store.PoisonTopic, message.NewMessage(uuid.NewString(), payload))

		var got []byte
		err = db.SQL.QueryRowContext(testContext(t), "SELECT payload FROM "+quoteIdent(d, "watermill_"+store.PoisonTopic)).Scan(&got)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(payload) {
			t.Errorf("payload = %q, want %q", got, payload)
		}
	})
}

// TestTableLayout pins the outside contract: table and column names are
// watermill-sql's standard ones, and uuid is unique; beside them, the
// router's own ledger.
func TestTableLayout(t *testing.T) {
	t.Parallel()
	wantColumns := map[store.Dialect][]string{
		store.Postgres: {"offset", "uuid", "created_at", "payload", "metadata", "transaction_id"},
		store.MySQL:    {"offset", "uuid", "created_at", "payload", "metadata"},
		store.SQLite:   {"offset", "uuid", "created_at", "payload", "metadata"},
	}
	wantOffsetColumns := map[store.Dialect][]string{
		store.Postgres: {"consumer_group", "offset_acked", "last_processed_transaction_id"},
		store.MySQL:    {"consumer_group", "offset_acked", "offset_consumed"},
		store.SQLite:   {"consumer_group", "offset_acked", "offset_consumed"},
	}
	// The poison table also has generated columns (derived from metadata,
	// never written) for its filters and indexes.
	poisonColumns := []string{"poison_last_failure", "poison_class", "poison_subject", "poison_ingress",
		"poison_correlation_id", "poison_user_id", "poison_reason_kind", "poison_reason"}
	storetest.EachBackend(t, func(t *testing.T, d store.Dialect) {
		db := storetest.Open(t, d)
		tables := []string{
			"watermill_profile_sync_commands", "watermill_offsets_profile_sync_commands",
			store.LedgerTable,
			"watermill_user_events_poison", "watermill_offsets_user_events_poison",
		}
		if got := tableNames(t, db); !slices.Equal(got, tables) {
			t.Errorf("tables = %v, want %v", got, tables)
		}
		for _, table := range tables {
			want := wantColumns[d]
			switch {
			case strings.HasPrefix(table, "watermill_offsets_"):
				want = wantOffsetColumns[d]
			case table == store.LedgerTable:
				want = []string{"user_id", "state", "updated_at"}
			}
			if table == "watermill_user_events_poison" {
				want = append(slices.Clone(want), poisonColumns...)
			}
			if got := columnNames(t, db, table); !slices.Equal(got, want) {
				t.Errorf("%s columns = %v, want %v", table, got, want)
			}
		}
		if got := generatedColumns(t, db, "watermill_user_events_poison"); !slices.Equal(got, poisonColumns) {
			t.Errorf("generated columns of the poison table = %v, want %v", got, poisonColumns)
		}
	})
}

// generatedColumns lists a table's generated columns in definition order.
func generatedColumns(t *testing.T, db *store.DB, table string) []string {
	t.Helper()
	switch db.Dialect {
	case store.Postgres:
		return queryStrings(t, db, `SELECT column_name FROM information_schema.columns
			WHERE table_schema = current_schema() AND table_name = $1 AND is_generated = 'ALWAYS' ORDER BY ordinal_position`, table)
	case store.MySQL:
		return queryStrings(t, db, `SELECT column_name FROM information_schema.columns
			WHERE table_schema = DATABASE() AND table_name = ? AND extra LIKE '%GENERATED%' ORDER BY ordinal_position`, table)
	default:
		return queryStrings(t, db, `SELECT name FROM pragma_table_xinfo(?) WHERE hidden IN (2, 3) ORDER BY cid`, table)
	}
}

// tableNames lists the tables of db's database (schema), sorted by
// messages-then-offsets per topic, as the layout test expects.
func tableNames(t *testing.T, db *store.DB) []string {
	t.Helper()
	var query string
	switch db.Dialect {
	case store.Postgres:
		query = `SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()`
	case store.MySQL:
		query = `SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE()`
	default:
		query = `SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%'`
	}
	names := queryStrings(t, db, query)
	// Order: commands before poison, messages before offsets.
	slices.SortFunc(names, func(a, b string) int {
		key := func(s string) string {
			topic := strings.TrimPrefix(strings.TrimPrefix(s, "watermill_offsets_"), "watermill_")
			order := "1"
			if topic == store.CommandsTopic {
				order = "0"
			}
			if strings.HasPrefix(s, "watermill_offsets_") {
				return order + topic + "1"
			}
			return order + topic + "0"
		}
		return strings.Compare(key(a), key(b))
	})
	return names
}

// columnNames lists a table's columns in definition order.
func columnNames(t *testing.T, db *store.DB, table string) []string {
	t.Helper()
	switch db.Dialect {
	case store.Postgres:
		return queryStrings(t, db, `SELECT column_name FROM information_schema.columns
			WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position`, table)
	case store.MySQL:
		return queryStrings(t, db, `SELECT column_name FROM information_schema.columns
			WHERE table_schema = DATABASE() AND table_name = ? ORDER BY ordinal_position`, table)
	default:
		// table_xinfo: table_info leaves out generated columns.
		return queryStrings(t, db, `SELECT name FROM pragma_table_xinfo(?) ORDER BY cid`, table)
	}
}

func queryStrings(t *testing.T, db *store.DB, query string, args ...any) []string {
	t.Helper()
	rows, err := db.SQL.QueryContext(testContext(t), query, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestColumnsMatchWatermillSQL compares our tables with ones that plain
// watermill-sql creates, column by column (type, nullability, default), so
// our own CREATE TABLE cannot drift from the standard layout.
func TestColumnsMatchWatermillSQL(t *testing.T) {
	t.Parallel()
	storetest.EachBackend(t, func(t *testing.T, d store.Dialect) {
		if d == store.SQLite {
			t.Skip("watermill-sql has no SQLite schema to compare with")
		}
		ctx := testContext(t)
		db := storetest.Open(t, d)
		plain := plainSchema(d, func(string) string { return "JSON" })
		// Plain watermill-sql's table for a topic named like ours, so the
		// payload type (JSON for commands) is comparable.
		const plainTopic = "plain_" + store.CommandsTopic
		if err := initPlain(ctx, db, plain, plainTopic); err != nil {
			t.Fatal(err)
		}
		got := columnDefinitions(t, db, "watermill_"+store.CommandsTopic)
		want := columnDefinitions(t, db, "watermill_"+plainTopic)
		if !slices.Equal(got, want) {
			t.Errorf("columns differ from watermill-sql's\n got: %v\nwant: %v", got, want)
		}
	})
}

func plainSchema(d store.Dialect, payloadType func(string) string) wmsql.SchemaAdapter {
	if d == store.Postgres {
		return wmsql.DefaultPostgreSQLSchema{GeneratePayloadType: payloadType}
	}
	return wmsql.DefaultMySQLSchema{GeneratePayloadType: payloadType}
}

// initPlain creates a topic's messages table exactly as plain watermill-sql
// would, without our unique index.
func initPlain(ctx context.Context, db *store.DB, schema wmsql.SchemaAdapter, topic string) error {
	queries, err := schema.SchemaInitializingQueries(wmsql.SchemaInitializingQueriesParams{Topic: topic})
	if err != nil {
		return err
	}
	for _, q := range queries {
		if strings.Contains(q.Query, "pg_advisory_xact_lock") {
			continue // only meaningful inside a transaction
		}
		if _, err := db.SQL.ExecContext(ctx, q.Query, q.Args...); err != nil {
			return fmt.Errorf("%s: %w", q.Query, err)
		}
	}
	return nil
}

func columnDefinitions(t *testing.T, db *store.DB, table string) []string {
	t.Helper()
	query := `SELECT concat_ws(' ', column_name, data_type, is_nullable, coalesce(column_default, '-'))
		FROM information_schema.columns WHERE table_schema = DATABASE() AND table_name = ? ORDER BY ordinal_position`
	if db.Dialect == store.Postgres {
		// The offset sequence's name carries the table name; keep the rest.
		query = `SELECT concat_ws(' ', column_name, data_type, is_nullable,
				regexp_replace(coalesce(column_default, '-'), 'nextval\(''[^'']*''', 'nextval('))
			FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position`
	}
	return queryStrings(t, db, query, table)
}

// TestInitSchemaAddsUUIDKeyToPlainTable covers a table that plain
// watermill-sql created first (say a consumer with InitializeSchema started
// before the router): InitSchema must still make uuid unique.
func TestInitSchemaAddsUUIDKeyToPlainTable(t *testing.T) {
	t.Parallel()
	storetest.EachBackend(t, func(t *testing.T, d store.Dialect) {
		if d == store.SQLite {
			t.Skip("watermill-sql has no SQLite schema that could create the table first")
		}
		ctx := testContext(t)
		db := storetest.Open(t, d)
		const topic = "created_by_plain_watermill"
		if err := initPlain(ctx, db, plainSchema(d, func(string) string { return "JSON" }), topic); err != nil {
			t.Fatal(err)
		}
		if err := db.InitSchema(ctx, topic); err != nil {
			t.Fatal(err)
		}
		pub, err := db.Publisher(watermill.NopLogger{})
		if err != nil {
			t.Fatal(err)
		}
		defer pub.Close()
		id := uuid.NewString()
		mustPublish(t, pub, topic, message.NewMessage(id, []byte(`{}`)))
		mustPublish(t, pub, topic, message.NewMessage(id, []byte(`{}`)))
		if got := uuids(t, db, topic); len(got) != 1 {
			t.Errorf("rows = %v, want one", got)
		}
	})
}

// TestSubscriberReadsPublished checks that a watermill-sql subscriber reads
// what the publisher wrote, payload and metadata intact and in order, and
// that a consumer group does not get acked messages again.
func TestSubscriberReadsPublished(t *testing.T) {
	t.Parallel()
	storetest.EachBackend(t, func(t *testing.T, d store.Dialect) {
		ctx := testContext(t)
		db := storetest.Open(t, d)
		pub, err := db.Publisher(watermill.NopLogger{})
		if err != nil {
			t.Fatal(err)
		}
		defer pub.Close()

		var sent []*message.Message
		for i := range 3 {
			msg := message.NewMessage(uuid.NewString(), fmt.Appendf(nil, `{"n":%d}`, i))
			msg.Metadata.Set("correlation_id", fmt.Sprint("corr-", i))
			sent = append(sent, msg)
		}
		mustPublish(t, pub, store.CommandsTopic, sent[0])
		mustPublish(t, pub, store.CommandsTopic, sent[1:]...)

		received := consume(ctx, t, db, "monolith", len(sent))
		for i, got := range received {
			want := sent[i]
			if got.UUID != want.UUID || string(got.Payload) != string(want.Payload) ||
				got.Metadata.Get("correlation_id") != want.Metadata.Get("correlation_id") {
				t.Errorf("message %d = %s %s %v, want %s %s %v", i,
					got.UUID, got.Payload, got.Metadata, want.UUID, want.Payload, want.Metadata)
			}
		}

		// Another group starts from the beginning; the first has acked all.
		if got := consume(ctx, t, db, "audit", len(sent)); len(got) != len(sent) {
			t.Errorf("second consumer group got %d messages, want %d", len(got), len(sent))
		}
		next := message.NewMessage(uuid.NewString(), []byte(`{"n":3}`))
		mustPublish(t, pub, store.CommandsTopic, next)
		if got := consume(ctx, t, db, "monolith", 1); got[0].UUID != next.UUID {
			t.Errorf("after its acks the group got %s, want only the new message %s", got[0].UUID, next.UUID)
		}
	})
}

// consume reads n messages from the commands table as consumerGroup, acks
// them and closes the subscriber.
func consume(ctx context.Context, t *testing.T, db *store.DB, consumerGroup string, n int) []*message.Message {
	t.Helper()
	config := db.SubscriberConfig(consumerGroup)
	config.PollInterval = 20 * time.Millisecond
	sub, err := wmsql.NewSubscriber(wmsql.BeginnerFromStdSQL(db.SQL), config, watermill.NopLogger{})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	msgs, err := sub.Subscribe(ctx, store.CommandsTopic)
	if err != nil {
		t.Fatal(err)
	}
	var got []*message.Message
	for len(got) < n {
		select {
		case msg := <-msgs:
			got = append(got, msg)
			msg.Ack()
		case <-ctx.Done():
			t.Fatalf("got %d of %d messages: %v", len(got), n, ctx.Err())
		}
	}
	waitCommitted(ctx, t, db, consumerGroup, store.CommandsTopic, got[len(got)-1].UUID)
	return got
}

// waitCommitted waits until consumerGroup's stored offset has reached the
// message with the given uuid. A watermill-sql subscriber stores the offset
// after the handler's ack, in its own time, and Close at the wrong moment
// drops an ack it has already seen (Close and ack race in its select), so
// the message comes again: delivery is at least once. Tests that close a
// subscriber and then check what the group gets next wait for the offset
// first.
func waitCommitted(ctx context.Context, t *testing.T, db *store.DB, consumerGroup, topic, lastUUID string) {
	t.Helper()
	placeholder := "?"
	if db.Dialect == store.Postgres {
		placeholder = "$1"
	}
	offsetQuery := `SELECT ` + quoteIdent(db.Dialect, "offset") + ` FROM ` + quoteIdent(db.Dialect, "watermill_"+topic) +
		` WHERE uuid = ` + placeholder
	var want int64
	if err := db.SQL.QueryRowContext(ctx, offsetQuery, lastUUID).Scan(&want); err != nil {
		t.Fatal(err)
	}
	ackedQuery := `SELECT COALESCE(MAX(offset_acked), 0) FROM ` + quoteIdent(db.Dialect, "watermill_offsets_"+topic) +
		` WHERE consumer_group = ` + placeholder
	for {
		var acked int64
		if err := db.SQL.QueryRowContext(ctx, ackedQuery, consumerGroup).Scan(&acked); err != nil {
			t.Fatal(err)
		}
		if acked >= want {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("consumer group %s: offset %d not stored (at %d): %v", consumerGroup, want, acked, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// TestSubscriberConstructor covers Subscriber, which tests above bypass to
// shorten the poll interval.
func TestSubscriberConstructor(t *testing.T) {
	t.Parallel()
	storetest.EachBackend(t, func(t *testing.T, d store.Dialect) {
		db := storetest.Open(t, d)
		sub, err := db.Subscriber("monolith", watermill.NopLogger{})
		if err != nil {
			t.Fatal(err)
		}
		if err := sub.Close(); err != nil {
			t.Fatal(err)
		}
	})
}

func TestStoretestIsolatesDatabases(t *testing.T) {
	t.Parallel()
	storetest.EachBackend(t, func(t *testing.T, d store.Dialect) {
		a, b := storetest.URL(t, d), storetest.URL(t, d)
		if a == b {
			t.Fatalf("two calls returned the same database %s", redact.URL(a))
		}
		if d == store.Postgres {
			u, err := url.Parse(a)
			if err != nil || !strings.HasPrefix(u.Query().Get("search_path"), "t_") {
				t.Errorf("URL %s does not select a t_ schema", redact.URL(a))
			}
		}
	})
}

// TestConsumerGroupSharesWorkWithoutDuplicates runs several subscribers of
// one consumer group, each on its own connection pool like separate
// processes, and checks that together they deliver every message exactly
// once and in publish order. On SQLite this is what BEGIN IMMEDIATE buys
// (see SQLiteOffsetsAdapter); the universal suite cannot show it, because it
// reads with deduplication for a Pub/Sub that does not claim exactly-once
// delivery.
func TestConsumerGroupSharesWorkWithoutDuplicates(t *testing.T) {
	t.Parallel()
	storetest.EachBackend(t, func(t *testing.T, d store.Dialect) {
		ctx := testContext(t)
		databaseURL := storetest.URL(t, d)
		db, err := store.Open(ctx, databaseURL)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if err := db.InitSchema(ctx, store.CommandsTopic); err != nil {
			t.Fatal(err)
		}

		const messages, subscribers = 300, 4
		pub, err := db.Publisher(watermill.NopLogger{})
		if err != nil {
			t.Fatal(err)
		}
		defer pub.Close()
		var sent []string
		for i := 0; i < messages; i += 10 {
			var batch []*message.Message
			for range 10 {
				id := uuid.NewString()
				sent = append(sent, id)
				batch = append(batch, message.NewMessage(id, []byte(`{}`)))
			}
			mustPublish(t, pub, store.CommandsTopic, batch...)
		}

		delivered := make(chan string, 2*messages)
		var subs []*wmsql.Subscriber
		for range subscribers {
			subDB, err := store.Open(ctx, databaseURL)
			if err != nil {
				t.Fatal(err)
			}
			defer subDB.Close()
			config := subDB.SubscriberConfig("monolith")
			config.PollInterval = 20 * time.Millisecond
			sub, err := wmsql.NewSubscriber(wmsql.BeginnerFromStdSQL(subDB.SQL), config, watermill.NopLogger{})
			if err != nil {
				t.Fatal(err)
			}
			subs = append(subs, sub)
			msgs, err := sub.Subscribe(ctx, store.CommandsTopic)
			if err != nil {
				t.Fatal(err)
			}
			go func() {
				for msg := range msgs {
					delivered <- msg.UUID
					msg.Ack()
				}
			}()
		}

		var got []string
		seen := map[string]bool{}
		for len(seen) < messages {
			select {
			case id := <-delivered:
				got = append(got, id)
				seen[id] = true
			case <-ctx.Done():
				t.Fatalf("%d of %d messages delivered: %v", len(seen), messages, ctx.Err())
			}
		}
		// Once the group's offset is stored nothing is left to deliver, and
		// Close waits for the subscribers to stop, so anything delivered
		// twice is in the channel by now.
		waitCommitted(ctx, t, db, "monolith", store.CommandsTopic, sent[len(sent)-1])
		for _, sub := range subs {
			if err := sub.Close(); err != nil {
				t.Fatal(err)
			}
		}
		for len(delivered) > 0 {
			got = append(got, <-delivered)
		}
		if !slices.Equal(got, sent) {
			t.Errorf("%d deliveries of %d messages; want each once, in publish order", len(got), messages)
		}
	})
}

// TestCreatedAtScansAsTime: created_at is filled in by the database and
// scans into a time.Time on every backend (MySQL needs parseTime, SQLite a
// TIMESTAMP column the driver parses).
func TestCreatedAtScansAsTime(t *testing.T) {
	t.Parallel()
	storetest.EachBackend(t, func(t *testing.T, d store.Dialect) {
		db := storetest.Open(t, d)
		pub, err := db.Publisher(watermill.NopLogger{})
		if err != nil {
			t.Fatal(err)
		}
		defer pub.Close()
		before := time.Now().Add(-2 * time.Second) // MySQL TIMESTAMP has whole seconds
		mustPublish(t, pub, store.PoisonTopic, message.NewMessage(uuid.NewString(), []byte("x")))

		var createdAt time.Time
		err = db.SQL.QueryRowContext(testContext(t),
			"SELECT created_at FROM "+quoteIdent(d, "watermill_"+store.PoisonTopic)).Scan(&createdAt)
		if err != nil {
			t.Fatal(err)
		}
		if createdAt.Before(before) || createdAt.After(time.Now().Add(2*time.Second)) {
			t.Errorf("created_at = %s, want about now (%s)", createdAt, time.Now())
		}
	})
}
