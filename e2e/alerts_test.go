package e2e

// The alert rules and the Grafana dashboard, checked as Prometheus and
// Grafana read them: the rules with Prometheus's own rule-file parser and
// PromQL parser, every expression's metrics and labels against what a
// running router exports, every runbook link against the README.

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"

	"github.com/social/user-events-router/router/routertest"
	"github.com/social/user-events-router/store"
	"github.com/social/user-events-router/store/storetest"
)

const (
	alertsPath    = "../deploy/alerts.yaml"
	dashboardPath = "../deploy/grafana/user-events-router.json"
)

var promQL = parser.NewParser(parser.Options{})

func alertRules(t *testing.T) []rulefmt.Rule {
	t.Helper()
	groups, errs := rulefmt.ParseFile(alertsPath, false, model.UTF8Validation, promQL, slog.New(slog.DiscardHandler))
	for _, err := range errs {
		t.Errorf("Prometheus refuses %v", err)
	}
	if groups == nil {
		t.FailNow()
	}
	var rules []rulefmt.Rule
	for _, g := range groups.Groups {
		rules = append(rules, g.Rules...)
	}
	if len(rules) == 0 {
		t.Fatalf("%s has no rules", alertsPath)
	}
	return rules
}

// readmeRunbook is the README's "Runbook": each entry's heading by its
// GitHub anchor, and the text under it.
func readmeRunbook(t *testing.T) map[string]string {
	t.Helper()
	readme := string(readFile(t, "../README.md"))
	_, section, ok := strings.Cut(readme, "\n## Runbook\n")
	if !ok {
		t.Fatal(`README has no "## Runbook" section`)
	}
	if end := strings.Index(section, "\n## "); end >= 0 {
		section = section[:end]
	}
	entries := map[string]string{}
	for _, part := range strings.Split(section, "\n### ")[1:] {
		heading, body, _ := strings.Cut(part, "\n")
		entries[githubAnchor(heading)] = strings.TrimSpace(body)
	}
	return entries
}

// githubAnchor is the fragment GitHub gives a heading: lower case, spaces
// to hyphens, other punctuation dropped.
func githubAnchor(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(heading)) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || ('a' <= r && r <= 'z') || ('0' <= r && r <= '9'):
			b.WriteRune(r)
		}
	}
	return b.String()
}

// selectedMetrics are the metric names an expression selects.
func selectedMetrics(expr parser.Expr) []string {
	var names []string
	parser.Inspect(expr, func(node parser.Node, _ []parser.Node) error {
		if vs, ok := node.(*parser.VectorSelector); ok {
			names = append(names, vs.Name)
		}
		return nil
	})
	return names
}

func TestAlertRules(t *testing.T) {
	t.Parallel()
	rules := alertRules(t)
	runbook := readmeRunbook(t)
	base := "https://" + modulePath(t) + "/blob/main/README.md#"
	names := map[string]bool{}
	readinessWatched := false
	for _, r := range rules {
		if r.Alert == "" {
			t.Errorf("%s: recording rule %q: only alerts are expected here", alertsPath, r.Record)
			continue
		}
		if names[r.Alert] {
			t.Errorf("%s: two rules named %s", alertsPath, r.Alert)
		}
		names[r.Alert] = true
		if s := r.Labels["severity"]; s != "page" && s != "ticket" {
			t.Errorf("%s: severity %q, want page or ticket", r.Alert, s)
		}
		if time.Duration(r.For) < time.Minute {
			t.Errorf("%s: for %v: a blip would page", r.Alert, r.For)
		}
		for _, a := range []string{"summary", "description", "runbook_url"} {
			if strings.TrimSpace(r.Annotations[a]) == "" {
				t.Errorf("%s: no %s annotation", r.Alert, a)
			}
		}
		anchor := githubAnchor(r.Alert)
		if got := r.Annotations["runbook_url"]; got != base+anchor {
			t.Errorf("%s: runbook_url %q, want %q", r.Alert, got, base+anchor)
		}
		if runbook[anchor] == "" {
			t.Errorf("%s: the README's Runbook has no entry ### %s saying what to do", r.Alert, r.Alert)
		}

		expr, err := promQL.ParseExpr(r.Expr)
		if err != nil {
			t.Errorf("%s: %v", r.Alert, err)
			continue
		}
		selected := selectedMetrics(expr)
		if slices.Contains(selected, "up") {
			t.Errorf("%s: up{} is scrape success, not readiness: %s", r.Alert, r.Expr)
		}
		if slices.Contains(selected, "user_events_router_ready") {
			readinessWatched = readinessWatched || strings.Contains(expr.String(), "absent(user_events_router_ready)")
		}
	}
	for anchor := range runbook {
		if !slices.ContainsFunc(rules, func(r rulefmt.Rule) bool { return githubAnchor(r.Alert) == anchor }) {
			t.Errorf("the README's Runbook has an entry (#%s) for no rule of %s", anchor, alertsPath)
		}
	}
	// The gauge vanishes with the process: == 0 alone would never fire
	// when no router is scraped.
	if !readinessWatched {
		t.Errorf("%s: no rule pages on user_events_router_ready being 0 or absent()", alertsPath)
	}
}

