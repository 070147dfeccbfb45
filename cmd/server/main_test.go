package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/acme/plugin-facade/internal/fleet"
	"github.com/acme/plugin-facade/internal/server"
	"github.com/acme/plugin-facade/internal/service"
	"github.com/acme/plugin-facade/internal/testutil"
	"github.com/acme/plugin-facade/internal/upstream"
)

// env returns the environment of the pairs kv (name, value, ...), as
// os.Environ gives it.
func env(kv ...string) []string {
	var out []string
	for i := 0; i+1 < len(kv); i += 2 {
		out = append(out, kv[i]+"="+kv[i+1])
	}
	return out
}

// withKey is env with a default Cloud API key set.
func withKey(kv ...string) []string {
	return append(env(kv...), envAPIKey+"=KEY", envAPISecret+"=hunter2")
}

func TestParseConfig(t *testing.T) {
	defaults := defaultConfig()
	defaults.GRPCAddr, defaults.HTTPAddr = ":9090", ":8080"
	defaults.Credentials = upstream.BasicAuth("KEY", "hunter2")
	fromEnv := defaults
	fromEnv.GRPCAddr, fromEnv.HTTPAddr, fromEnv.Upstream.BaseURL = "127.0.0.1:1", "127.0.0.1:2", "http://localhost:3"
	fromEnv.Service.UpstreamTimeout, fromEnv.Server.ShutdownTimeout, fromEnv.LogLevel = 2*time.Second, 3*time.Second, slog.LevelDebug
	tests := []struct {
		name    string
		args    []string
		env     []string
		want    *config // the whole configuration
		check   func(t *testing.T, c config)
		wantErr string
	}{
		{name: "defaults", env: withKey(), want: &defaults},
		{
			name: "environment variables", env: withKey("PLUGIN_FACADE_GRPC_ADDR", "127.0.0.1:1", "PLUGIN_FACADE_HTTP_ADDR", "127.0.0.1:2",
				"PLUGIN_FACADE_UPSTREAM_URL", "http://localhost:3", "PLUGIN_FACADE_UPSTREAM_TIMEOUT", "2s",
				"PLUGIN_FACADE_SHUTDOWN_TIMEOUT", "3s", "PLUGIN_FACADE_LOG_LEVEL", "debug", "PLUGIN_FACADE_LOG_FORMAT", "json"),
			want: &fromEnv,
		},
		{
			name: "flags win over the environment", args: []string{"--grpc-addr", "127.0.0.1:5"},
			env: withKey("PLUGIN_FACADE_GRPC_ADDR", "127.0.0.1:1"),
			check: func(t *testing.T, c config) {
				if c.GRPCAddr != "127.0.0.1:5" {
					t.Errorf("GRPCAddr = %s, want the flag's", c.GRPCAddr)
				}
			},
		},
		{
			name: "sandbox from the environment, without a key", env: env("PLUGIN_FACADE_SANDBOX", "true"),
			check: func(t *testing.T, c config) {
				if !c.Sandbox || !c.Credentials.IsZero() {
					t.Errorf("Sandbox = %v, credentials %v", c.Sandbox, c.Credentials)
				}
			},
		},
		{
			name: "no default key, explicitly", args: []string{"--no-default-credentials"}, env: env(),
			check: func(t *testing.T, c config) {
				if !c.NoDefaultCredentials || !c.Credentials.IsZero() {
					t.Errorf("NoDefaultCredentials = %v, credentials %v", c.NoDefaultCredentials, c.Credentials)
				}
			},
		},
		{name: "no default key", env: env(), wantErr: "no default credential: set CONFLUENT_CLOUD_API_KEY and CONFLUENT_CLOUD_API_SECRET (CONFLUENT_CLOUD_API_KEY unset, CONFLUENT_CLOUD_API_SECRET unset), or pass --no-default-credentials"},
		{name: "empty key and secret", env: env(envAPIKey, "", envAPISecret, " "), wantErr: "(CONFLUENT_CLOUD_API_KEY empty, CONFLUENT_CLOUD_API_SECRET empty)"},
		{name: "key without secret", env: env(envAPIKey, "KEY"), wantErr: "set both CONFLUENT_CLOUD_API_KEY and CONFLUENT_CLOUD_API_SECRET, or neither (CONFLUENT_CLOUD_API_KEY set, CONFLUENT_CLOUD_API_SECRET unset)"},
		{name: "secret without key", env: env(envAPIKey, "", envAPISecret, "hunter2"), wantErr: "set both"},
		{name: "half-set, though allowed none", args: []string{"--no-default-credentials"}, env: env(envAPISecret, "hunter2"), wantErr: "set both"},
		{name: "a key and no-default-credentials", args: []string{"--no-default-credentials"}, env: withKey(), wantErr: "exclude each other"},
		{name: "sandbox with an upstream", args: []string{"--sandbox", "--upstream-url", "http://x"}, env: env(), wantErr: "exclude each other"},
		{name: "credentials in the upstream URL", args: []string{"--upstream-url", "https://k:hunter2@api.confluent.cloud"}, env: withKey(), wantErr: "must not contain credentials"},
		{name: "a key as the upstream URL's user", args: []string{"--upstream-url", "https://hunter2@api.confluent.cloud"}, env: withKey(), wantErr: "must not contain credentials"},
		{name: "relative upstream URL", args: []string{"--upstream-url", "api.confluent.cloud"}, env: withKey(), wantErr: "--upstream-url: "},
		{name: "plain HTTP off loopback", args: []string{"--upstream-url", "http://api.confluent.cloud"}, env: withKey(), wantErr: "plain HTTP would send credentials in clear"},
		{
			name: "plain HTTP off loopback, allowed explicitly", args: []string{"--upstream-url", "http://proxy.internal:8080", "--upstream-insecure"}, env: withKey(),
			check: func(t *testing.T, c config) {
				if !c.Upstream.AllowInsecure {
					t.Error("AllowInsecure = false")
				}
			},
		},
		{
			name: "upstream behaviour from the environment",
			env: withKey("PLUGIN_FACADE_UPSTREAM_MAX_ATTEMPTS", "5", "PLUGIN_FACADE_RATE_LIMIT_GUARD", "false",
				"PLUGIN_FACADE_CACHE_TTL", "2s", "PLUGIN_FACADE_UPSTREAM_MAX_BODY_BYTES", "65536"),
			check: func(t *testing.T, c config) {
				if u := c.Upstream; u.MaxAttempts != 5 || u.RateLimitGuard || u.CacheTTL != 2*time.Second || u.MaxBodyBytes != 65536 {
					t.Errorf("upstream config = %+v", u)
				}
			},
		},
		{
			name: "Redis from the environment",
			env:  withKey("PLUGIN_FACADE_REDIS_URL", "rediss://facade:hunter2@redis.internal:6380/2", "PLUGIN_FACADE_REDIS_TIMEOUT", "200ms"),
			check: func(t *testing.T, c config) {
				if c.Fleet.URL != "rediss://facade:hunter2@redis.internal:6380/2" || c.Fleet.Timeout != 200*time.Millisecond {
					t.Errorf("Redis URL %q, timeout %v", c.Fleet.URL, c.Fleet.Timeout)
				}
			},
		},
		{name: "Redis URL of another scheme", args: []string{"--redis-url", "http://redis.internal:6379"}, env: withKey(), wantErr: `--redis-url: "http://redis.internal:6379": the scheme must be redis or rediss`},
		{name: "Redis URL with a bad database", env: withKey("PLUGIN_FACADE_REDIS_URL", "redis://facade:hunter2@redis.internal:6379/x"), wantErr: "--redis-url: "},
		{name: "zero Redis timeout", args: []string{"--redis-timeout", "0"}, env: withKey(), wantErr: "--redis-timeout: must be positive"},
		{name: "too many attempts", args: []string{"--upstream-max-attempts", "50"}, env: withKey(), wantErr: "--upstream-max-attempts: must be between 1 and 10"},
		{name: "zero attempts", args: []string{"--upstream-max-attempts", "0"}, env: withKey(), wantErr: "between 1 and 10"},
		{name: "zero retry wait", args: []string{"--upstream-max-retry-wait", "0"}, env: withKey(), wantErr: "--upstream-max-retry-wait: must be positive"},
		{name: "tiny body cap", args: []string{"--upstream-max-body-bytes", "10"}, env: withKey(), wantErr: "--upstream-max-body-bytes: must be at least 1024"},
		{name: "negative cache TTL", args: []string{"--cache-ttl", "-1s"}, env: withKey(), wantErr: "--cache-ttl: must not be negative"},
		{name: "empty cache", args: []string{"--cache-max-entries", "0"}, env: withKey(), wantErr: "--cache-max-entries: must be at least 1"},
		{name: "negative upstream timeout", args: []string{"--upstream-timeout", "-1s"}, env: withKey(), wantErr: "--upstream-timeout: must not be negative"},
		{name: "zero shutdown timeout", args: []string{"--shutdown-timeout", "0"}, env: withKey(), wantErr: "--shutdown-timeout: must be positive"},
		{name: "no watchers", args: []string{"--max-watchers", "0"}, env: withKey(), wantErr: "--max-watchers: must be at least 1"},
		{name: "zero read timeout", args: []string{"--read-timeout", "0s"}, env: withKey(), wantErr: "--read-timeout: must be positive"},
		{name: "tiny header bound", args: []string{"--max-header-bytes", "100"}, env: withKey(), wantErr: "--max-header-bytes: must be at least 4096"},
		{name: "negative in-flight per caller", args: []string{"--max-in-flight-per-caller", "-1"}, env: withKey(), wantErr: "--max-in-flight-per-caller: must not be negative"},
		{name: "every problem at once", args: []string{"--shutdown-timeout", "0", "--cache-ttl", "-1s"}, env: env(), wantErr: "--cache-ttl: must not be negative\n--shutdown-timeout: must be positive\nno default credential"},
		{name: "gRPC address without a port", args: []string{"--grpc-addr", "nonsense"}, env: withKey(), wantErr: `--grpc-addr "nonsense": not host:port`},
		{name: "HTTP address with a bad port", args: []string{"--http-addr", "127.0.0.1:-1"}, env: withKey(), wantErr: `--http-addr "127.0.0.1:-1": port "-1" is not a port number`},
		{name: "debug address off loopback", args: []string{"--debug-addr", ":6060"}, env: withKey(), wantErr: "--debug-addr must be a loopback address"},
		{name: "bad log format", args: []string{"--log-format", "xml"}, env: withKey(), wantErr: "json or text"},
		{name: "bad duration in the environment", env: withKey("PLUGIN_FACADE_UPSTREAM_TIMEOUT", "soon"), wantErr: "PLUGIN_FACADE_UPSTREAM_TIMEOUT"},
		{name: "bad log level", args: []string{"--log-level", "loud"}, env: withKey(), wantErr: "log-level"},
		{name: "stray argument", args: []string{"serve"}, env: withKey(), wantErr: "unexpected arguments: serve (commands: help, version)"},
		{name: "unknown flag", args: []string{"--port", "1"}, env: withKey(), wantErr: "flag provided but not defined: -port"},
		{name: "help", args: []string{"help"}, env: env(), want: &config{Command: "help"}},
		{name: "--help", args: []string{"--help"}, env: env(), want: &config{Command: "help"}},
		{name: "-h", args: []string{"-h"}, env: env(), want: &config{Command: "help"}},
		{name: "version", args: []string{"version"}, env: env(), want: &config{Command: "version"}},
		{name: "--version", args: []string{"--version"}, env: env(), want: &config{Command: "version"}},
		{
			name: "a misspelled variable", env: withKey("PLUGIN_FACADE_CACHE_TTLL", "5s", "PLUGIN_FACADE_NOTHING_LIKE_ANY", "1"),
			check: func(t *testing.T, c config) {
				want := []string{"PLUGIN_FACADE_CACHE_TTLL is not a setting of plugin-facade; it is ignored; did you mean PLUGIN_FACADE_CACHE_TTL?",
					"PLUGIN_FACADE_NOTHING_LIKE_ANY is not a setting of plugin-facade; it is ignored"}
				slices.Sort(c.Warnings)
				if diff := cmp.Diff(want, c.Warnings); diff != "" {
					t.Errorf("warnings (-want +got):\n%s", diff)
				}
				if c.Upstream.CacheTTL != 0 {
					t.Errorf("CacheTTL = %v", c.Upstream.CacheTTL)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parseConfig(tt.args, tt.env)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to mention %q", err, tt.wantErr)
				}
				if exitCode(err) != 2 {
					t.Errorf("exit status %d, want 2", exitCode(err))
				}
				if strings.Contains(err.Error(), "hunter2") {
					t.Errorf("the secret appears in %q", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.want != nil {
				if diff := cmp.Diff(*tt.want, c, cmp.AllowUnexported(upstream.Authorization{})); diff != "" {
					t.Errorf("config (-want +got):\n%s", diff)
				}
				return
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
		`grpc_server_handled_total{grpc_code="OK",grpc_method="GetConnectorPlugin",grpc_service="confluent.plugin.v1.PluginService",grpc_type="unary",protocol="rest"} 1`,
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
		err := run(t.Context(), args, withKey(), io.Discard, io.Discard)
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

// TestEveryConfigFieldHasAFlag checks that each field of a package's Config
// is set by a flag, so that every Problem Validate reports is named by one.
func TestEveryConfigFieldHasAFlag(t *testing.T) {
	c := defaultConfig()
	_, _, owners := newFlagSet(&c)
	for i, typ := range []reflect.Type{reflect.TypeFor[upstream.Config](), reflect.TypeFor[service.Config](),
		reflect.TypeFor[server.Config](), reflect.TypeFor[fleet.Config]()} {
		// A field that is a struct of settings (server.Config.Limits) has a
		// flag for each of its own fields, named "Limits.ReadTimeout".
		var names []string
		var walk func(prefix string, typ reflect.Type)
		walk = func(prefix string, typ reflect.Type) {
			for f := range typ.Fields() {
				if f.Type.Kind() == reflect.Struct {
					walk(prefix+f.Name+".", f.Type)
					continue
				}
				names = append(names, prefix+f.Name)
			}
		}
		walk("", typ)
		for _, name := range names {
			if owners[i].flags[name] == "" {
				t.Errorf("%s.%s has no flag", typ, name)
			}
		}
		if len(owners[i].flags) != len(names) {
			t.Errorf("%s: %d flags for %d fields", typ, len(owners[i].flags), len(names))
		}
	}
}
