package store_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"

	"github.com/social/user-events-router/store"
	"github.com/social/user-events-router/store/storetest"
)

// base is the time the test queues' failures count from.
var base = time.Date(2026, 11, 28, 13, 0, 0, 0, time.UTC)

// entry is a poison entry keyed by name (its id is derived from it), last
// failing minutes after base.
func entry(name string, minutes int, set func(*store.PoisonEntry)) store.PoisonEntry {
	at := base.Add(time.Duration(minutes) * time.Minute)
	e := store.PoisonEntry{
		ID:            uuid.NewSHA1(uuid.NameSpaceOID, []byte(name)).String(),
		Payload:       []byte(`{"name":"` + name + `"}`),
		Reason:        "decode user.events.created: invalid event: email: must not be empty",
		Class:         "permanent",
		Subject:       "user.events.created",
		Handler:       "user_created",
		Ingress:       "nats",
		CorrelationID: "corr-" + name,
		Stream:        "USER_EVENTS",
		StreamSeq:     7,
		DeliveryCount: 1,
		FirstFailure:  at,
		LastFailure:   at,
	}
	if set != nil {
		set(&e)
	}
	return e
}

func put(t *testing.T, db *store.DB, entries ...store.PoisonEntry) {
	t.Helper()
	for _, e := range entries {
		if err := db.PutPoison(testContext(t), e); err != nil {
			t.Fatalf("PutPoison(%s): %v", e.ID, err)
		}
	}
}

func ids(entries []store.PoisonEntry) []string {
	out := make([]string, len(entries))
	for i, e := range entries {
		out[i] = e.ID
	}
	return out
}

func list(t *testing.T, db *store.DB, r store.PoisonPageRequest) store.PoisonPage {
	t.Helper()
	page, err := db.ListPoison(testContext(t), r)
	if err != nil {
		t.Fatalf("ListPoison(%+v): %v", r, err)
	}
	return page
}

