package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/acme/plugin-facade/internal/sandbox"
	"github.com/acme/plugin-facade/internal/testutil"
	"github.com/acme/plugin-facade/internal/upstream"
)

// TestMetricsOfEachPart runs the binary in process in front of a sandbox and
// checks, from a real scrape, the metrics the alerts and the dashboard read
// (/work/notes/metric-names.md, docs): the cache, coalescing, the guard, the
// watches, build_info and the protocol label.
func TestMetricsOfEachPart(t *testing.T) {
	const limit = 8
	sb := testutil.StartSandbox(t, sandbox.WithRateLimit(limit, time.Minute), sandbox.WithLifecycle(time.Minute))
	ctx, cancel := context.WithCancel(t.Context())
	var stderr testutil.Buffer
	done := make(chan error, 1)
	go func() {
		// --caller-share 1: one caller spends the whole key here, as the
		// guard's part of the test needs (the fair share has tests of its own).
		done <- run(ctx, []string{"--upstream-url", sb.URL(), "--cache-ttl", "30s", "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0",
			"--caller-share", "1"},
			env(envAPIKey, sandbox.APIKey, envAPISecret, sandbox.APISecret), io.Discard, &stderr)
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run = %v", err)
		}
	}()
	_, httpAddr := servingAddrs(t, &stderr)
	base := "http://" + httpAddr
	for code, body := getJSON(t, base+"/readyz"); body["default_credentials"] != "accepted"; code, body = getJSON(t, base+"/readyz") {
		if code != http.StatusOK && code != http.StatusServiceUnavailable {
			t.Fatalf("/readyz = %d", code)
		}
		time.Sleep(10 * time.Millisecond) // the start-up check is one request; wait for it to count from here
	}
	versionPath := fmt.Sprintf("/ccpm/v1/plugins/%s/versions/%s?environment=%s", sandbox.PluginID, sandbox.VersionID, sandbox.Environment)
	pv, cp := upstream.RoutePluginVersion, upstream.RouteConnectorPlugin

	// The cache: a miss, then a hit.
	get(t, base+versionPath)
	get(t, base+versionPath)
	// Coalescing: three identical calls while the upstream is slow share one exchange.
	sb.Inject(sandbox.Fault{Kind: sandbox.FaultSlowHeaders, Delay: 300 * time.Millisecond})
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() { get(t, base+"/connect/v1/custom-connector-plugins/"+sandbox.FailedPluginID) })
	}
	wg.Wait()
	unary := scrapeText(t, base) // before the watch, whose polls are no unary reads
	// A watch, open while the metrics are read.
	resp, err := http.Get(fmt.Sprintf("%s/ccpm/v1/plugins/%s/versions/%s:watch?environment=%s", base, sandbox.PluginID, sandbox.ProcessingVersionID, sandbox.Environment))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bufio.NewReader(resp.Body).ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	m := scrapeText(t, base)
	resp.Body.Close()
	// The guard: spend the window, then one more call is refused in process.
	for i := 0; i < 2*limit && scrapeText(t, base)[`plugin_facade_guard_refusals_total{route="`+cp+`"}`] == 0; i++ {
		get(t, base+fmt.Sprintf("/connect/v1/custom-connector-plugins/ccp-9%04d", i))
	}
	after := scrapeText(t, base)

	tests := []struct {
		series string
		got    float64
		want   func(float64) bool
		says   string
	}{
		{`plugin_facade_cache_misses_total{route="` + pv + `"}`, unary[`plugin_facade_cache_misses_total{route="`+pv+`"}`], eq(1), "1"},
		{`plugin_facade_cache_hits_total{route="` + pv + `"}`, unary[`plugin_facade_cache_hits_total{route="`+pv+`"}`], eq(1), "1"},
		{`plugin_facade_coalesced_calls_total{route="` + cp + `"}`, unary[`plugin_facade_coalesced_calls_total{route="`+cp+`"}`], eq(2), "2"},
		{"plugin_facade_watches_open", m["plugin_facade_watches_open"], eq(1), "1"},
		{"plugin_facade_watch_poll_loops", m["plugin_facade_watch_poll_loops"], eq(1), "1"},
		{`plugin_facade_watch_polls_total{result="ok"}`, m[`plugin_facade_watch_polls_total{result="ok"}`], atLeast(1), "at least 1"},
		{`plugin_facade_upstream_rate_limit_limit{route="` + pv + `"}`, m[`plugin_facade_upstream_rate_limit_limit{route="`+pv+`"}`], eq(limit), strconv.Itoa(limit)},
		{`plugin_facade_guard_refusals_total{route="` + cp + `"}`, after[`plugin_facade_guard_refusals_total{route="`+cp+`"}`], eq(1), "1"},
		{"plugin_facade_default_credentials_rejected", m["plugin_facade_default_credentials_rejected"], eq(0), "0"},
		{`grpc_server_handled_total{grpc_code="OK",grpc_method="GetPluginVersion",grpc_service="confluent.plugin.v1.PluginService",grpc_type="unary",protocol="rest"}`,
			m[`grpc_server_handled_total{grpc_code="OK",grpc_method="GetPluginVersion",grpc_service="confluent.plugin.v1.PluginService",grpc_type="unary",protocol="rest"}`], eq(2), "2"},
		{`grpc_server_handled_total{grpc_code="OK",grpc_method="GetPluginVersion",grpc_service="confluent.plugin.v1.PluginService",grpc_type="unary",protocol="grpc"}`,
			m[`grpc_server_handled_total{grpc_code="OK",grpc_method="GetPluginVersion",grpc_service="confluent.plugin.v1.PluginService",grpc_type="unary",protocol="grpc"}`], eq(0), "0"},
	}
	for _, tt := range tests {
		if !tt.want(tt.got) {
			t.Errorf("%s = %v, want %s", tt.series, tt.got, tt.says)
		}
	}
	var buildInfo bool
	for series, v := range m {
		buildInfo = buildInfo || (strings.HasPrefix(series, "plugin_facade_build_info{") && strings.Contains(series, `version="dev"`) && v == 1)
	}
	if !buildInfo {
		t.Error(`no plugin_facade_build_info{version="dev",...} 1`)
	}
}

func eq(want float64) func(float64) bool      { return func(v float64) bool { return v == want } }
func atLeast(want float64) func(float64) bool { return func(v float64) bool { return v >= want } }

// scrapeText reads /metrics into series (name{labels} as exposed) → value;
// an absent series reads as 0 from the map, so tests that want 0 also check
// presence through other series of the same family.
func scrapeText(t *testing.T, base string) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for line := range strings.Lines(get(t, base+"/metrics")) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}
