package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/acme/plugin-facade/internal/testutil"
	"github.com/acme/plugin-facade/internal/upstream"
)

func env(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

func TestParseConfig(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		env     func(string) string
		check   func(t *testing.T, c config)
		wantErr string
	}{
		{
			name: "defaults", env: env(),
			check: func(t *testing.T, c config) {
				want := config{GRPCAddr: ":9090", HTTPAddr: ":8080", UpstreamURL: "https://api.confluent.cloud",
					UpstreamTimeout: 30 * time.Second, UpstreamMaxAttempts: 3, UpstreamMaxWait: 10 * time.Second,
					UpstreamMaxBody: 1 << 20, RateLimitGuard: true, CacheMaxEntries: 1024, ShutdownTimeout: 15 * time.Second,
					LogLevel: slog.LevelInfo, LogFormat: "json", RedisTimeout: 50 * time.Millisecond,
					CallerShare: 0.2, CallerPolicyCheck: 5 * time.Second}
				if diff := cmp.Diff(want, c, cmp.AllowUnexported(upstream.Authorization{})); diff != "" {
					t.Errorf("defaults (-want +got):\n%s", diff)
				}
			},
		},
		{
			name: "environment variables", env: env("PLUGIN_FACADE_GRPC_ADDR", "127.0.0.1:1", "PLUGIN_FACADE_HTTP_ADDR", "127.0.0.1:2",
				"PLUGIN_FACADE_UPSTREAM_URL", "http://localhost:3", "PLUGIN_FACADE_UPSTREAM_TIMEOUT", "2s",
				"PLUGIN_FACADE_SHUTDOWN_TIMEOUT", "3s", "PLUGIN_FACADE_LOG_LEVEL", "debug", "PLUGIN_FACADE_LOG_FORMAT", "json"),
			check: func(t *testing.T, c config) {
				want := config{GRPCAddr: "127.0.0.1:1", HTTPAddr: "127.0.0.1:2", UpstreamURL: "http://localhost:3",
					UpstreamTimeout: 2 * time.Second, UpstreamMaxAttempts: 3, UpstreamMaxWait: 10 * time.Second,
					UpstreamMaxBody: 1 << 20, RateLimitGuard: true, CacheMaxEntries: 1024, ShutdownTimeout: 3 * time.Second,
					LogLevel: slog.LevelDebug, LogFormat: "json", RedisTimeout: 50 * time.Millisecond,
					CallerShare: 0.2, CallerPolicyCheck: 5 * time.Second}
				if diff := cmp.Diff(want, c, cmp.AllowUnexported(upstream.Authorization{})); diff != "" {
					t.Errorf("from the environment (-want +got):\n%s", diff)
				}
			},
		},
		{
			name: "flags win over the environment", args: []string{"--grpc-addr", "127.0.0.1:5"},
			env: env("PLUGIN_FACADE_GRPC_ADDR", "127.0.0.1:1"),
			check: func(t *testing.T, c config) {
				if c.GRPCAddr != "127.0.0.1:5" {
					t.Errorf("GRPCAddr = %s, want the flag's", c.GRPCAddr)
				}
			},
		},
		{
			name: "sandbox from the environment", env: env("PLUGIN_FACADE_SANDBOX", "true"),
			check: func(t *testing.T, c config) {
				if !c.Sandbox {
					t.Error("Sandbox = false")
				}
			},
		},
		{
			name: "Cloud API key", env: env("CONFLUENT_CLOUD_API_KEY", "KEY", "CONFLUENT_CLOUD_API_SECRET", "hunter2"),
			check: func(t *testing.T, c config) {
				if c.Credentials != upstream.BasicAuth("KEY", "hunter2") {
					t.Errorf("Credentials = %v, want Basic", c.Credentials)
				}
			},
		},
		{name: "key without secret", env: env("CONFLUENT_CLOUD_API_KEY", "KEY"), wantErr: "set both CONFLUENT_CLOUD_API_KEY and CONFLUENT_CLOUD_API_SECRET"},
		{name: "secret without key", env: env("CONFLUENT_CLOUD_API_SECRET", "hunter2"), wantErr: "set both"},
		{name: "sandbox with an upstream", args: []string{"--sandbox", "--upstream-url", "http://x"}, env: env(), wantErr: "exclude each other"},
		{name: "credentials in the upstream URL", args: []string{"--upstream-url", "https://k:hunter2@api.confluent.cloud"}, env: env(), wantErr: "must not contain credentials"},
		{name: "a key as the upstream URL's user", args: []string{"--upstream-url", "https://hunter2@api.confluent.cloud"}, env: env(), wantErr: "must not contain credentials"},
		{name: "relative upstream URL", args: []string{"--upstream-url", "api.confluent.cloud"}, env: env(), wantErr: "--upstream-url"},
		{name: "plain HTTP off loopback", args: []string{"--upstream-url", "http://api.confluent.cloud"}, env: env(), wantErr: "plain HTTP would send credentials in clear"},
		{
			name: "plain HTTP off loopback, allowed explicitly", args: []string{"--upstream-url", "http://proxy.internal:8080", "--upstream-insecure"}, env: env(),
			check: func(t *testing.T, c config) {
				if !c.UpstreamInsecure {
					t.Error("UpstreamInsecure = false")
				}
			},
		},
		{
			name: "upstream behaviour from the environment",
			env: env("PLUGIN_FACADE_UPSTREAM_MAX_ATTEMPTS", "5", "PLUGIN_FACADE_RATE_LIMIT_GUARD", "false",
				"PLUGIN_FACADE_CACHE_TTL", "2s", "PLUGIN_FACADE_UPSTREAM_MAX_BODY_BYTES", "65536"),
			check: func(t *testing.T, c config) {
				if c.UpstreamMaxAttempts != 5 || c.RateLimitGuard || c.CacheTTL != 2*time.Second || c.UpstreamMaxBody != 65536 {
					t.Errorf("config = %+v", c)
				}
			},
		},
		{
			name: "Redis from the environment",
			env:  env("PLUGIN_FACADE_REDIS_URL", "rediss://facade:hunter2@redis.internal:6380/2", "PLUGIN_FACADE_REDIS_TIMEOUT", "200ms"),
			check: func(t *testing.T, c config) {
				if c.RedisURL != "rediss://facade:hunter2@redis.internal:6380/2" || c.RedisTimeout != 200*time.Millisecond {
					t.Errorf("Redis URL %q, timeout %v", c.RedisURL, c.RedisTimeout)
				}
			},
		},
		{name: "Redis URL of another scheme", args: []string{"--redis-url", "http://redis.internal:6379"}, env: env(), wantErr: "the scheme must be redis or rediss"},
		{name: "Redis URL with a bad database", env: env("PLUGIN_FACADE_REDIS_URL", "redis://facade:hunter2@redis.internal:6379/x"), wantErr: "--redis-url"},
		{name: "zero Redis timeout", args: []string{"--redis-timeout", "0"}, env: env(), wantErr: "--redis-timeout must be positive"},
		{name: "too many attempts", args: []string{"--upstream-max-attempts", "50"}, env: env(), wantErr: "between 1 and 10"},
		{name: "zero attempts", args: []string{"--upstream-max-attempts", "0"}, env: env(), wantErr: "between 1 and 10"},
		{name: "tiny body cap", args: []string{"--upstream-max-body-bytes", "10"}, env: env(), wantErr: "at least 1024"},
		{name: "negative cache TTL", args: []string{"--cache-ttl", "-1s"}, env: env(), wantErr: "must not be negative"},
		{name: "negative upstream timeout", args: []string{"--upstream-timeout", "-1s"}, env: env(), wantErr: "must not be negative"},
		{name: "zero shutdown timeout", args: []string{"--shutdown-timeout", "0"}, env: env(), wantErr: "must be positive"},
		{name: "debug address off loopback", args: []string{"--debug-addr", ":6060"}, env: env(), wantErr: "--debug-addr must be a loopback address"},
		{name: "bad log format", args: []string{"--log-format", "xml"}, env: env(), wantErr: "json or text"},
		{name: "bad duration in the environment", env: env("PLUGIN_FACADE_UPSTREAM_TIMEOUT", "soon"), wantErr: "PLUGIN_FACADE_UPSTREAM_TIMEOUT"},
		{name: "bad log level", args: []string{"--log-level", "loud"}, env: env(), wantErr: "log-level"},
		{name: "stray argument", args: []string{"serve"}, env: env(), wantErr: "unexpected arguments: serve"},
		{name: "unknown flag", args: []string{"--port", "1"}, env: env(), wantErr: "not defined"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			c, err := parseConfig(tt.args, tt.env, &out)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to mention %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "hunter2") || strings.Contains(out.String(), "hunter2") {
					t.Errorf("the secret appears in %q / %q", err, out.String())
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, c)
		})
	}
}

