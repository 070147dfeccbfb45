package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pluginv1 "github.com/acme/plugin-facade/gen/go/confluent/plugin/v1"
	"github.com/acme/plugin-facade/internal/fleet/fleettest"
	"github.com/acme/plugin-facade/internal/sandbox"
	"github.com/acme/plugin-facade/internal/testutil"
)

// monitoringDir holds what Prometheus and Grafana are given: the alert rules
// (a PrometheusRule) and the dashboard.
const monitoringDir = deployDir + "/components/monitoring"

// TestMonitoringNamesExportedMetrics: every metric the alert rules and the
// dashboard query is one a running facade exports. It runs the binary as a
// process with Redis, drives it through the events that create the metrics
// which appear only once something happens (a retry, a rate-limit refusal, a
// watch, Redis going away), scrapes /metrics, and compares.
func TestMonitoringNamesExportedMetrics(t *testing.T) {
	used := map[string][]string{} // metric name → where it is used
	recorded := map[string]bool{}
	for _, g := range loadRules(t).Spec.Groups {
		for _, r := range g.Rules {
			if r.Record != "" {
				recorded[r.Record] = true
			}
			where := "rule " + r.Record + r.Alert
			for _, name := range promqlMetrics(r.Expr) {
				used[name] = append(used[name], where)
			}
		}
	}
	for where, expr := range dashboardQueries(t) {
		for _, name := range promqlMetrics(expr) {
			used[name] = append(used[name], where)
		}
	}
	if len(used) < 10 {
		t.Fatalf("found only %d metric names in the rules and the dashboard: %v", len(used), used)
	}

	exported := scrapeExercised(t)
	var missing []string
	for name, where := range used {
		switch {
		case strings.Contains(name, ":"): // a recording rule's
			if !recorded[name] {
				t.Errorf("%s is used (%s) but no rule records it", name, strings.Join(slices.Compact(slices.Sorted(slices.Values(where))), ", "))
			}
		case !exported[name] && !exported[histogramFamily(name)]:
			missing = append(missing, name)
			t.Errorf("%s is used (%s) but the facade does not export it", name, strings.Join(slices.Compact(slices.Sorted(slices.Values(where))), ", "))
		}
	}
	if len(missing) > 0 {
		t.Logf("the facade exports: %s", strings.Join(slices.Sorted(func(yield func(string) bool) {
			for n := range exported {
				if !yield(n) {
					return
				}
			}
		}), " "))
	}
}

// TestAlertsHaveRunbooks: every alert links to a section of docs/runbook.md
// that exists, and every alert has a severity the runbook explains.
func TestAlertsHaveRunbooks(t *testing.T) {
	raw, err := os.ReadFile("../../docs/runbook.md")
	if err != nil {
		t.Fatal(err)
	}
	anchors := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^#{2,3} +(.+?)\s*$`).FindAllStringSubmatch(string(raw), -1) {
		anchors[githubAnchor(m[1])] = true
	}
	const prefix = "https://github.com/acme/plugin-facade/blob/main/docs/runbook.md#"
	var alerts int
	for _, g := range loadRules(t).Spec.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			alerts++
			url := r.Annotations["runbook_url"]
			anchor, ok := strings.CutPrefix(url, prefix)
			if !ok || !anchors[anchor] {
				t.Errorf("alert %s: runbook_url %q: want %s<a section heading of docs/runbook.md>", r.Alert, url, prefix)
			}
			if sev := r.Labels["severity"]; sev != "page" && sev != "ticket" {
				t.Errorf("alert %s: severity %q, want page or ticket", r.Alert, sev)
			}
			if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("alert %s: want a summary and a description", r.Alert)
			}
		}
	}
	if alerts == 0 {
		t.Fatal("no alerts in the PrometheusRule")
	}
}