// grafanaDashboard is the part of Grafana's dashboard model the test reads.
type grafanaDashboard struct {
	Title         string `json:"title"`
	UID           string `json:"uid"`
	SchemaVersion int    `json:"schemaVersion"`
	Templating    struct {
		List []struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Query string `json:"query"`
		} `json:"list"`
	} `json:"templating"`
	Panels []grafanaPanel `json:"panels"`
}

type grafanaDatasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type grafanaPanel struct {
	ID          int                `json:"id"`
	Type        string             `json:"type"`
	Title       string             `json:"title"`
	Description string             `json:"description"`
	Datasource  *grafanaDatasource `json:"datasource"`
	GridPos     struct {
		X int `json:"x"`
		Y int `json:"y"`
		W int `json:"w"`
		H int `json:"h"`
	} `json:"gridPos"`
	Targets []struct {
		RefID      string             `json:"refId"`
		Expr       string             `json:"expr"`
		Datasource *grafanaDatasource `json:"datasource"`
	} `json:"targets"`
	Panels []grafanaPanel `json:"panels"` // a collapsed row's
}

// grafanaIntervals are the variables Grafana replaces in a query, with a
// value of their kind for the PromQL parser.
var grafanaIntervals = strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$__range", "1h")

// dashboardQueries reads the dashboard, checks its layout and returns each
// panel's queries, parsed.
func dashboardQueries(t *testing.T) map[string][]parser.Expr {
	t.Helper()
	var d grafanaDashboard
	if err := json.Unmarshal(readFile(t, dashboardPath), &d); err != nil {
		t.Fatalf("%s: %v", dashboardPath, err)
	}
	if d.Title == "" || d.UID == "" || d.SchemaVersion == 0 {
		t.Errorf("%s: title %q, uid %q, schemaVersion %d: Grafana needs all three", dashboardPath, d.Title, d.UID, d.SchemaVersion)
	}
	if !slices.ContainsFunc(d.Templating.List, func(v struct {
		Name  string `json:"name"`
		Type  string `json:"type"`
		Query string `json:"query"`
	}) bool {
		return v.Name == "datasource" && v.Type == "datasource" && v.Query == "prometheus"
	}) {
		t.Errorf("%s: no Prometheus data source variable $datasource: the importer could not pick one", dashboardPath)
	}
	var panels []grafanaPanel
	for _, p := range d.Panels {
		panels = append(panels, p)
		panels = append(panels, p.Panels...)
	}
	queries := map[string][]parser.Expr{}
	ids := map[int]bool{}
	for i, p := range panels {
		if ids[p.ID] {
			t.Errorf("%s: two panels with id %d", dashboardPath, p.ID)
		}
		ids[p.ID] = true
		g := p.GridPos
		if g.W < 1 || g.H < 1 || g.X < 0 || g.X+g.W > 24 {
			t.Errorf("%s: panel %q lies outside Grafana's 24 columns: %+v", dashboardPath, p.Title, g)
		}
		for _, q := range panels[:i] {
			o := q.GridPos
			if g.X < o.X+o.W && o.X < g.X+g.W && g.Y < o.Y+o.H && o.Y < g.Y+g.H {
				t.Errorf("%s: panels %q and %q overlap", dashboardPath, q.Title, p.Title)
			}
		}
		if p.Type == "row" {
			continue
		}
		if p.Title == "" || p.Description == "" {
			t.Errorf("%s: panel %d needs a title and a description (what it shows, what to do)", dashboardPath, p.ID)
		}
		if len(p.Targets) == 0 {
			t.Errorf("%s: panel %q has no query", dashboardPath, p.Title)
		}
		refs := map[string]bool{}
		for _, tg := range p.Targets {
			for _, ds := range []*grafanaDatasource{p.Datasource, tg.Datasource} {
				if ds == nil || ds.Type != "prometheus" || ds.UID != "${datasource}" {
					t.Errorf("%s: panel %q does not query the $datasource variable: %+v", dashboardPath, p.Title, ds)
				}
			}
			if tg.RefID == "" || refs[tg.RefID] {
				t.Errorf("%s: panel %q: refId %q missing or repeated", dashboardPath, p.Title, tg.RefID)
			}
			refs[tg.RefID] = true
			text := grafanaIntervals.Replace(tg.Expr)
			if strings.Contains(text, "$") {
				t.Errorf("%s: panel %q uses a variable the dashboard does not define: %s", dashboardPath, p.Title, tg.Expr)
				continue
			}
			expr, err := promQL.ParseExpr(text)
			if err != nil {
				t.Errorf("%s: panel %q: %v", dashboardPath, p.Title, err)
				continue
			}
			queries[p.Title] = append(queries[p.Title], expr)
		}
	}
	return queries
}

