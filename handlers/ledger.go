package handlers

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"strconv"
	"time"

	"github.com/social/user-events-router/schema"
)

// Ledger is what the router remembers of one user, to tell a new event from
// a copy of one it has already carried (DESIGN §3, "When two events are the
// same"). The producer gives no event id and re-stamps every retry, so
// content alone cannot decide: a registration tried three times arrives as
// three created events with three timestamps, and A → B → A within one
// second arrives as two byte-identical events that are both real. The
// ledger decides instead from what it has seen of the user:
//
//   - created: one create_profile per registration. The user id is the
//     registration's identity; a created newer than the user's deletion
//     opens a new registration (Generation + 1).
//   - deleted: one delete_profile per registration.
//   - updated: one sync_identity per event that is newer than, or as new as,
//     the newest event carried for the user. An older one (a buffered copy
//     arriving after a newer event) is stale: the consumer would ignore it,
//     so it is not written. Within the newest second, a byte-identical
//     event by the other path (HTTP for NATS, NATS for HTTP) is taken as
//     the same event; by the same path it is a new one.
//   - any action: a JetStream redelivery (same stream sequence, same bytes)
//     is the same event; and within the newest second, a JetStream message
//     the stream holds before one already carried is older than it (it was
//     redelivered after a crash while a later one was carried): stale.
//
// Each command it lets through gets the user's next Sequence, which with
// Generation and occurred_at orders the user's commands for a consumer.
// The ledger is stored per user in the router's database and updated in
// the transaction that writes the command it decides (store.CommitState).
type Ledger struct {
	// Generation counts the user's registrations; 0 = never seen.
	Generation int `json:"g,omitempty"`
	// Created: a create_profile was written for Generation.
	Created bool `json:"c,omitempty"`
	// Deleted: a delete_profile was written for Generation.
	Deleted bool `json:"d,omitempty"`
	// Sequence counts the commands written for the user, all generations.
	Sequence uint64 `json:"s,omitempty"`
	// Newest is the newest occurred_at of a command written for the user.
	Newest time.Time `json:"t,omitzero"`
	// First is the oldest timestamp of an update or a deletion seen for
	// Generation, carried or not (zero: none seen). Every try of a
	// registration is stamped before the registration's other events, so a
	// created stamped after First is not one of them.
	First time.Time `json:"f,omitzero"`
	// Reg is the identity hash (IdentityHash) of the first registration
	// seen for Generation, carried or not (zero: none seen). Tries of one
	// registration carry one identity; a new registration, another.
	Reg uint64 `json:"k,omitempty"`
	// Recent holds the arrivals carried at exactly Newest (bounded by
	// maxRecent), for telling copies and redeliveries within one second.
	Recent []Arrival `json:"r,omitempty"`
}

// maxRecent bounds Ledger.Recent: the events of one user carried within one
// second. Past it the oldest are forgotten, and a redelivery of one of those
// would be written again; no real user produces 32 events in a second.
const maxRecent = 32

// Paths an arrival can take, as the ledger tells them apart.
const (
	PathNATS = "n"
	PathHTTP = "h"
)

// Arrival is one arrival of an event, as the ledger sees it.
type Arrival struct {
	Kind schema.Kind `json:"-"`
	At   time.Time   `json:"-"`
	// Hash is the hash of the event's canonical content (ContentHash).
	Hash uint64 `json:"h"`
	// Ident is the hash of the event's identity without its timestamp
	// (IdentityHash): the same for every try of one registration.
	Ident uint64 `json:"-"`
	// Path is PathNATS or PathHTTP. A replay counts as the path its entry
	// first came by.
	Path string `json:"p"`
	// StreamSeq is the JetStream stream sequence (0 when unknown).
	StreamSeq uint64 `json:"q,omitempty"`
	// MayHold: the transport can deliver this arrival again later (a
	// JetStream message on a delivery that is not its last), so the ledger
	// may answer VerdictHold.
	MayHold bool `json:"-"`
}