// TestPoisonFilters runs every filter on every backend, newest first and
// oldest first, and checks each page's count.
func TestPoisonFilters(t *testing.T) {
	t.Parallel()
	const userA, userB = "11111111-1111-4111-8111-111111111111", "22222222-2222-4222-8222-222222222222"
	storetest.EachBackend(t, func(t *testing.T, d store.Dialect) {
		db := storetest.Open(t, d)
		email := entry("email", 10, func(e *store.PoisonEntry) {
			e.Reason = `decode user.events.created: invalid event: email: not an email address: "x" (domain has no dot)`
			e.Payload = []byte(`{"id":"` + userA + `","action":"created","email":"x"}`)
		})
		email2 := entry("email2", 20, func(e *store.PoisonEntry) {
			e.Reason = `decode user.events.updated: invalid event: email: not an email address: "y" (domain has no dot)`
			e.Subject = "user.events.updated"
			e.Payload = []byte(`{"id":"` + userB + `","action":"updated","email":"y"}`)
		})
		panicked := entry("panic", 30, func(e *store.PoisonEntry) {
			e.Class, e.Reason, e.Stack, e.UserID = "panic", "panic: boom", "goroutine 1 [running]:", userA
		})
		httpKnown := entry("http-known", 40, func(e *store.PoisonEntry) {
			e.Subject, e.Ingress, e.StreamSeq, e.DeliveryCount, e.Stream = "", "http", 0, 0, ""
			e.Payload = []byte(`{"id":"` + userB + `","action":"deleted","email":7}`)
			e.Reason = "decode event: invalid event: email: must be a string, got number"
		})
		httpUnknown := entry("http-garbage", 50, func(e *store.PoisonEntry) {
			e.Subject, e.Ingress, e.StreamSeq, e.DeliveryCount, e.Stream = "", "http", 0, 0, ""
			e.Payload = []byte("\x00\xff not json")
			e.Reason = "decode event: invalid event: body is not valid UTF-8 at byte 2"
		})
		exhausted := entry("exhausted", 60, func(e *store.PoisonEntry) {
			e.Class, e.Reason, e.DeliveryCount = "transient_exhausted", "commit command: database is locked (SQLITE_BUSY)", 3
		})
		put(t, db, email, email2, panicked, httpKnown, httpUnknown, exhausted)
		all := []store.PoisonEntry{exhausted, httpUnknown, httpKnown, panicked, email2, email} // newest first

		for _, tt := range []struct {
			name string
			f    store.PoisonFilter
			want []store.PoisonEntry
		}{
			{"none", store.PoisonFilter{}, all},
			{"class", store.PoisonFilter{Class: "permanent"}, []store.PoisonEntry{httpUnknown, httpKnown, email2, email}},
			{"subject", store.PoisonFilter{Subject: "user.events.created"}, []store.PoisonEntry{exhausted, panicked, email}},
			// HTTP entries have no subject: the one the event would have had, or (http).
			{"subject an HTTP event would have had", store.PoisonFilter{Subject: "user.events.deleted"}, []store.PoisonEntry{httpKnown}},
			{"no subject", store.PoisonFilter{Subject: store.NoSubject}, []store.PoisonEntry{httpUnknown}},
			{"ingress", store.PoisonFilter{Ingress: "http"}, []store.PoisonEntry{httpUnknown, httpKnown}},
			{"correlation id", store.PoisonFilter{CorrelationID: "corr-panic"}, []store.PoisonEntry{panicked}},
			// The user id comes from the payload unless the caller knew it.
			{"user id", store.PoisonFilter{UserID: userA}, []store.PoisonEntry{panicked, email}},
			{"user id of an invalid event", store.PoisonFilter{UserID: userB}, []store.PoisonEntry{httpKnown, email2}},
			{"reason text, any case", store.PoisonFilter{Reason: "NOT AN EMAIL"}, []store.PoisonEntry{email2, email}},
			{"reason text with LIKE wildcards", store.PoisonFilter{Reason: "%"}, nil},
			{"reason text with an underscore", store.PoisonFilter{Reason: "sqlite_busy"}, []store.PoisonEntry{exhausted}},
			{"reason kind", store.PoisonFilter{ReasonKind: "email: not an email address: … (domain has no dot)"}, []store.PoisonEntry{email2, email}},
			{"since", store.PoisonFilter{Since: base.Add(40 * time.Minute)}, []store.PoisonEntry{exhausted, httpUnknown, httpKnown}},
			{"until", store.PoisonFilter{Until: base.Add(20 * time.Minute)}, []store.PoisonEntry{email2, email}},
			{"since and until", store.PoisonFilter{Since: base.Add(15 * time.Minute), Until: base.Add(35 * time.Minute)}, []store.PoisonEntry{panicked, email2}},
			{"several", store.PoisonFilter{Class: "permanent", Ingress: "nats", UserID: userB}, []store.PoisonEntry{email2}},
			{"nothing", store.PoisonFilter{Class: "panic", Ingress: "http"}, nil},
		} {
			page := list(t, db, store.PoisonPageRequest{Filter: tt.f})
			if got, want := ids(page.Entries), ids(tt.want); !slices.Equal(got, want) {
				t.Errorf("%s: ids = %v, want %v", tt.name, got, want)
			}
			if page.Total != len(tt.want) || page.Next != "" {
				t.Errorf("%s: total %d, next %q; want %d and no next page", tt.name, page.Total, page.Next, len(tt.want))
			}
			n, err := db.CountPoisonMatching(testContext(t), tt.f)
			if err != nil || n != len(tt.want) {
				t.Errorf("%s: CountPoisonMatching = %d, %v; want %d", tt.name, n, err, len(tt.want))
			}
			oldest := list(t, db, store.PoisonPageRequest{Filter: tt.f, Order: store.OldestFirst})
			if got, want := ids(oldest.Entries), ids(tt.want); !slices.Equal(got, reversed(want)) {
				t.Errorf("%s oldest first: ids = %v", tt.name, got)
			}
		}

		// A list reads no payloads, but every other field.
		page := list(t, db, store.PoisonPageRequest{Filter: store.PoisonFilter{Class: "panic"}})
		got := page.Entries[0]
		if got.Payload != nil {
			t.Errorf("a listed entry carries its payload (%d bytes)", len(got.Payload))
		}
		want := panicked
		want.Payload, want.Failures, want.ReasonKind, want.Action = nil, 1, "panic: boom", ""
		if !equalEntries(got, want) {
			t.Errorf("listed entry =\n%+v\nwant\n%+v", got, want)
		}
		if got := list(t, db, store.PoisonPageRequest{Filter: store.PoisonFilter{Ingress: "http"}}).Entries; got[1].DisplaySubject() != "user.events.deleted" || got[0].DisplaySubject() != store.NoSubject {
			t.Errorf("display subjects of HTTP entries = %q, %q", got[1].DisplaySubject(), got[0].DisplaySubject())
		}

		for _, bad := range []store.PoisonFilter{
			{CorrelationID: "a\x00b"}, {Subject: "\xff"}, {Since: base.Add(time.Hour), Until: base},
		} {
			if _, err := db.ListPoison(testContext(t), store.PoisonPageRequest{Filter: bad}); !errors.Is(err, store.ErrInvalidPoisonQuery) {
				t.Errorf("filter %+v: %v, want ErrInvalidPoisonQuery", bad, err)
			}
		}
	})
}

