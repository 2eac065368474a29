package store

import (
	"errors"
	"strings"
	"testing"

	wmsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
)

func TestPostgresUUIDIndexName(t *testing.T) {
	t.Parallel()
	if got := postgresUUIDIndexName(CommandsTopic); got != "watermill_profile_sync_commands_uuid_key" {
		t.Errorf("index name = %q", got)
	}
	// Names PostgreSQL would truncate to the same 63 bytes must stay apart.
	long := strings.Repeat("x", 60)
	a, b := postgresUUIDIndexName(long+"-1"), postgresUUIDIndexName(long+"-2")
	if len(a) > postgresMaxIdentifier || len(b) > postgresMaxIdentifier || a == b {
		t.Errorf("index names %q and %q: want distinct and at most %d bytes", a, b, postgresMaxIdentifier)
	}
}

func TestInsertQueries(t *testing.T) {
	t.Parallel()
	msgs := message.Messages{message.NewMessage("a", []byte(`{}`)), message.NewMessage("b", []byte(`{}`))}
	tests := []struct {
		dialect Dialect
		suffix  string
	}{
		{Postgres, `ON CONFLICT ("uuid") DO NOTHING`},
		{MySQL, "ON DUPLICATE KEY UPDATE `uuid` = `uuid`"},
		{SQLite, `ON CONFLICT ("uuid") DO NOTHING`},
	}
	for _, tt := range tests {
		schema := (&DB{Dialect: tt.dialect}).SchemaAdapter()
		q, err := schema.InsertQuery(wmsql.InsertQueryParams{Topic: CommandsTopic, Msgs: msgs})
		if err != nil {
			t.Fatalf("%s: %v", tt.dialect, err)
		}
		if !strings.HasSuffix(q.Query, tt.suffix) || len(q.Args) != 6 {
			t.Errorf("%s: insert = %q with %d args, want suffix %q and 6 args", tt.dialect, q.Query, len(q.Args), tt.suffix)
		}
		if strings.Contains(strings.ToUpper(q.Query), "IGNORE") {
			t.Errorf("%s: insert %q uses IGNORE, which hides other errors", tt.dialect, q.Query)
		}
		if _, err := schema.InsertQuery(wmsql.InsertQueryParams{Topic: CommandsTopic}); !errors.Is(err, errNoMessages) {
			t.Errorf("%s: insert without messages: %v, want errNoMessages", tt.dialect, err)
		}
	}
}

func TestPayloadTypes(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		schema interface{ PayloadColumnType(string) string }
		topic  string
		want   string
	}{
		{newPostgresSchema(), CommandsTopic, "JSON"},
		{newPostgresSchema(), PoisonTopic, "BYTEA"},
		{newMySQLSchema(), CommandsTopic, "JSON"},
		{newMySQLSchema(), PoisonTopic, "LONGBLOB"},
	} {
		if got := tt.schema.PayloadColumnType(tt.topic); got != tt.want {
			t.Errorf("%T payload type for %s = %s, want %s", tt.schema, tt.topic, got, tt.want)
		}
	}
}