// loadRules decodes the PrometheusRule strictly.
func loadRules(t *testing.T) *prometheusRule {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(monitoringDir, "prometheusrule.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	obj, err := decodeStrict(raw)
	if err != nil {
		t.Fatalf("prometheusrule.yaml: %v", err)
	}
	pr, ok := obj.(*prometheusRule)
	if !ok {
		t.Fatalf("prometheusrule.yaml: a %T", obj)
	}
	return pr
}

// dashboardQueries returns every PromQL query of the Grafana dashboard (the
// panels' targets and the template variables), keyed by where it is.
func dashboardQueries(t *testing.T) map[string]string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(monitoringDir, "dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ RefID, Expr string }
		}
		Templating struct {
			List []struct {
				Name  string
				Type  string
				Query json.RawMessage
			}
		}
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("dashboard.json: %v", err)
	}
	queries := map[string]string{}
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			queries["panel "+p.Title+" "+tg.RefID] = tg.Expr
		}
	}
	for _, v := range dash.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q struct{ Query string }
		if err := json.Unmarshal(v.Query, &q); err != nil {
			t.Fatalf("dashboard.json: variable %s: %v", v.Name, err)
		}
		// label_values(selector, label): only the selector is PromQL.
		m := regexp.MustCompile(`^label_values\((.*),\s*\w+\)$`).FindStringSubmatch(q.Query)
		if m == nil {
			t.Fatalf("dashboard.json: variable %s: query %q: want label_values(selector, label)", v.Name, q.Query)
		}
		queries["variable "+v.Name] = m[1]
	}
	return queries
}

var (
	promqlStrings  = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	promqlMatchers = regexp.MustCompile(`\{[^}]*\}`)
	promqlRanges   = regexp.MustCompile(`\[[^\]]*\]`)
	promqlGrouping = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	promqlCalls    = regexp.MustCompile(`[A-Za-z_][A-Za-z0-9_]*\s*\(`)
	promqlTokens   = regexp.MustCompile(`[A-Za-z0-9_:.]+`)
	promqlKeywords = []string{"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left", "group_right", "Inf", "NaN", "inf", "nan"}
)

// promqlMetrics returns the metric names a PromQL expression selects: what
// is left once string literals, label matchers, range selectors, grouping
// clauses, function names and keywords are taken out. (The rules and the
// dashboard use no scientific notation.)
func promqlMetrics(expr string) []string {
	s := promqlStrings.ReplaceAllString(expr, `""`)
	s = promqlMatchers.ReplaceAllString(s, " ")
	s = promqlRanges.ReplaceAllString(s, " ")
	s = promqlGrouping.ReplaceAllString(s, " ")
	s = promqlCalls.ReplaceAllString(s, "(")
	var names []string
	for _, id := range promqlTokens.FindAllString(s, -1) {
		if '0' <= id[0] && id[0] <= '9' || id[0] == '.' {
			continue // a number or a duration (5m)
		}
		if !slices.Contains(promqlKeywords, id) && !slices.Contains(names, id) {
			names = append(names, id)
		}
	}
	return names
}

func TestPromqlMetrics(t *testing.T) {
	tests := []struct {
		expr string
		want []string
	}{
		{`up`, []string{"up"}},
		{`sum by (job) (rate(a_total{x="y",le="1"}[5m])) / sum(rate(b_total[1h] offset 5m))`, []string{"a_total", "b_total"}},
		{`histogram_quantile(0.99, sum by (le) (rate(h_bucket{j="$job"}[$__rate_interval])))`, []string{"h_bucket"}},
		{`x:ratio_rate1h > (14.4 * 0.001) and on (job) y:ratio_rate5m > bool 2`, []string{"x:ratio_rate1h", "y:ratio_rate5m"}},
		{`min by (route) (r / l) < 0.1 or vector(0)`, []string{"r", "l"}},
	}
	for _, tt := range tests {
		if got := promqlMetrics(tt.expr); !slices.Equal(got, tt.want) {
			t.Errorf("promqlMetrics(%q) = %q, want %q", tt.expr, got, tt.want)
		}
	}
}

