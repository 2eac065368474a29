package admin_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/social/user-events-router/router/pipelinetest"
	"github.com/social/user-events-router/store"
)

// crossOriginHeaders are what a browser sends with a request from a page
// of another origin than origin (each a list of header, value pairs).
func crossOriginHeaders(origin string) [][]string {
	return [][]string{
		{"Sec-Fetch-Site", "cross-site"},
		{"Sec-Fetch-Site", "same-site"}, // another port of the same host
		{"Sec-Fetch-Site", "cross-site", "Origin", origin},
		{"Origin", "http://evil.example"}, // a browser without Sec-Fetch-Site
		{"Origin", "null"},                // a sandboxed frame, a data: URL
	}
}

// TestAdminRefusesCrossOrigin: DESIGN §3 "Admin": state-changing admin
// requests a browser sends from another origin are refused, token or not,
// loopback or not; reads, and clients that are not browsers (curl, scripts:
// no Sec-Fetch-Site, no Origin), are not affected.
func TestAdminRefusesCrossOrigin(t *testing.T) {
	t.Parallel()
	for _, token := range []string{"", "s3cret"} {
		b := setupAdmin(t, store.SQLite, adminSetup{token: token})
		send := func(method, target string, headers []string) *httptest.ResponseRecorder {
			req := httptest.NewRequestWithContext(t.Context(), method, target, nil)
			if token != "" {
				req.Header.Set("Authorization", "Bearer "+token)
			}
			for i := 0; i+1 < len(headers); i += 2 {
				req.Header.Set(headers[i], headers[i+1])
			}
			rec := httptest.NewRecorder()
			b.handler.ServeHTTP(rec, req)
			return rec
		}
		for _, h := range crossOriginHeaders("http://example.com") {
			for method, target := range map[string]string{
				"POST":   "/admin/poison/" + b.valid.ID + "/replay",
				"DELETE": "/admin/poison/" + b.bad.ID,
			} {
				rec := send(method, target, h)
				response{rec.Code, rec.Header(), rec.Body.String()}.wantError(t, token+" "+method+" "+strings.Join(h, " "), http.StatusForbidden, "cross-origin")
			}
		}
		if pipelinetest.CountCommands(t, b.db) != 0 || !exists(t, b.db, b.bad.ID) || !exists(t, b.db, b.valid.ID) {
			t.Fatalf("token %q: a cross-origin request changed the queue", token)
		}
		if rec := send("GET", "/admin/poison/"+b.bad.ID, []string{"Sec-Fetch-Site", "cross-site"}); rec.Code != 200 {
			t.Errorf("token %q: cross-site GET = %d, want 200 (reads are not refused)", token, rec.Code)
		}
		if rec := send("DELETE", "/admin/poison/"+b.bad.ID, []string{"Sec-Fetch-Site", "same-origin", "Origin", "http://example.com"}); rec.Code != 200 {
			t.Errorf("token %q: same-origin DELETE = %d", token, rec.Code)
		}
		if rec := send("POST", "/admin/poison/"+b.valid.ID+"/replay", nil); rec.Code != 200 {
			t.Errorf("token %q: replay without browser headers = %d", token, rec.Code)
		}
	}
}

func exists(t *testing.T, db *store.DB, id string) bool {
	t.Helper()
	_, err := db.GetPoisonSummary(t.Context(), id)
	return err == nil
}
