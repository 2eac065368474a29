// Package applytest generates user histories as the real Auth Service
// delivers them, and compares the monolith's users with the Auth
// Service's: the model that apply's tests and the convergence fault suite
// share.
package applytest

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/social/user-events-router/schema"
)

// User is what the Auth Service ends up holding of one user (a deleted
// one has no e-mail or username: the monolith's tombstone erases them).
type User struct {
	Email, Username string
	Deleted         bool
}

// Delivery is one arrival of an event at the router: its body, by HTTP or
// by NATS; NATS deliveries of one message share StreamSeq (a redelivery).
type Delivery struct {
	Body      []byte
	HTTP      bool
	StreamSeq uint64
}

// History makes one user's events as the Auth Service emits them and the
// deliveries the router sees: every try re-stamped, by NATS and HTTP, the
// buffered NATS copy of a try arriving late, JetStream redeliveries, and
// same-second bursts (A → B → A, created → deleted → created) by one path.
// It returns the deliveries in arrival order and what the Auth Service
// holds at the end. Retries never cross a later event of the user: for
// those the producer's own timestamps would reorder it (DESIGN §3, "What
// no data can decide").
func History(rng *rand.Rand, id string, t0 time.Time, seq *uint64) ([]Delivery, User) {
	var out []Delivery
	var late []Delivery // buffered copies, released at random later points
	at := t0
	var final User
	emit := func(action, email, username string, burst bool) {
		tries := 1
		if !burst && rng.IntN(3) == 0 {
			tries = 1 + rng.IntN(3)
		}
		for try := range tries {
			stamp := at.Add(time.Duration(try*3) * time.Second)
			body, _ := json.Marshal(schema.ProducerEvent{ID: id, Email: email, Username: username, Action: action,
				Timestamp: stamp.UTC().Format(time.RFC3339), ServiceName: schema.ProducerServiceName})
			*seq++
			nats := Delivery{Body: body, StreamSeq: *seq}
			switch {
			case burst:
				out = append(out, nats)
			case rng.IntN(2) == 0: // NATS took it
				out = append(out, nats)
			default: // NATS timed out (its copy is buffered), HTTP took it
				out = append(out, Delivery{Body: body, HTTP: true})
				late = append(late, nats)
			}
			if rng.IntN(4) == 0 { // a redelivery (lost ack)
				late = append(late, out[len(out)-1])
			}
		}
		at = at.Add(time.Duration(3*tries+10) * time.Second)
		if burst {
			at = at.Add(-time.Duration(3*tries+10) * time.Second) // the same second
		}
		for len(late) > 0 && rng.IntN(2) == 0 {
			i := rng.IntN(len(late))
			out = append(out, late[i])
			late = append(late[:i], late[i+1:]...)
		}
	}
	email := func() string { return fmt.Sprintf("%s+%d@example.com", id[:8], rng.IntN(1000)) }
	user := func() string { return fmt.Sprintf("u%d_%s", rng.IntN(1000), id[:4]) }

	e, u := email(), user()
	if rng.IntN(5) == 0 {
		e = "" // a Facebook sign-up
	}
	emit("created", e, u, false)
	final = User{Email: e, Username: u}
	for range rng.IntN(4) {
		if rng.IntN(4) == 0 { // A → B → A in one second
			a, b := email(), email()
			emit("updated", a, final.Username, true)
			emit("updated", b, final.Username, true)
			emit("updated", a, final.Username, true)
			at = at.Add(time.Second)
			final.Email = a
			continue
		}
		final.Email, final.Username = email(), user()
		emit("updated", final.Email, final.Username, false)
	}
	switch rng.IntN(4) {
	case 0:
		emit("deleted", final.Email, final.Username, false)
		final = User{Deleted: true}
	case 1: // deleted and registered again (same id, as DESIGN §3 allows)
		emit("deleted", final.Email, final.Username, rng.IntN(2) == 0)
		e, u := email(), user()
		emit("created", e, u, false)
		final = User{Email: e, Username: u}
	}
	out = append(out, late...)
	return out, final
}

// Identities reads the monolith's user_identities.
func Identities(db *sql.DB) (map[string]User, error) {
	rows, err := db.Query(`SELECT user_id, email, username, deleted_at IS NOT NULL FROM user_identities`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]User{}
	for rows.Next() {
		var id string
		var u User
		if err := rows.Scan(&id, &u.Email, &u.Username, &u.Deleted); err != nil {
			return nil, err
		}
		out[id] = u
	}
	return out, rows.Err()
}

// Diff compares the monolith's identities with the Auth Service's users and
// reports as the convergence test does.
func Diff(model, got map[string]User) (summary string, equal bool) {
	eq, missing, extra, wrong := 0, 0, 0, 0
	for id, m := range model {
		g, ok := got[id]
		switch {
		case !ok:
			missing++
		case g != m:
			wrong++
		default:
			eq++
		}
	}
	for id := range got {
		if _, ok := model[id]; !ok {
			extra++
		}
	}
	return fmt.Sprintf("convergence: users=%d equal=%d missing=%d extra=%d wrong=%d", len(model), eq, missing, extra, wrong),
		eq == len(model) && extra == 0
}