// Why the ledger decided as it did; also the outcome label of a message
// that wrote nothing.
const (
	VerdictNew          = "new"
	VerdictRedelivery   = "redelivery"         // the same JetStream message again
	VerdictCopy         = "copy"               // the same event by the other path
	VerdictRegistered   = "already_registered" // another try of a carried registration
	VerdictDeleted      = "already_deleted"    // the user's deletion is carried
	VerdictStale        = "stale"              // older than the newest event carried for the user
	VerdictAfterDeleted = "after_deletion"     // an update of a deleted user
	// VerdictHold: a registration not older than everything carried for
	// the user's living registration. It is either another try of that
	// registration, re-stamped late (DESIGN §2), or a new registration
	// whose deletion, published before it, has not come back yet (a crashed
	// process held it until its ack wait ran out). Delivered again after
	// the ack wait, it is decided with that deletion carried, if there was
	// one. Also a registration in the second of a deletion that opened the
	// user's ledger: the deleted registration's own created may still come
	// back, and once it has, this one is a new registration.
	VerdictHold = "held_back"
)

// Verdict is what the ledger decided for one arrival.
type Verdict struct {
	// Write: the arrival yields a command, with these Generation and
	// Sequence. Otherwise it is already carried (or superseded) and Why
	// says how.
	Write      bool
	Why        string
	Generation int
	Sequence   uint64
}

// ParseLedger reads a stored ledger; nil or empty is a user never seen.
func ParseLedger(state []byte) (Ledger, error) {
	var l Ledger
	if len(state) == 0 {
		return l, nil
	}
	if err := json.Unmarshal(state, &l); err != nil {
		return Ledger{}, fmt.Errorf("read ledger: %w", err)
	}
	return l, nil
}

