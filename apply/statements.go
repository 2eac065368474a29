// Package apply is the monolith's side of the contract: it applies
// profile-sync commands to the tables user_identities and user_profiles so
// that they equal the Auth Service's users. Its SQL is also the recipe for a
// monolith that applies the commands in its own code (README, "Applying
// commands"): Statements is that recipe, and Applier runs nothing else.
package apply

import (
	"strconv"
	"strings"
	"time"

	"github.com/social/user-events-router/store"
)

// Tables the applier keeps in the monolith's database.
const (
	IdentitiesTable = "user_identities"
	ProfilesTable   = "user_profiles"
)

// OrderLayout writes occurred_at in the tables: UTC, fixed width, so that
// text order is time order on every backend.
const OrderLayout = "2006-01-02T15:04:05.000000000Z07:00"

// Recipe is the SQL that applies one command, by command type, in
// PostgreSQL and SQLite syntax with named parameters (:user_id, …, the
// command's fields; :occurred_at in OrderLayout). MySQL and MariaDB write
// "ON CONFLICT (user_id) DO NOTHING" as "ON DUPLICATE KEY UPDATE user_id =
// user_id". It is the README's recipe, word for word (a test holds them
// together), and Applier runs exactly this.
//
// A command's statements run in order, in one transaction. Each is a no-op
// when the command is not newer than what the tables hold — order is
// (generation, occurred_at, user_sequence) — so a repeat, a stale copy or
// a command of an older registration changes nothing, whatever the order
// of arrival. A command written before the ledger has no generation: it
// counts as generation 1.
var Recipe = map[string][]string{
	// The identity is inserted when absent, then replaced when the command
	// is newer: of a newer registration, or of the same living one and
	// later. The profile defaults are inserted when absent (never
	// overwriting a profile the monolith has changed since), or replace the
	// profile of an older registration.
	"create_profile": {insertIdentity, updateIdentity,
		`INSERT INTO user_profiles (user_id, generation, display_name, avatar, bio)
VALUES (:user_id, :generation, :display_name, :avatar, :bio)
ON CONFLICT (user_id) DO NOTHING`,
		`UPDATE user_profiles SET generation = :generation, display_name = :display_name, avatar = :avatar, bio = :bio
WHERE user_id = :user_id AND generation < :generation`},
	// The identity only; a user never seen before is created (its
	// create_profile came late, or never).
	"sync_identity": {insertIdentity, updateIdentity},
	// A tombstone: deleted_at set (the deletion's occurred_at), e-mail,
	// username and profile erased, the rows kept so that no late command of
	// that registration brings the user back.
	"delete_profile": {
		`INSERT INTO user_identities (user_id, email, username, deleted_at, generation, occurred_at, user_sequence)
VALUES (:user_id, '', '', :deleted_at, :generation, :occurred_at, :user_sequence)
ON CONFLICT (user_id) DO NOTHING`,
		`UPDATE user_identities
SET email = '', username = '', deleted_at = :deleted_at, generation = :generation,
    occurred_at = :occurred_at, user_sequence = :user_sequence
WHERE user_id = :user_id AND (generation < :generation OR (generation = :generation AND deleted_at IS NULL))`,
		`INSERT INTO user_profiles (user_id, generation, display_name, avatar, bio)
VALUES (:user_id, :generation, '', '', '')
ON CONFLICT (user_id) DO NOTHING`,
		`UPDATE user_profiles SET generation = :generation, display_name = '', avatar = '', bio = ''
WHERE user_id = :user_id AND (generation < :generation
  OR (generation = :generation AND (display_name <> '' OR avatar <> '' OR bio <> '')))`,
	},
}

const (
	insertIdentity = `INSERT INTO user_identities (user_id, email, username, deleted_at, generation, occurred_at, user_sequence)
VALUES (:user_id, :email, :username, NULL, :generation, :occurred_at, :user_sequence)
ON CONFLICT (user_id) DO NOTHING`
	updateIdentity = `UPDATE user_identities
SET email = :email, username = :username, deleted_at = NULL, generation = :generation,
    occurred_at = :occurred_at, user_sequence = :user_sequence
WHERE user_id = :user_id AND (generation < :generation OR (generation = :generation AND deleted_at IS NULL
  AND (occurred_at < :occurred_at OR (occurred_at = :occurred_at AND user_sequence < :user_sequence))))`
)

// compiled is a recipe statement in a dialect's syntax, with the names of
// its positional parameters.
type compiled struct {
	query string
	names []string
}

// compile turns a recipe statement into dialect d's placeholders (? or $n)
// and insert-if-absent syntax.
func compile(stmt string, d store.Dialect) compiled {
	if d == store.MySQL {
		stmt = strings.ReplaceAll(stmt, "ON CONFLICT (user_id) DO NOTHING", "ON DUPLICATE KEY UPDATE user_id = user_id")
	}
	var b strings.Builder
	var names []string
	for i := 0; i < len(stmt); i++ {
		if stmt[i] != ':' {
			b.WriteByte(stmt[i])
			continue
		}
		j := i + 1
		for j < len(stmt) && (stmt[j] == '_' || 'a' <= stmt[j] && stmt[j] <= 'z') {
			j++
		}
		names = append(names, stmt[i+1:j])
		if d == store.Postgres {
			b.WriteString("$" + strconv.Itoa(len(names)))
		} else {
			b.WriteByte('?')
		}
		i = j - 1
	}
	return compiled{query: b.String(), names: names}
}

// DDL creates the two tables on dialect d, if absent.
func DDL(d store.Dialect) []string {
	deletedAt, text := "TIMESTAMP NULL", "TEXT"
	switch d {
	case store.Postgres:
		deletedAt = "TIMESTAMPTZ NULL"
	case store.MySQL:
		deletedAt = "DATETIME(6) NULL"
	}
	return []string{
		`CREATE TABLE IF NOT EXISTS user_identities (
  user_id       VARCHAR(36) NOT NULL PRIMARY KEY,
  email         ` + text + ` NOT NULL,
  username      ` + text + ` NOT NULL,
  deleted_at    ` + deletedAt + `,
  generation    INTEGER NOT NULL,
  occurred_at   VARCHAR(30) NOT NULL,
  user_sequence BIGINT NOT NULL
)`,
		`CREATE TABLE IF NOT EXISTS user_profiles (
  user_id      VARCHAR(36) NOT NULL PRIMARY KEY,
  generation   INTEGER NOT NULL,
  display_name ` + text + ` NOT NULL,
  avatar       ` + text + ` NOT NULL,
  bio          ` + text + ` NOT NULL
)`,
	}
}

// orderAt writes t as the tables order it.
func orderAt(t time.Time) string {
	return t.UTC().Format(OrderLayout)
}
