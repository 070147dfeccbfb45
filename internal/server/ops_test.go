package server

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"log/slog"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	pluginv1 "github.com/acme/plugin-facade/gen/go/confluent/plugin/v1"
	"github.com/acme/plugin-facade/internal/sandbox"
	"github.com/acme/plugin-facade/internal/service"
	"github.com/acme/plugin-facade/internal/telemetry"
	"github.com/acme/plugin-facade/internal/testutil"
	"github.com/acme/plugin-facade/internal/upstream"
	"github.com/acme/plugin-facade/internal/upstream/upstreamtest"
)

// logBuffer collects JSON log lines, safe for the server's goroutines.
type logBuffer struct {
	testutil.Buffer
}

func (l *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// lines returns the decoded log lines whose msg is msg.
func (l *logBuffer) lines(t *testing.T, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(l.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line is not JSON: %v\n%s", err, line)
		}
		if m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// instrumentedStack is a stack in front of the sandbox wired as cmd/server
// wires it: upstream metrics and tracing on the client, one registry, a JSON
// call log.
func instrumentedStack(t *testing.T, up string, prepare ...func(*Server)) (*stack, *logBuffer) {
	t.Helper()
	reg := telemetry.NewRegistry()
	tp, err := telemetry.NewTracerProvider(t.Context(), "test", os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	uc, err := upstream.New(up, upstream.WithHooks(telemetry.NewUpstreamMetrics(reg).Hooks()), upstream.WithTransport(telemetry.Transport(tp)))
	if err != nil {
		t.Fatal(err)
	}
	var logs logBuffer
	svc := service.New(uc, service.WithDefaultCredentials(sandboxKey))
	return startServerWith(t, svc, nil, prepare, WithLogger(logs.logger()), WithRegistry(reg), WithTracerProvider(tp)), &logs
}

func startSandbox(t *testing.T, opts ...sandbox.Option) *sandbox.Server {
	t.Helper()
	return testutil.StartSandbox(t, opts...)
}

// TestCallLog checks that each call, over gRPC or REST, is one log line with
// the method, code, duration and what the upstream answered.
func TestCallLog(t *testing.T) {
	sb := startSandbox(t)
	s, logs := instrumentedStack(t, sb.URL())

	if _, err := s.client.GetConnectorPlugin(t.Context(), &pluginv1.GetConnectorPluginRequest{Id: sandbox.PluginID}); err != nil {
		t.Fatal(err)
	}
	if r := s.get(t, "/connect/v1/custom-connector-plugins/ccp-00000"); r.status != http.StatusNotFound {
		t.Fatalf("REST = %d %s, want 404", r.status, r.body)
	}
	if _, err := s.client.GetConnectorPlugin(t.Context(), &pluginv1.GetConnectorPluginRequest{Id: "no spaces"}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("invalid id: %v", err)
	}
	// Probes are not calls worth a line each.
	if _, err := healthpb.NewHealthClient(s.conn).Check(t.Context(), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	s.get(t, "/readyz")

	lines := logs.lines(t, "finished call")
	want := []struct {
		protocol, code string
		upstreamStatus float64 // JSON numbers; 0: absent
	}{
		{"grpc", "OK", 200},
		{"rest", "NotFound", 404},
		{"grpc", "InvalidArgument", 0},
	}
	if len(lines) != len(want) {
		t.Fatalf("%d call log lines, want %d:\n%v", len(lines), len(want), lines)
	}
	for i, w := range want {
		l := lines[i]
		if l["grpc.method"] != "GetConnectorPlugin" || l["grpc.service"] != "confluent.plugin.v1.PluginService" ||
			l["protocol"] != w.protocol || l["grpc.code"] != w.code {
			t.Errorf("line %d = %v, want method GetConnectorPlugin, protocol %s, code %s", i, l, w.protocol, w.code)
		}
		if ms, _ := l["grpc.time_ms"].(string); ms == "" || strings.Trim(ms, "0123456789.") != "" {
			t.Errorf("line %d has no duration (grpc.time_ms): %v", i, l)
		}
		if w.upstreamStatus == 0 {
			if _, ok := l["upstream_status"]; ok {
				t.Errorf("line %d: upstream_status for a call that never reached the upstream: %v", i, l)
			}
			continue
		}
		if l["upstream_status"] != w.upstreamStatus || l["upstream_attempts"] != 1.0 || l["upstream_request_id"] == "" || l["upstream_request_id"] == nil {
			t.Errorf("line %d = %v, want upstream_status %v, upstream_attempts 1 and upstream_request_id", i, l, w.upstreamStatus)
		}
	}
	if addr, _ := lines[1]["peer.address"].(string); !strings.HasPrefix(addr, "127.0.0.1") {
		t.Errorf("REST line peer.address = %q, want the HTTP client's address", addr)
	}
}

// scrape reads /metrics and parses it.
func scrape(t *testing.T, httpURL string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(httpURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics = %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return fams
}

// value is the value of the counter, gauge or histogram count in family name
// whose labels include labels (name=value pairs); -1 when there is none.
func value(fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	f, ok := fams[name]
	if !ok {
		return -1
	}
next:
	for _, m := range f.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for i := 0; i+1 < len(labels); i += 2 {
			if have[labels[i]] != labels[i+1] {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue()
		case m.Gauge != nil:
			return m.GetGauge().GetValue()
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount())
		}
	}
	return -1
}

func TestMetrics(t *testing.T) {
	sb := startSandbox(t, sandbox.WithRateLimit(100, time.Minute))
	s, _ := instrumentedStack(t, sb.URL())

	if _, err := s.client.GetConnectorPlugin(t.Context(), &pluginv1.GetConnectorPluginRequest{Id: sandbox.PluginID}); err != nil {
		t.Fatal(err)
	}
	if r := s.get(t, "/connect/v1/custom-connector-plugins/"+sandbox.PluginID); r.status != http.StatusOK {
		t.Fatalf("REST = %d", r.status)
	}
	if r := s.get(t, "/ccpm/v1/plugins/ccp-12345/versions/ver-00000?environment=env-00000"); r.status != http.StatusNotFound {
		t.Fatalf("REST = %d", r.status)
	}
	// A 503, retried once.
	sb.Inject(sandbox.Fault{Kind: sandbox.Fault503})
	if _, err := s.client.GetConnectorPlugin(t.Context(), &pluginv1.GetConnectorPluginRequest{Id: sandbox.FailedPluginID}); err != nil {
		t.Fatal(err)
	}

	fams := scrape(t, s.httpURL)
	tests := []struct {
		name   string
		labels []string
		want   float64
	}{
		// gRPC and REST calls alike, from go-grpc-middleware's provider,
		// told apart by the protocol label.
		{"grpc_server_handled_total", []string{"protocol", "grpc", "grpc_method", "GetConnectorPlugin", "grpc_code", "OK"}, 2},
		{"grpc_server_handled_total", []string{"protocol", "rest", "grpc_method", "GetConnectorPlugin", "grpc_code", "OK"}, 1},
		{"grpc_server_handled_total", []string{"protocol", "rest", "grpc_method", "GetPluginVersion", "grpc_code", "NotFound"}, 1},
		{"grpc_server_handled_total", []string{"protocol", "grpc", "grpc_method", "GetPluginVersion", "grpc_code", "NotFound"}, 0},
		{"grpc_server_handled_total", []string{"protocol", "connect", "grpc_method", "GetPluginVersion", "grpc_code", "OK"}, 0},
		{"grpc_server_handled_total", []string{"protocol", "grpcweb", "grpc_method", "GetPluginVersion", "grpc_code", "OK"}, 0},
		{"grpc_server_handling_seconds", []string{"protocol", "grpc", "grpc_method", "GetConnectorPlugin"}, 2},
		{"grpc_server_handling_seconds", []string{"protocol", "rest", "grpc_method", "GetConnectorPlugin"}, 1},
		{"plugin_facade_watches_open", nil, 0},
		// The upstream client, through its hooks.
		{"plugin_facade_upstream_requests_total", []string{"route", upstream.RouteConnectorPlugin, "code", "200"}, 3},
		{"plugin_facade_upstream_requests_total", []string{"route", upstream.RouteConnectorPlugin, "code", "503"}, 1},
		{"plugin_facade_upstream_retries_total", []string{"route", upstream.RouteConnectorPlugin, "reason", "503"}, 1},
		{"plugin_facade_upstream_requests_total", []string{"route", upstream.RoutePluginVersion, "code", "404"}, 1},
		{"plugin_facade_upstream_request_duration_seconds", []string{"route", upstream.RouteConnectorPlugin}, 4},
		{"plugin_facade_upstream_rate_limit_remaining", []string{"route", upstream.RoutePluginVersion}, 97},
	}
	for _, tt := range tests {
		if got := value(fams, tt.name, tt.labels...); got != tt.want {
			t.Errorf("%s%v = %v, want %v", tt.name, tt.labels, got, tt.want)
		}
	}
	for _, name := range []string{"go_goroutines", "process_cpu_seconds_total"} {
		if _, ok := fams[name]; !ok {
			t.Errorf("no %s: the Go runtime and process collectors are missing", name)
		}
	}
}

// traceparent is a caller's W3C trace context.
const (
	callerTraceID     = "4bf92f3577b34da6a3ce929d0e0e4736"
	callerSpanID      = "00f067aa0ba902b7"
	callerTraceparent = "00-" + callerTraceID + "-" + callerSpanID + "-01"
)

// TestTraceContextReachesUpstream sends a traceparent over gRPC and over REST,
// with no exporter configured, and checks that the upstream request carries
// the same trace id, under a span of the facade's own.
func TestTraceContextReachesUpstream(t *testing.T) {
	up := upstreamtest.Start(t, upstreamtest.Response{Status: 200,
		Body: `{"api_version":"connect/v1","kind":"CustomConnectorPlugin","id":"ccp-12345"}`})
	s, logs := instrumentedStack(t, up.URL)

	check := func(t *testing.T) {
		t.Helper()
		got := strings.Split(up.Last(t).Header.Get("traceparent"), "-")
		if len(got) != 4 || got[1] != callerTraceID {
			t.Fatalf("upstream traceparent = %q, want trace id %s", up.Last(t).Header.Get("traceparent"), callerTraceID)
		}
		if got[2] == callerSpanID {
			t.Errorf("upstream parent span = the caller's: the facade made no span of its own")
		}
	}
	t.Run("gRPC metadata", func(t *testing.T) {
		ctx := metadata.AppendToOutgoingContext(t.Context(), "traceparent", callerTraceparent)
		if _, err := s.client.GetConnectorPlugin(ctx, &pluginv1.GetConnectorPluginRequest{Id: "ccp-12345"}); err != nil {
			t.Fatal(err)
		}
		check(t)
	})
	t.Run("HTTP header", func(t *testing.T) {
		if r := s.get(t, "/connect/v1/custom-connector-plugins/ccp-12345", "traceparent", callerTraceparent); r.status != http.StatusOK {
			t.Fatalf("REST = %d %s", r.status, r.body)
		}
		check(t)
	})
	for _, l := range logs.lines(t, "finished call") {
		if l["trace_id"] != callerTraceID {
			t.Errorf("call log trace_id = %v, want %s", l["trace_id"], callerTraceID)
		}
	}
}

// gatedUpstream answers like the sandbox's PluginID once the test opens the
// gate, and tells the test when each request arrives.
type gatedUpstream struct {
	URL     string
	arrived chan struct{}
	gate    chan struct{}
	once    sync.Once
}

func startGatedUpstream(t *testing.T) *gatedUpstream {
	g := &gatedUpstream{arrived: make(chan struct{}, 16), gate: make(chan struct{})}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.arrived <- struct{}{}
		select {
		case <-g.gate:
		case <-r.Context().Done():
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"api_version":"connect/v1","kind":"CustomConnectorPlugin","id":"ccp-12345","display_name":"Slow"}`))
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { g.open() })
	g.URL = srv.URL
	return g
}

func (g *gatedUpstream) open() { g.once.Do(func() { close(g.gate) }) }

func (g *gatedUpstream) waitArrivals(t *testing.T, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		select {
		case <-g.arrived:
		case <-time.After(10 * time.Second):
			t.Fatalf("only %d of %d calls reached the upstream", i, n)
		}
	}
}

// poll calls f every 20ms until it returns true, failing after 10s.
func poll(t *testing.T, what string, f func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !f(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("after 10s: %s", what)
		}
	}
}

// getOK GETs url and fails unless the answer is 200.
func getOK(url string) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return errors.New(resp.Status)
	}
	return nil
}

// waitNotReady waits for /readyz to answer 503, as it must once shutdown
// begins, while the HTTP server still answers.
func waitNotReady(t *testing.T, httpURL string) {
	t.Helper()
	poll(t, "/readyz still ready during the drain", func() bool {
		resp, err := http.Get(httpURL + "/readyz")
		if err != nil {
			t.Fatalf("/readyz during the drain: %v", err)
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusServiceUnavailable
	})
}

// TestGracefulShutdown stops the server while a gRPC and a REST call are in
// flight: health turns NOT_SERVING at once (gRPC watchers are told, /readyz
// answers 503, /healthz still 200), both calls complete, and Serve returns nil.
func TestGracefulShutdown(t *testing.T) {
	up := startGatedUpstream(t)
	uc, err := upstream.New(up.URL)
	if err != nil {
		t.Fatal(err)
	}
	r := serve(t, service.New(uc, service.WithDefaultCredentials(sandboxKey)), WithShutdownTimeout(30*time.Second))
	conn, err := grpc.NewClient(r.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := pluginv1.NewPluginServiceClient(conn)
	httpURL := "http://" + r.httpAddr

	// Load balancers watch the health of the server and of the service.
	watchCtx, endWatch := context.WithCancel(t.Context())
	defer endWatch()
	var watches []healthpb.Health_WatchClient
	for _, name := range []string{"", pluginv1.PluginService_ServiceDesc.ServiceName} {
		w, err := healthpb.NewHealthClient(conn).Watch(watchCtx, &healthpb.HealthCheckRequest{Service: name})
		if err != nil {
			t.Fatal(err)
		}
		if resp, err := w.Recv(); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("health of %q before shutdown = %v, %v", name, resp, err)
		}
		watches = append(watches, w)
	}

	results := make(chan error, 2)
	go func() {
		_, err := client.GetConnectorPlugin(t.Context(), &pluginv1.GetConnectorPluginRequest{Id: "ccp-12345"})
		results <- err
	}()
	// Another id than the gRPC call's, which would share its request.
	go func() { results <- getOK(httpURL + "/connect/v1/custom-connector-plugins/ccp-23456") }()
	up.waitArrivals(t, 2)

	r.stop()
	for i, w := range watches {
		if resp, err := w.Recv(); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
			t.Errorf("health watch %d once shutdown began = %v, %v; want NOT_SERVING", i, resp, err)
		}
	}
	endWatch() // as a watcher that saw NOT_SERVING would: a watch is a call in flight too
	waitNotReady(t, httpURL)
	if resp, err := http.Get(httpURL + "/healthz"); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("/healthz during the drain = %v, %v; want 200 (alive)", resp, err)
	} else {
		resp.Body.Close()
	}
	select {
	case err := <-results:
		t.Fatalf("a call finished before its upstream answered: %v", err)
	default:
	}

	up.open()
	for i := 0; i < 2; i++ {
		if err := <-results; err != nil {
			t.Errorf("a call in flight at shutdown failed: %v", err)
		}
	}
	if err := r.wait(t); err != nil {
		t.Errorf("Serve = %v, want nil", err)
	}
	if _, err := client.GetConnectorPlugin(t.Context(), &pluginv1.GetConnectorPluginRequest{Id: "ccp-12345"}); status.Code(err) != codes.Unavailable {
		t.Errorf("a call after shutdown: %v, want Unavailable", err)
	}
}

// TestLimits checks the bounds on what one request may carry.
func TestLimits(t *testing.T) {
	s := startStack(t, []service.Option{service.WithDefaultCredentials(sandboxKey)})
	before := s.sandbox.Requests()
	_, err := s.client.GetConnectorPlugin(t.Context(), &pluginv1.GetConnectorPluginRequest{Id: strings.Repeat("x", maxRecvMsgBytes)})
	if status.Code(err) != codes.ResourceExhausted {
		t.Errorf("a request message over %d bytes: %v, want ResourceExhausted", maxRecvMsgBytes, err)
	}
	if r := s.get(t, "/connect/v1/custom-connector-plugins/ccp-12345", "X-Padding", strings.Repeat("x", 2*DefaultMaxHeaderBytes)); r.status != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("headers over %d bytes: %d, want 431", DefaultMaxHeaderBytes, r.status)
	}
	if n := s.sandbox.Requests() - before; n != 0 {
		t.Errorf("%d oversized requests reached the upstream", n)
	}
}