// TestRunSandbox runs the command as `make run` does (on loopback ports chosen
// by the system), follows the printed curl instructions, scrapes /metrics, and
// stops it. An OTLP endpoint in the environment turns span export on: the
// spans of the call reach a collector at the latest when the process stops.
func TestRunSandbox(t *testing.T) {
	var traceExports atomic.Int32
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/v1/traces" {
			traceExports.Add(1)
		}
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	defer collector.Close()
	// run decides whether to export from its getenv, and autoexport how to
	// from the process environment: both say the same, as in a real process.
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.URL)
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var stdout, stderr testutil.Buffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--sandbox", "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"},
			env("CONFLUENT_CLOUD_API_KEY", "REALKEY", "CONFLUENT_CLOUD_API_SECRET", "hunter2",
				"OTEL_EXPORTER_OTLP_ENDPOINT", collector.URL), &stdout, &stderr)
	}()

	curl := regexp.MustCompile(`curl -s (http://\S+/connect/v1/custom-connector-plugins/ccp-12345)\n`)
	var url string
	for deadline := time.Now().Add(10 * time.Second); url == "" && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if m := curl.FindStringSubmatch(stdout.String()); m != nil {
			url = m[1]
		}
		select {
		case err := <-done:
			t.Fatalf("run returned early: %v\n%s", err, stderr.String())
		default:
		}
	}
	if url == "" {
		t.Fatalf("no curl command printed:\n%s", stdout.String())
	}
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"display_name"`) {
		t.Errorf("GET %s = %d %s", url, resp.StatusCode, body)
	}
	metricsURL := url[:strings.Index(url, "/connect/")] + "/metrics"
	resp, err = http.Get(metricsURL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`grpc_server_handled_total{grpc_code="OK",grpc_method="GetConnectorPlugin",grpc_service="confluent.plugin.v1.PluginService",grpc_type="unary"} 1`,
		`plugin_facade_upstream_requests_total{code="200",route="/connect/v1/custom-connector-plugins/{id}"} 1`,
		"go_goroutines ", "process_resident_memory_bytes ",
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("GET %s lacks %s", metricsURL, want)
		}
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run after shutdown = %v, want nil", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("run did not return after its context ended")
	}
	for _, out := range []string{stdout.String(), stderr.String()} {
		if strings.Contains(out, "hunter2") || strings.Contains(out, "sandbox-secret") {
			t.Errorf("a secret was printed:\n%s", out)
		}
	}
	if traceExports.Load() == 0 {
		t.Error("no spans reached the OTLP endpoint set in OTEL_EXPORTER_OTLP_ENDPOINT")
	}
	if !strings.Contains(stderr.String(), "ignoring CONFLUENT_CLOUD_API_KEY") {
		t.Errorf("no warning that the sandbox ignores the configured key:\n%s", stderr.String())
	}
}

func TestRunReportsBusyPorts(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	for _, flag := range []string{"--grpc-addr", "--http-addr"} {
		args := []string{"--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", flag, busy.Addr().String()}
		err := run(t.Context(), args, env(), io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), flag) || !strings.Contains(err.Error(), "address already in use") {
			t.Errorf("%s on a busy port: err = %v, want it named with 'address already in use'", flag, err)
		}
	}
}

// TestDebugAddrServesPprof checks that --debug-addr serves the goroutine
// profile make soak reads.
func TestDebugAddrServesPprof(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var stderr testutil.Buffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--sandbox", "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--debug-addr", "127.0.0.1:0", "--log-format", "text"},
			env(), io.Discard, &stderr)
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run = %v", err)
		}
	}()
	line := regexp.MustCompile(`msg="serving pprof" addr=(\S+)`)
	var addr string
	for deadline := time.Now().Add(10 * time.Second); addr == "" && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if m := line.FindStringSubmatch(stderr.String()); m != nil {
			addr = m[1]
		}
	}
	if addr == "" {
		t.Fatalf("no pprof address logged:\n%s", stderr.String())
	}
	resp, err := http.Get("http://" + addr + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(string(body), "goroutine profile: total ") {
		t.Errorf("goroutine profile = %d %.80s", resp.StatusCode, body)
	}
}