func reversed(s []string) []string {
	s = slices.Clone(s)
	slices.Reverse(s)
	return s
}

func equalEntries(a, b store.PoisonEntry) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}

// TestPoisonPaging walks a queue page by page, in both orders and with a
// filter, and checks that every entry comes exactly once and in order. Many
// entries share one last failure time: the cursor must break ties.
func TestPoisonPaging(t *testing.T) {
	t.Parallel()
	storetest.EachBackend(t, func(t *testing.T, d store.Dialect) {
		db := storetest.Open(t, d)
		var entries []store.PoisonEntry
		for i := range 137 {
			entries = append(entries, entry(fmt.Sprint("page-", i), i/10, func(e *store.PoisonEntry) {
				if i%3 == 0 {
					e.Class = "panic"
				}
			}))
		}
		// One publish: many rows in one statement, as fast as the test
		// can make them.
		pub, err := db.Publisher(watermill.NopLogger{})
		if err != nil {
			t.Fatal(err)
		}
		defer pub.Close()
		msgs := make([]*message.Message, len(entries))
		for i, e := range entries {
			msgs[i] = e.Message()
		}
		mustPublish(t, pub, store.PoisonTopic, msgs...)

		for _, tt := range []struct {
			order store.PoisonOrder
			f     store.PoisonFilter
			limit int
		}{
			{store.NewestFirst, store.PoisonFilter{}, 10},
			{store.OldestFirst, store.PoisonFilter{}, 10},
			{store.NewestFirst, store.PoisonFilter{Class: "panic"}, 7},
			{store.OldestFirst, store.PoisonFilter{Class: "permanent", Since: base.Add(3 * time.Minute)}, 1},
			{"", store.PoisonFilter{}, 137},
		} {
			var want []store.PoisonEntry
			for _, e := range entries {
				if (tt.f.Class == "" || e.Class == tt.f.Class) && !e.LastFailure.Before(tt.f.Since) {
					want = append(want, e)
				}
			}
			// Stored order breaks ties; entries went in in slice order.
			if tt.order != store.OldestFirst {
				slices.Reverse(want)
			}
			var got []string
			cursor, pages := "", 0
			for {
				page := list(t, db, store.PoisonPageRequest{Filter: tt.f, Order: tt.order, Limit: tt.limit, Cursor: cursor})
				pages++
				if page.Total != len(want) {
					t.Fatalf("%s %+v: page %d says total %d, want %d", tt.order, tt.f, pages, page.Total, len(want))
				}
				if len(page.Entries) > tt.limit {
					t.Fatalf("page of %d entries, limit %d", len(page.Entries), tt.limit)
				}
				got = append(got, ids(page.Entries)...)
				if page.Next == "" {
					break
				}
				if pages > len(want)+1 {
					t.Fatalf("%s %+v: paging does not end", tt.order, tt.f)
				}
				cursor = page.Next
			}
			if !slices.Equal(got, ids(want)) {
				t.Errorf("%s %+v limit %d: paged ids differ from the expected order\n got %v\nwant %v", tt.order, tt.f, tt.limit, got, ids(want))
			}
			if wantPages := max(1, (len(want)+tt.limit-1)/tt.limit); pages != wantPages {
				t.Errorf("%s %+v limit %d: %d pages, want %d", tt.order, tt.f, tt.limit, pages, wantPages)
			}
		}

		// The default page size, and the bounds.
		first := list(t, db, store.PoisonPageRequest{})
		if len(first.Entries) != store.DefaultPoisonPageSize || first.Next == "" || first.Total != len(entries) {
			t.Errorf("default page: %d entries, next %q, total %d", len(first.Entries), first.Next, first.Total)
		}
		for _, r := range []store.PoisonPageRequest{
			{Limit: -1}, {Limit: store.MaxPoisonPageSize + 1}, {Order: "sideways"},
			{Cursor: "not a cursor"}, {Cursor: first.Next, Order: store.OldestFirst}, {Cursor: strings.Repeat("A", 300)},
		} {
			if _, err := db.ListPoison(testContext(t), r); !errors.Is(err, store.ErrInvalidPoisonQuery) {
				t.Errorf("ListPoison(%+v) = %v, want ErrInvalidPoisonQuery", r, err)
			}
		}
		if page := list(t, db, store.PoisonPageRequest{Limit: store.MaxPoisonPageSize}); len(page.Entries) != len(entries) || page.Next != "" {
			t.Errorf("largest page: %d entries, next %q", len(page.Entries), page.Next)
		}
	})
}

