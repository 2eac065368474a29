package admin

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/social/user-events-router/store"
	"github.com/social/user-events-router/store/storetest"
)

// TestConsoleStopsAtItsBudget: an action that runs out of its time budget
// says how much is left and offers to go on with exactly that.
func TestConsoleStopsAtItsBudget(t *testing.T) {
	t.Parallel()
	db := storetest.Open(t, store.SQLite)
	var ids []string
	for _, id := range []string{"aaaaaaaa-0000-4000-8000-000000000001", "aaaaaaaa-0000-4000-8000-000000000002", "aaaaaaaa-0000-4000-8000-000000000003"} {
		if err := db.PutPoison(t.Context(), store.PoisonEntry{ID: id, Payload: []byte("x"), Class: "permanent", LastFailure: time.Now()}); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	// No Replayer: a replay that started would panic.
	c, err := newConsole(&admin{Options: Options{DB: db, NowFunc: time.Now}, logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	c.bulkBudget = -time.Second // spent before it starts
	rec := httptest.NewRecorder()
	s := c.newSession(rec, httptest.NewRequest("GET", "/admin/ui/", nil))
	post := func(path string, form url.Values) string {
		t.Helper()
		form.Set("csrf", s.csrf)
		req := httptest.NewRequestWithContext(t.Context(), "POST", path, strings.NewReader(form.Encode()))
		req.Host = "127.0.0.1:8081"
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for _, ck := range rec.Result().Cookies() {
			req.AddCookie(ck)
		}
		res := httptest.NewRecorder()
		c.ServeHTTP(res, req)
		if res.Code != http.StatusOK {
			t.Fatalf("POST %s = %d:\n%s", path, res.Code, res.Body)
		}
		return res.Body.String()
	}

	page := post("/admin/ui/delete", url.Values{"scope": {"matching"}, "filter": {"class=permanent"}, "confirm": {"yes"}})
	if !strings.Contains(page, "time budget; 3 still match") || !strings.Contains(page, `id="continue"`) ||
		!strings.Contains(page, `<input type="hidden" name="filter" value="class=permanent">`) || strings.Contains(page, `name="confirm"`) {
		t.Errorf("delete out of budget:\n%s", page)
	}
	if n, _ := db.CountPoison(t.Context()); n != 3 {
		t.Errorf("%d entries left, want 3", n)
	}
	page = post("/admin/ui/replay", url.Values{"scope": {"ids"}, "id": ids[:2], "confirm": {"yes"}})
	if !strings.Contains(page, "time budget; 2 not tried") || !strings.Contains(page, `<input type="hidden" name="id" value="`+ids[1]+`">`) {
		t.Errorf("replay out of budget:\n%s", page)
	}
}

// TestPoisonQueryValuesRoundTrip: the console's links and hidden filter
// fields (values) carry every parameter PoisonQueryFromURL reads, so a
// field added to one and not the other fails here.
func TestPoisonQueryValuesRoundTrip(t *testing.T) {
	t.Parallel()
	q := PoisonQuery{Reason: "r", ReasonKind: "k", Class: "c", Subject: "s", Ingress: "i", CorrelationID: "ci",
		UserID: "u", Since: "1h", Until: "2h", Limit: "5", Order: "oldest", Cursor: "x"}
	v := q.values(true)
	if len(v) != len(poisonPageParams) {
		t.Errorf("values has %d parameters, PoisonQueryFromURL reads %d (%v)", len(v), len(poisonPageParams), poisonPageParams)
	}
	back, err := PoisonQueryFromURL(v, true)
	if err != nil || back != q {
		t.Errorf("round trip = %+v, %v; want %+v", back, err, q)
	}
	filter := q
	filter.Limit, filter.Order, filter.Cursor = "", "", ""
	if back, err := PoisonQueryFromURL(q.values(false), false); err != nil || back != filter {
		t.Errorf("filter round trip = %+v, %v; want %+v", back, err, filter)
	}
}

// TestConsoleListDoesNotWaitForSlowCounts: with counts that take long,
// the list page still answers, with the entries and their total from the
// page query and a note that the counts are being taken; once they are
// taken, the next load shows them.
func TestConsoleListDoesNotWaitForSlowCounts(t *testing.T) {
	t.Parallel()
	db := storetest.Open(t, store.SQLite)
	for _, id := range []string{"bbbbbbbb-0000-4000-8000-000000000001", "bbbbbbbb-0000-4000-8000-000000000002"} {
		if err := db.PutPoison(t.Context(), store.PoisonEntry{ID: id, Payload: []byte("x"), Class: "permanent", LastFailure: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	c, err := newConsole(&admin{Options: Options{DB: db, NowFunc: time.Now}, logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	count := c.stats.count
	c.stats.count = func(ctx context.Context, f store.PoisonFilter) (store.PoisonStats, error) {
		<-release
		return count(ctx, f)
	}
	rec := httptest.NewRecorder()
	c.newSession(rec, httptest.NewRequest("GET", "/admin/ui/", nil))
	get := func() string {
		t.Helper()
		req := httptest.NewRequestWithContext(t.Context(), "GET", "/admin/ui/", nil)
		req.Host = "127.0.0.1:8081"
		for _, ck := range rec.Result().Cookies() {
			req.AddCookie(ck)
		}
		res := httptest.NewRecorder()
		c.ServeHTTP(res, req)
		if res.Code != http.StatusOK {
			t.Fatalf("GET /admin/ui/ = %d:\n%s", res.Code, res.Body)
		}
		return res.Body.String()
	}
	page := get()
	if !strings.Contains(page, `<strong id="total">2</strong>`) || !strings.Contains(page, `id="stats-pending"`) ||
		!strings.Contains(page, "bbbbbbbb") || strings.Contains(page, `id="stats-at"`) {
		t.Errorf("list while the counts are taken:\n%s", page)
	}
	close(release)
	// The next load waits at most consoleStatsWait; poll until the
	// counting has ended (it is quick once released).
	for deadline := time.Now().Add(10 * time.Second); ; {
		page = get()
		if strings.Contains(page, `id="stats-at"`) || time.Now().After(deadline) {
			break
		}
	}
	if !strings.Contains(page, `id="stats-at"`) || !strings.Contains(page, "permanent</a>") {
		t.Errorf("list once the counts are taken:\n%s", page)
	}
}