// histogramFamily is the family a histogram's or summary's series belongs to.
func histogramFamily(name string) string {
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if stem, ok := strings.CutSuffix(name, suffix); ok {
			return stem
		}
	}
	return name
}

// githubAnchor is the fragment GitHub gives a Markdown heading.
func githubAnchor(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(heading) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || ('a' <= r && r <= 'z') || ('0' <= r && r <= '9'):
			b.WriteRune(r)
		}
	}
	return b.String()
}

// scrapeExercised runs a replica with Redis in front of a sandbox, makes it
// go through every event that creates a metric, and returns the names of
// the metric families its /metrics then exports.
func scrapeExercised(t *testing.T) map[string]bool {
	t.Helper()
	redis := fleettest.Start(t)
	sb := testutil.StartSandbox(t, sandbox.WithRateLimit(40, time.Minute))
	r := startReplica(t, sb, redis.URL(), "--redis-timeout", "1s")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	version := &pluginv1.GetPluginVersionRequest{PluginId: sandbox.PluginID, Id: sandbox.VersionID, Environment: sandbox.Environment}

	// Calls answered by the upstream, by the cache, coalesced, and failed.
	for range 2 {
		if _, err := r.client.GetPluginVersion(ctx, version); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			_, _ = r.client.GetConnectorPlugin(ctx, &pluginv1.GetConnectorPluginRequest{Id: sandbox.PluginID})
		})
	}
	wg.Wait()
	if _, err := r.client.GetConnectorPlugin(ctx, &pluginv1.GetConnectorPluginRequest{Id: "ccp-00000"}); status.Code(err) != codes.NotFound {
		t.Fatalf("unknown plugin: %v, want NOT_FOUND", err)
	}
	// REST, through the gateway.
	resp, err := http.Get(r.httpURL + "/connect/v1/custom-connector-plugins/" + sandbox.FailedPluginID)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	// A watch of a READY version: one poll, then the stream ends.
	stream, err := r.client.WatchPluginVersion(ctx, &pluginv1.WatchPluginVersionRequest{PluginId: version.PluginId, Id: version.Id, Environment: version.Environment})
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := stream.Recv(); err != nil {
			if err != io.EOF {
				t.Fatalf("watch: %v", err)
			}
			break
		}
	}
	// A retry of a 503.
	sb.Inject(sandbox.Fault{Kind: sandbox.Fault503})
	if _, err := r.client.GetConnectorPlugin(ctx, &pluginv1.GetConnectorPluginRequest{Id: sandbox.UnknownEnumsPluginID}); err != nil {
		t.Fatalf("a call whose first attempt met a 503: %v", err)
	}
	// Redis gone: operations fail, then are skipped while degraded.
	redis.Stop()
	waitFleet(t, []*replica{r}, "degraded", 10*time.Second)
	if _, err := r.client.GetConnectorPlugin(ctx, &pluginv1.GetConnectorPluginRequest{Id: sandbox.MinimalPluginID}); err != nil {
		t.Fatalf("a call while degraded: %v", err)
	}
	// The window spent: the upstream's 429, then the guard's refusal.
	exhaust(t, sb)
	failed := &pluginv1.GetPluginVersionRequest{PluginId: sandbox.FailedPluginID, Id: sandbox.FailedVersionID, Environment: sandbox.Environment}
	for range 2 {
		if _, err := r.client.GetPluginVersion(ctx, failed); status.Code(err) != codes.ResourceExhausted {
			t.Fatalf("a call after the window was spent: %v, want RESOURCE_EXHAUSTED", err)
		}
	}

	resp, err = http.Get(r.httpURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	exported := map[string]bool{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) >= 4 && f[0] == "#" && f[1] == "TYPE" {
			exported[f[2]] = true
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return exported
}