// TestPoisonStats checks the counts, above all that reasons are counted by
// kind: the same rule broken with other values is one row.
func TestPoisonStats(t *testing.T) {
	t.Parallel()
	storetest.EachBackend(t, func(t *testing.T, d store.Dialect) {
		db := storetest.Open(t, d)
		empty, err := db.PoisonStats(testContext(t), store.PoisonFilter{}, 0)
		if err != nil || empty.Total != 0 || empty.Oldest != nil || empty.Newest != nil || len(empty.ByClass.Top) != 0 {
			t.Errorf("stats of an empty queue = %+v, %v", empty, err)
		}
		emailReason := func(value string) func(*store.PoisonEntry) {
			return func(e *store.PoisonEntry) {
				e.Reason = `decode user.events.created: invalid event: email: not an email address: "` + value + `" (domain has no dot)`
			}
		}
		put(t, db,
			entry("x", 1, emailReason("x")),
			entry("y", 2, emailReason("y")),
			entry("z", 3, emailReason(`z\"quoted`)),
			entry("size", 4, func(e *store.PoisonEntry) {
				e.Reason, e.Subject = "decode user.events.updated: invalid event: body is 4097 bytes, limit is 4096", "user.events.updated"
			}),
			entry("size2", 5, func(e *store.PoisonEntry) {
				e.Reason, e.Subject, e.Ingress = "decode event: invalid event: body is 5000 bytes, limit is 4096", "", "http"
				e.Payload = []byte(`{"action":"updated","padding":"…"}`)
			}),
			entry("panic", 6, func(e *store.PoisonEntry) { e.Class, e.Reason = "panic", "panic: boom" }),
		)
		// An entry written before reason kinds existed: only its reason.
		legacy := entry("legacy", 0, emailReason("legacy"))
		legacyMsg := legacy.Message()
		delete(legacyMsg.Metadata, "reason_kind")
		pub, err := db.Publisher(watermill.NopLogger{})
		if err != nil {
			t.Fatal(err)
		}
		defer pub.Close()
		mustPublish(t, pub, store.PoisonTopic, legacyMsg)

		s, err := db.PoisonStats(testContext(t), store.PoisonFilter{}, 0)
		if err != nil {
			t.Fatal(err)
		}
		if s.Total != 7 {
			t.Errorf("total = %d, want 7", s.Total)
		}
		wantGroups(t, "by class", s.ByClass, []store.PoisonCount{{"permanent", 6}, {"panic", 1}})
		wantGroups(t, "by reason", s.ByReason, []store.PoisonCount{
			{"email: not an email address: … (domain has no dot)", 4},
			{"body is N bytes, limit is N", 2},
			{"panic: boom", 1},
		})
		wantGroups(t, "by subject", s.BySubject, []store.PoisonCount{{"user.events.created", 5}, {"user.events.updated", 2}})
		wantGroups(t, "by ingress", s.ByIngress, []store.PoisonCount{{"nats", 6}, {"http", 1}})
		if s.Oldest == nil || s.Oldest.ID != legacy.ID || s.Newest == nil || s.Newest.ID != entry("panic", 0, nil).ID || s.Newest.Payload != nil {
			t.Errorf("oldest %+v, newest %+v", s.Oldest, s.Newest)
		}

		// The kind that counts the legacy entry also lists it.
		page := list(t, db, store.PoisonPageRequest{Filter: store.PoisonFilter{ReasonKind: "email: not an email address: … (domain has no dot)"}})
		if page.Total != 4 || !slices.Contains(ids(page.Entries), legacy.ID) {
			t.Errorf("listing the kind stats counted 4 times finds %v", ids(page.Entries))
		}
		if page := list(t, db, store.PoisonPageRequest{Filter: store.PoisonFilter{ReasonKind: "body is N bytes, limit is N"}}); page.Total != 2 {
			t.Errorf("kind with numbers: %d entries, want 2", page.Total)
		}

		// Top groups and the rest; and a filter.
		s, err = db.PoisonStats(testContext(t), store.PoisonFilter{Class: "permanent"}, 1)
		if err != nil {
			t.Fatal(err)
		}
		if s.Total != 6 || s.ByReason.OtherGroups != 1 || s.ByReason.OtherCount != 2 || len(s.ByReason.Top) != 1 {
			t.Errorf("stats of permanent entries, top 1: %+v", s)
		}
	})
}