// Bytes is the ledger as stored: what encoding/json makes of it, byte for
// byte (TestLedgerBytesIsJSON), written by hand because it is written for
// every event and reflection made it a tenth of the handler chain's CPU.
func (l Ledger) Bytes() []byte {
	for _, r := range l.Recent {
		if !plainPath(r.Path) {
			b, _ := json.Marshal(l) // plain fields only: cannot fail
			return b
		}
	}
	b := make([]byte, 0, 64+len(l.Recent)*40)
	b = append(b, '{')
	field := func(name string) {
		if len(b) > 1 {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = append(b, name...)
		b = append(b, '"', ':')
	}
	if l.Generation != 0 {
		field("g")
		b = strconv.AppendInt(b, int64(l.Generation), 10)
	}
	if l.Created {
		field("c")
		b = append(b, "true"...)
	}
	if l.Deleted {
		field("d")
		b = append(b, "true"...)
	}
	if l.Sequence != 0 {
		field("s")
		b = strconv.AppendUint(b, l.Sequence, 10)
	}
	for _, t := range []struct {
		name string
		at   time.Time
	}{{"t", l.Newest}, {"f", l.First}} {
		if t.at.IsZero() {
			continue
		}
		j, err := t.at.MarshalJSON()
		if err != nil { // a year outside 0–9999: encoding/json's error path
			b, _ := json.Marshal(l)
			return b
		}
		field(t.name)
		b = append(b, j...)
	}
	if l.Reg != 0 {
		field("k")
		b = strconv.AppendUint(b, l.Reg, 10)
	}
	if len(l.Recent) > 0 {
		field("r")
		b = append(b, '[')
		for i, r := range l.Recent {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"h":`...)
			b = strconv.AppendUint(b, r.Hash, 10)
			b = append(b, `,"p":"`...)
			b = append(b, r.Path...)
			b = append(b, '"')
			if r.StreamSeq != 0 {
				b = append(b, `,"q":`...)
				b = strconv.AppendUint(b, r.StreamSeq, 10)
			}
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	return append(b, '}')
}

// plainPath: a path JSON writes as it is, between quotes (letters only).
func plainPath(p string) bool {
	for i := range len(p) {
		if c := p[i]; c < 'a' || c > 'z' {
			return false
		}
	}
	return true
}

// Decide records a and says whether it yields a command. It is pure: the
// same ledger and arrival always give the same verdict and the same ledger.
func (l *Ledger) Decide(a Arrival) Verdict {
	gen := l.Generation
	v := l.decide(a)
	if l.Generation == gen && gen > 0 && v.Why != VerdictHold {
		// What was seen of this registration, carried or not (a held
		// arrival is not decided yet: it comes again).
		switch {
		case a.Kind == schema.KindRegistration:
			if l.Reg == 0 && a.Ident != 0 && !l.legacy() {
				l.Reg = a.Ident
			}
		case !l.legacy() && (l.First.IsZero() || a.At.Before(l.First)):
			l.First = a.At
		}
	}
	return v
}

func (l *Ledger) decide(a Arrival) Verdict {
	atNewest := a.At.Equal(l.Newest)
	if atNewest && a.Path == PathNATS && a.StreamSeq != 0 && l.has(a) {
		return Verdict{Why: VerdictRedelivery}
	}
	switch a.Kind {
	case schema.KindRegistration:
		switch {
		case l.Generation == 0:
			return l.open(a)
		case l.Deleted && a.At.Before(l.Newest):
			// A try of the deleted registration, arriving late.
			return Verdict{Why: VerdictStale}
		case l.Deleted && l.overtaken(a):
			// Published before the deletion that was carried first (a
			// redelivery after a crash): that registration's copy.
			return Verdict{Why: VerdictStale}
		case l.Deleted && atNewest && !l.Created && l.lateTry(a):
			// Deleted in this very second and its registration never
			// carried: this is a try of that registration, late.
			return Verdict{Why: VerdictStale}
		case l.Deleted && atNewest && !l.Created && l.unknownRegistration():
			// Nothing of the deleted registration seen but its deletion:
			// its own created may still be held by a crashed process, and
			// once it is back this one is decided against it. If it cannot
			// wait, it is taken for that registration, late.
			if a.MayHold {
				return Verdict{Why: VerdictHold}
			}
			return Verdict{Why: VerdictStale}
		case l.Deleted:
			return l.open(a)
		case l.Created && a.MayHold && !a.At.Before(l.Newest):
			return Verdict{Why: VerdictHold}
		case l.Created:
			if atNewest {
				// Kept so that a deletion of this second published before
				// it, arriving after it, is known to be older.
				l.note(a)
			}
			return Verdict{Why: VerdictRegistered}
		default:
			// The identity came first (sync_identity); its profile now.
			l.Created = true
			return l.write(a)
		}
	case schema.KindDeletion:
		switch {
		case l.Generation == 0:
			v := l.open(a)
			l.Deleted = true
			return v
		case l.Deleted:
			return Verdict{Why: VerdictDeleted}
		case a.At.Before(l.Newest), l.overtaken(a):
			// Older than an event of the living registration: the deletion
			// of an earlier one, arriving late.
			return Verdict{Why: VerdictStale}
		case atNewest && l.copyByOtherPath(a):
			l.note(a)
			return Verdict{Why: VerdictCopy}
		}
		l.Deleted = true
		return l.write(a)
	default: // schema.KindIdentity
		switch {
		case l.Generation == 0:
			// Its created never came (the producer gives up after three
			// tries): the identity starts here.
			return l.open(a)
		case l.Deleted:
			return Verdict{Why: VerdictAfterDeleted}
		case a.At.Before(l.Newest), l.overtaken(a):
			return Verdict{Why: VerdictStale}
		case atNewest && l.copyByOtherPath(a):
			l.note(a)
			return Verdict{Why: VerdictCopy}
		}
		return l.write(a)
	}
}

// legacy: a ledger stored before First and Reg were kept (nothing says
// what was seen of its registration).
func (l *Ledger) legacy() bool { return l.Generation > 0 && l.First.IsZero() && l.Reg == 0 }

// lateTry reports whether a registration arriving in the second of the
// carried deletion of a registration whose created was never carried is a
// try of that registration: when nothing else of it is known (a ledger
// stored before this was kept), or when a registration of it was seen
// with the same identity and no update or deletion of it before this
// second (its tries all precede those).
func (l *Ledger) lateTry(a Arrival) bool {
	if l.legacy() {
		return true
	}
	if !l.First.IsZero() && l.First.Before(l.Newest) {
		return false
	}
	return l.Reg != 0 && l.Reg == a.Ident
}

// unknownRegistration: of the deleted registration nothing was seen
// before its deletion's second, and no created of it at all.
func (l *Ledger) unknownRegistration() bool {
	return l.Reg == 0 && (l.First.IsZero() || !l.First.Before(l.Newest))
}

// open starts a new registration with a.
func (l *Ledger) open(a Arrival) Verdict {
	l.Generation++
	l.Created = a.Kind == schema.KindRegistration
	l.Deleted = false
	l.First, l.Reg = time.Time{}, 0
	if a.Kind == schema.KindRegistration {
		l.Reg = a.Ident
	} else {
		l.First = a.At
	}
	return l.write(a)
}

// write gives a the user's next sequence number.
func (l *Ledger) write(a Arrival) Verdict {
	l.Sequence++
	if a.At.After(l.Newest) {
		l.Newest = a.At
		l.Recent = nil
	}
	if a.At.Equal(l.Newest) {
		l.note(a)
	}
	return Verdict{Write: true, Why: VerdictNew, Generation: l.Generation, Sequence: l.Sequence}
}

func (l *Ledger) note(a Arrival) {
	if len(l.Recent) == maxRecent {
		l.Recent = append(l.Recent[:0], l.Recent[1:]...)
	}
	l.Recent = append(l.Recent, Arrival{Hash: a.Hash, Path: a.Path, StreamSeq: a.StreamSeq})
}

// overtaken reports whether a is a JetStream message of the newest second
// that the stream holds before one already carried: it was published
// earlier and arrives later (redelivered after a crash of the process that
// held it, while a later one went to a new process). Within one second the
// stream's order is the producer's order, the only one there is.
func (l *Ledger) overtaken(a Arrival) bool {
	if a.Path != PathNATS || a.StreamSeq == 0 || !a.At.Equal(l.Newest) {
		return false
	}
	for _, r := range l.Recent {
		if r.Path == PathNATS && r.StreamSeq > a.StreamSeq {
			return true
		}
	}
	return false
}

// has reports whether the JetStream message a was carried already.
func (l *Ledger) has(a Arrival) bool {
	for _, r := range l.Recent {
		if r.Path == PathNATS && r.StreamSeq == a.StreamSeq && r.Hash == a.Hash {
			return true
		}
	}
	return false
}

// copyByOtherPath reports whether a pairs with an arrival of the same
// content by the other path that has no partner yet: the k-th HTTP arrival
// of some bytes is the same event as their k-th JetStream arrival.
func (l *Ledger) copyByOtherPath(a Arrival) bool {
	same, other := 0, 0
	for _, r := range l.Recent {
		if r.Hash != a.Hash {
			continue
		}
		if r.Path == a.Path {
			same++
		} else {
			other++
		}
	}
	return same < other
}

// ContentHash hashes what decides an event's effect: its canonical
// content (action, identity, timestamp, profile defaults), not how it
// travelled.
func ContentHash(ev schema.UserEvent) uint64 {
	h := fnv.New64a()
	_, _ = h.Write(canonical(ev))
	return h.Sum64()
}

// IdentityHash hashes what a registration's tries have in common: the
// identity and profile defaults, without the timestamp each try renews
// (never 0).
func IdentityHash(ev schema.UserEvent) uint64 {
	h := fnv.New64a()
	for _, f := range [...]string{ev.ID, ev.Email, ev.Username, ev.DisplayName, ev.Avatar} {
		_, _ = h.Write([]byte(f))
		_, _ = h.Write([]byte{0})
	}
	return max(h.Sum64(), 1)
}