func TestDashboardPanels(t *testing.T) {
	t.Parallel()
	queries := dashboardQueries(t)
	shown := map[string]bool{}
	for _, exprs := range queries {
		for _, e := range exprs {
			for _, m := range selectedMetrics(e) {
				shown[m] = true
			}
		}
	}
	// What an operator looks at first (issue 15): drain rate, lag, poison
	// by class, in flight, ack latency, ingress codes, consumer state,
	// readiness, apply's lag.
	for _, m := range []string{
		"user_events_router_events_total",
		"user_events_router_consumer_pending_messages",
		"user_events_router_commit_lag_seconds_bucket",
		"user_events_router_poison_writes_total",
		"user_events_router_messages_in_flight",
		"user_events_router_receive_to_ack_seconds_bucket",
		"user_events_router_ingress_requests_total",
		"user_events_router_consumer_up",
		"user_events_router_ready",
		"user_events_apply_lag_commands",
	} {
		if !shown[m] {
			t.Errorf("%s shows nothing of %s", dashboardPath, m)
		}
	}
}

// exportedMetrics runs a router as deployed with apply inside (APPLY=1),
// gives it one of everything — a command by each path, a poison entry,
// apply at work, the durable described — and reads /metrics: every series
// name it exports, with its label names.
func exportedMetrics(t *testing.T) map[string]map[string]bool {
	t.Helper()
	srv := routertest.StartServer(t)
	dbURL := storetest.URL(t, store.SQLite)
	env, ingressURL := ingressEnv(t, srv.URL, dbURL)
	admin := freeAddr(t)
	env["ADMIN_ADDR"], env["APPLY"] = admin, "1"
	startRouter(t, env)
	js := routertest.JetStream(t, srv.URL)
	waitForIngress(t, ingressURL)
	waitForConsumer(t, js)

	routertest.Publish(t, js, "user.events.created", []byte(producerPayload))
	if code := postOnce(t, ingressURL, []byte(eventFor("created", "0b6e1c52-3f0e-4f7c-9a57-3d2b0f1f6a10"))); code != http.StatusOK {
		t.Fatalf("POST a created event: %d", code)
	}
	if code := postOnce(t, ingressURL, []byte(`{"broken`)); code != http.StatusBadRequest {
		t.Fatalf("POST a broken event: %d", code)
	}
	db := openDB(t, dbURL)
	routertest.Eventually(t, 20*time.Second, "apply to hold both users", func() bool {
		var n int
		err := db.SQL.QueryRow(`SELECT COUNT(*) FROM user_identities`).Scan(&n)
		return err == nil && n == 2
	})
	routertest.Eventually(t, 20*time.Second, "the durable and the stream described in /status", func() bool {
		st := getStatus(t, admin)
		return st.Consumer.Info != nil && st.Stream != nil
	})

	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	textParser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := textParser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("/metrics: %v", err)
	}
	out := map[string]map[string]bool{}
	add := func(name string, metric *dto.Metric, extra ...string) {
		if out[name] == nil {
			out[name] = map[string]bool{}
		}
		for _, l := range metric.GetLabel() {
			out[name][l.GetName()] = true
		}
		for _, l := range extra {
			out[name][l] = true
		}
	}
	for name, f := range families {
		for _, m := range f.GetMetric() {
			switch f.GetType() {
			case dto.MetricType_HISTOGRAM:
				add(name+"_bucket", m, "le")
				add(name+"_sum", m)
				add(name+"_count", m)
			case dto.MetricType_SUMMARY:
				add(name, m, "quantile")
				add(name+"_sum", m)
				add(name+"_count", m)
			default:
				add(name, m)
			}
		}
	}
	return out
}