func wantGroups(t *testing.T, what string, got store.PoisonGroups, want []store.PoisonCount) {
	t.Helper()
	if !slices.Equal(got.Top, want) || got.OtherGroups != 0 || got.OtherCount != 0 {
		t.Errorf("%s = %+v, want %v", what, got, want)
	}
}

// TestPoisonIDsMatchLiterally: an id or prefix is never a pattern.
// Wildcards, NUL and other non-id text are refused before any query, with
// ErrInvalidPoisonID, which the admin API answers with 400.
func TestPoisonIDsMatchLiterally(t *testing.T) {
	t.Parallel()
	storetest.EachBackend(t, func(t *testing.T, d store.Dialect) {
		db := storetest.Open(t, d)
		one := entry("one", 1, func(e *store.PoisonEntry) { e.ID = "6b727153-0000-4000-8000-000000000001" })
		twinA := entry("a", 2, func(e *store.PoisonEntry) { e.ID = "aaaaaaaa-0000-4000-8000-000000000001" })
		twinB := entry("b", 3, func(e *store.PoisonEntry) { e.ID = "aaaaaaaa-0000-4000-8000-000000000002" })
		put(t, db, one, twinA, twinB)

		for _, tt := range []struct {
			id   string
			want string // the id found, or the error
			err  error
		}{
			{id: one.ID, want: one.ID},
			{id: strings.ToUpper(one.ID), want: one.ID},
			{id: " " + one.ID[:8] + " ", want: one.ID},
			{id: one.ID[:9], want: one.ID},
			{id: one.ID[:20], want: one.ID},
			{id: "aaaaaaaa-0000-4000-8000-00000000000", err: store.ErrPoisonAmbiguous},
			{id: "aaaaaaaa", err: store.ErrPoisonAmbiguous},
			{id: twinB.ID, want: twinB.ID},
			{id: "bbbbbbbb", err: store.ErrPoisonNotFound},
			{id: "00000000-0000-4000-8000-000000000000", err: store.ErrPoisonNotFound},
			{id: "6b7271%%", err: store.ErrInvalidPoisonID},
			{id: "6b7271%25%25", err: store.ErrInvalidPoisonID},
			{id: "________", err: store.ErrInvalidPoisonID},
			{id: "6b727153%", err: store.ErrInvalidPoisonID},
			{id: "6b72715_", err: store.ErrInvalidPoisonID},
			{id: "6b727153\x00", err: store.ErrInvalidPoisonID},
			{id: "\x00", err: store.ErrInvalidPoisonID},
			{id: "6b7271", err: store.ErrInvalidPoisonID},
			{id: "", err: store.ErrInvalidPoisonID},
			{id: one.ID + "0", err: store.ErrInvalidPoisonID},
			{id: "6b7271530", err: store.ErrInvalidPoisonID}, // a digit where the id has '-'
			{id: "6b727153-0000-4000-8000-00000000000\u202e", err: store.ErrInvalidPoisonID},
			{id: "6b727153-0000-4000-8000-0000000000zz", err: store.ErrInvalidPoisonID},
		} {
			got, err := db.ResolvePoisonID(testContext(t), tt.id)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Errorf("ResolvePoisonID(%q) = %q, %v; want %v", tt.id, got, err, tt.err)
				}
				if err != nil && strings.ContainsAny(err.Error(), "\x00\u202e") {
					t.Errorf("ResolvePoisonID(%q): the error repeats the id raw: %q", tt.id, err)
				}
				continue
			}
			if err != nil || got != tt.want {
				t.Errorf("ResolvePoisonID(%q) = %q, %v; want %s", tt.id, got, err, tt.want)
			}
		}
		if e, err := db.GetPoison(testContext(t), one.ID[:8]); err != nil || e.ID != one.ID || string(e.Payload) != string(one.Payload) {
			t.Errorf("GetPoison by prefix = %+v, %v", e, err)
		}
		if e, err := db.GetPoisonSummary(testContext(t), one.ID); err != nil || e.Payload != nil || e.Reason != one.Reason {
			t.Errorf("GetPoisonSummary = %+v, %v; want the entry without its payload", e, err)
		}
		if err := db.DeletePoison(testContext(t), "aaaaaaaa"); !errors.Is(err, store.ErrInvalidPoisonID) {
			t.Errorf("DeletePoison(prefix) = %v; want ErrInvalidPoisonID (delete takes the full id)", err)
		}
		if err := db.DeletePoison(testContext(t), "________-____-____-____-____________"); !errors.Is(err, store.ErrInvalidPoisonID) {
			t.Errorf("DeletePoison(wildcards) = %v", err)
		}
		if got := list(t, db, store.PoisonPageRequest{}); got.Total != 3 {
			t.Errorf("%d entries left, want all 3", got.Total)
		}
	})
}

// TestPoisonReplayKeepsOrigin: a replay that fails again changes the
// reason and counts, never where the entry came from.
func TestPoisonReplayKeepsOrigin(t *testing.T) {
	t.Parallel()
	storetest.EachBackend(t, func(t *testing.T, d store.Dialect) {
		db := storetest.Open(t, d)
		orig := entry("origin", 0, func(e *store.PoisonEntry) { e.StreamSeq, e.DeliveryCount = 42, 3 })
		put(t, db, orig)
		replayAt := base.Add(time.Hour)
		replay := func(at time.Time, reason string) store.PoisonEntry {
			return store.PoisonEntry{
				ID: orig.ID, Payload: orig.Payload, Reason: reason, Class: "permanent", Subject: orig.Subject,
				Handler: orig.Handler, Ingress: "replay", CorrelationID: orig.CorrelationID,
				FirstFailure: at, LastFailure: at, Replays: 1, LastReplayAt: at,
			}
		}
		put(t, db, replay(replayAt, "still bad"))
		put(t, db, replay(replayAt.Add(time.Minute), "still bad again"))
		got, err := db.GetPoison(testContext(t), orig.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Ingress != "nats" || got.StreamSeq != 42 || got.DeliveryCount != 3 || got.Stream != "USER_EVENTS" || got.Subject != orig.Subject {
			t.Errorf("after failed replays the origin is lost: %+v", got)
		}
		if got.Replays != 2 || !got.LastReplayAt.Equal(replayAt.Add(time.Minute)) || got.Failures != 3 || got.Reason != "still bad again" ||
			!got.FirstFailure.Equal(orig.FirstFailure) || !got.LastFailure.Equal(replayAt.Add(time.Minute)) {
			t.Errorf("replay facts: %+v", got)
		}
		// A redelivery of the original keeps the replay facts.
		again := orig
		again.LastFailure, again.DeliveryCount = replayAt.Add(2*time.Minute), 4
		put(t, db, again)
		if got, _ := db.GetPoison(testContext(t), orig.ID); got.Replays != 2 || got.DeliveryCount != 4 || got.Ingress != "nats" {
			t.Errorf("after a redelivery: %+v", got)
		}
		if page := list(t, db, store.PoisonPageRequest{Filter: store.PoisonFilter{Ingress: "nats"}}); page.Total != 1 {
			t.Errorf("filter by the original ingress finds %d entries", page.Total)
		}
	})
}

// TestPoisonBulk deletes and walks in batches: every matching entry once,
// none that arrived after the start.
func TestPoisonBulk(t *testing.T) {
	t.Parallel()
	storetest.EachBackend(t, func(t *testing.T, d store.Dialect) {
		db := storetest.Open(t, d)
		pub, err := db.Publisher(watermill.NopLogger{})
		if err != nil {
			t.Fatal(err)
		}
		defer pub.Close()
		const n = 2500 // three batches
		msgs := make([]*message.Message, n)
		for i := range n {
			msgs[i] = entry(fmt.Sprint("bulk-", i), i%100, func(e *store.PoisonEntry) {
				if i%5 == 0 {
					e.Class = "panic"
				}
			}).Message()
		}
		for chunk := range slices.Chunk(msgs, 500) {
			mustPublish(t, pub, store.PoisonTopic, chunk...)
		}

		// The walk visits each entry once, while it deletes some.
		seen, walkDeleted := map[string]int{}, 0
		err = db.EachPoison(testContext(t), store.PoisonFilter{Class: "permanent"}, func(batch []store.PoisonEntry) error {
			for _, e := range batch {
				seen[e.ID]++
				if e.Payload != nil || e.Class != "permanent" {
					t.Fatalf("EachPoison gave %+v", e)
				}
			}
			walkDeleted++
			return db.DeletePoison(testContext(t), batch[0].ID)
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(seen) != n*4/5 {
			t.Errorf("EachPoison saw %d entries, want %d", len(seen), n*4/5)
		}
		for id, times := range seen {
			if times != 1 {
				t.Errorf("EachPoison gave %s %d times", id, times)
			}
		}

		// Delete a class in batches; an entry that arrives meanwhile stays.
		late := entry("late", 0, func(e *store.PoisonEntry) { e.Class = "panic" })
		var progress []int
		deleted, err := db.DeletePoisonMatching(testContext(t), store.PoisonFilter{Class: "panic"}, func(done int) {
			if len(progress) == 0 {
				put(t, db, late)
			}
			progress = append(progress, done)
		})
		if err != nil || deleted != n/5 {
			t.Errorf("DeletePoisonMatching = %d, %v; want %d", deleted, err, n/5)
		}
		if !slices.IsSorted(progress) || len(progress) == 0 || progress[len(progress)-1] != n/5 {
			t.Errorf("progress = %v", progress)
		}
		if _, err := db.GetPoison(testContext(t), late.ID); err != nil {
			t.Errorf("an entry stored during the delete was deleted: %v", err)
		}
		left, _ := db.CountPoison(testContext(t))
		if want := n*4/5 - walkDeleted + 1; left != want { // plus the late one
			t.Errorf("%d entries left, want %d", left, want)
		}
		if deleted, err := db.DeletePoisonMatching(testContext(t), store.PoisonFilter{}, nil); err != nil || deleted != left {
			t.Errorf("delete all = %d, %v; want %d", deleted, err, left)
		}
		if left, _ := db.CountPoison(testContext(t)); left != 0 {
			t.Errorf("%d entries left after deleting all", left)
		}
	})
}

// TestPoisonOutsideText: values the router cannot trust (NUL, control
// characters, very long subjects and ids) are stored, filtered and read
// back on every backend.
func TestPoisonOutsideText(t *testing.T) {
	t.Parallel()
	storetest.EachBackend(t, func(t *testing.T, d store.Dialect) {
		db := storetest.Open(t, d)
		long := "user.events." + strings.Repeat("é", 300)
		e := entry("outside", 0, func(e *store.PoisonEntry) {
			e.Subject = long
			e.CorrelationID = "req\x00\x1b[31m\u202e"
			e.Reason = "decode " + long + ": invalid event: action: \x00"
		})
		put(t, db, e)
		same := entry("outside-twin", 1, func(e *store.PoisonEntry) { e.Subject = long[:len(long)-2] + "è" }) // the same first 200 characters
		put(t, db, same)
		got, err := db.GetPoison(testContext(t), e.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Subject != long || got.CorrelationID != `req\x00`+"\x1b[31m\u202e" {
			t.Errorf("stored subject %d bytes, correlation id %q", len(got.Subject), got.CorrelationID)
		}
		for _, f := range []store.PoisonFilter{{Subject: long}, {CorrelationID: `req\x00` + "\x1b[31m\u202e"}} {
			if page := list(t, db, store.PoisonPageRequest{Filter: f}); !slices.Equal(ids(page.Entries), []string{e.ID}) {
				t.Errorf("filter %+v finds %v, want only %s", f, ids(page.Entries), e.ID)
			}
		}
	})
}

// TestInitSchemaAddsPoisonColumnsToExistingTable: a poison table from before
// the generated columns (entries in it, one with a NUL that PostgreSQL's
// JSON functions refuse) gets them on InitSchema, and its entries can be
// filtered at once.
func TestInitSchemaAddsPoisonColumnsToExistingTable(t *testing.T) {
	t.Parallel()
	storetest.EachBackend(t, func(t *testing.T, d store.Dialect) {
		ctx := testContext(t)
		db, err := store.Open(ctx, storetest.URL(t, d))
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		schema := db.SchemaAdapter()
		queries, err := schema.SchemaInitializingQueries(wmsql.SchemaInitializingQueriesParams{Topic: store.PoisonTopic})
		if err != nil {
			t.Fatal(err)
		}
		tx, err := db.SQL.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, q := range queries {
			if _, err := tx.ExecContext(ctx, q.Query, q.Args...); err != nil {
				t.Fatal(err)
			}
		}
		// As the router wrote entries before: no reason_kind, a time in
		// RFC 3339 with trimmed fractions, NUL as JSON's \u0000.
		old := message.NewMessage("6b727153-0000-4000-8000-000000000001", []byte(`{}`))
		old.Metadata = message.Metadata{"reason": `decode user.events.created: invalid event: email: missing`, "error_class": "permanent",
			"subject": "user.events.created", "ingress": "nats", "correlation_id": "a\x00b", "last_failure_at": "2026-11-28T13:28:17.5Z",
			"first_failure_at": "2026-11-28T13:28:17.5Z", "failures": "1"}
		q, err := schema.InsertQuery(wmsql.InsertQueryParams{Topic: store.PoisonTopic, Msgs: message.Messages{old}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.ExecContext(ctx, q.Query, q.Args...); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}

		if err := db.InitSchema(ctx, store.CommandsTopic, store.PoisonTopic); err != nil {
			t.Fatalf("InitSchema over an existing poison table: %v", err)
		}
		if err := db.InitSchema(ctx, store.PoisonTopic); err != nil {
			t.Fatalf("InitSchema again: %v", err)
		}
		page := list(t, db, store.PoisonPageRequest{Filter: store.PoisonFilter{Class: "permanent", Subject: "user.events.created",
			Ingress: "nats", ReasonKind: "email: missing", Since: time.Date(2026, 11, 28, 13, 28, 17, 0, time.UTC)}})
		if !slices.Equal(ids(page.Entries), []string{old.UUID}) || page.Entries[0].ReasonKind != "email: missing" {
			t.Errorf("the old entry is not found by the new filters: %+v", page)
		}
		put(t, db, entry("new", 0, nil))
		if n, _ := db.CountPoison(ctx); n != 2 {
			t.Errorf("%d entries, want 2", n)
		}
	})
}