// targetLabels are the labels Prometheus adds to every series it scrapes.
var targetLabels = []string{"job", "instance"}

// checkNamesExported reports each metric expr selects that is not
// exported, and each label it matches on, groups by or joins on that no
// series it selects carries.
func checkNamesExported(t *testing.T, where string, expr parser.Expr, exported map[string]map[string]bool) {
	t.Helper()
	known := map[string]bool{}
	for _, l := range targetLabels {
		known[l] = true
	}
	for _, name := range selectedMetrics(expr) {
		if exported[name] == nil {
			t.Errorf("%s: %s is not a metric the router or apply exports", where, name)
		}
		for l := range exported[name] {
			known[l] = true
		}
	}
	check := func(what string, ls []string) {
		for _, l := range ls {
			if l != labels.MetricName && !known[l] {
				t.Errorf("%s: %s label %q, which none of its metrics carries", where, what, l)
			}
		}
	}
	parser.Inspect(expr, func(node parser.Node, _ []parser.Node) error {
		switch n := node.(type) {
		case *parser.VectorSelector:
			for _, m := range n.LabelMatchers {
				check("matches on", []string{m.Name})
			}
		case *parser.AggregateExpr:
			check("groups by", n.Grouping)
		case *parser.BinaryExpr:
			if n.VectorMatching != nil {
				check("joins on", n.VectorMatching.MatchingLabels)
			}
		}
		return nil
	})
}

// TestAlertAndDashboardMetricsAreExported holds the rules and the panels
// to the metrics a running router exports: a renamed metric or label fails
// here, not silently in Prometheus.
func TestAlertAndDashboardMetricsAreExported(t *testing.T) {
	t.Parallel()
	rules := alertRules(t)
	queries := dashboardQueries(t)
	exported := exportedMetrics(t)
	for _, r := range rules {
		expr, err := promQL.ParseExpr(r.Expr)
		if err != nil {
			t.Fatalf("%s: %v", r.Alert, err)
		}
		checkNamesExported(t, alertsPath+": "+r.Alert, expr, exported)
	}
	for title, exprs := range queries {
		for _, e := range exprs {
			checkNamesExported(t, dashboardPath+": "+title, e, exported)
		}
	}
	if t.Failed() {
		var names []string
		for n := range exported {
			if strings.HasPrefix(n, "user_events_") {
				names = append(names, n)
			}
		}
		slices.Sort(names)
		t.Logf("exported: %s", strings.Join(names, " "))
	}
}
