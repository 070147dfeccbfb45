package main

import (
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	pluginv1 "github.com/acme/plugin-facade/gen/go/confluent/plugin/v1"
	"github.com/acme/plugin-facade/internal/testutil"
)

// runMainEnv, set to 1, makes the test binary run main instead of the tests.
// It lacks the PLUGIN_FACADE_ prefix, which the server warns about.
const runMainEnv = "TEST_RUN_PLUGIN_FACADE_MAIN"

// TestMain lets the tests run this very binary as the server process, so that
// signals and exit statuses are tested for real.
func TestMain(m *testing.M) {
	if os.Getenv(runMainEnv) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// command returns the server as a child process with args and extra
// environment variables, its stdout and stderr in one buffer.
func command(t *testing.T, env []string, args ...string) (*exec.Cmd, *testutil.Buffer) {
	t.Helper()
	cmd, stdout, _ := commandApart(t, env, args...)
	cmd.Stderr = stdout
	return cmd, stdout
}

// commandApart is command with stdout and stderr in buffers of their own.
func commandApart(t *testing.T, env []string, args ...string) (cmd *exec.Cmd, stdout, stderr *testutil.Buffer) {
	t.Helper()
	cmd = exec.Command(os.Args[0], args...)
	cmd.Env = append(append(os.Environ(), runMainEnv+"=1"), env...)
	stdout, stderr = &testutil.Buffer{}, &testutil.Buffer{}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	return cmd, stdout, stderr
}

// TestExitStatus holds the process to its documented exit statuses and to
// where it writes what: help and version on stdout, a refusal on stderr in
// one line per problem and a pointer to --help, never the whole usage.
func TestExitStatus(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	key := []string{"CONFLUENT_CLOUD_API_KEY=KEY", "CONFLUENT_CLOUD_API_SECRET=hunter2"}
	loopback := []string{"--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"}
	refused := func(line string) string { return "plugin-facade: " + line + "\n" + seeHelp + "\n" }
	tests := []struct {
		name       string
		args       []string
		env        []string
		wantCode   int
		wantStdout string // a prefix
		wantStderr string // all of it, unless stderrHas
		stderrHas  bool
	}{
		{"invalid flag value", []string{"--log-format", "xml"}, key, 2, "", refused(`--log-format must be json or text, not "xml"`), false},
		{"invalid address", []string{"--grpc-addr", "nonsense"}, key, 2, "", refused(`--grpc-addr "nonsense": not host:port`), false},
		{"invalid environment value", nil, append(key, "PLUGIN_FACADE_SHUTDOWN_TIMEOUT=soon"), 2, "",
			refused(`PLUGIN_FACADE_SHUTDOWN_TIMEOUT="soon": parse error`), false},
		{"unknown flag", []string{"--port", "1"}, key, 2, "", refused("flag provided but not defined: -port"), false},
		{"stray argument", []string{"serve"}, key, 2, "", refused("unexpected arguments: serve (commands: help, version)"), false},
		{"two problems", []string{"--shutdown-timeout", "0"}, nil, 2, "", "plugin-facade: --shutdown-timeout: must be positive\n" +
			"plugin-facade: no default credential: set CONFLUENT_CLOUD_API_KEY and CONFLUENT_CLOUD_API_SECRET (CONFLUENT_CLOUD_API_KEY unset, CONFLUENT_CLOUD_API_SECRET unset), or pass --no-default-credentials so that every caller sends its own\n" + seeHelp + "\n", false},
		{"empty default key", nil, []string{"CONFLUENT_CLOUD_API_KEY=", "CONFLUENT_CLOUD_API_SECRET="}, 2, "", "CONFLUENT_CLOUD_API_KEY empty, CONFLUENT_CLOUD_API_SECRET empty", true},
		{"half-set default key", nil, []string{"CONFLUENT_CLOUD_API_KEY=KEY"}, 2, "", "set both", true},
		{"missing TLS key", []string{"--tls-cert", "cert.pem"}, key, 2, "", refused("--tls-cert and --tls-key go together (--tls-client-ca needs both)"), false},
		{"unreadable TLS files", []string{"--tls-cert", "/nonexistent/cert.pem", "--tls-key", "/nonexistent/key.pem"}, key, 2, "", "--tls-cert/--tls-key", true},
		{"unknown OTEL_TRACES_EXPORTER", loopback, append(key, "OTEL_TRACES_EXPORTER=carrier-pigeon"), 2, "", "carrier-pigeon", true},
		{"a port in use", []string{"--grpc-addr", busy.Addr().String(), "--http-addr", "127.0.0.1:0"}, key, 1, "", "address already in use", true},
		{"--help", []string{"--help"}, nil, 0, "Usage: plugin-facade [flags]\n", "", false},
		{"-h", []string{"-h"}, nil, 0, "Usage: plugin-facade [flags]\n", "", false},
		{"help", []string{"help"}, nil, 0, "Usage: plugin-facade [flags]\n", "", false},
		{"--version", []string{"--version"}, nil, 0, "plugin-facade dev\ngo: go", "", false},
		{"version", []string{"version"}, nil, 0, "plugin-facade dev\ngo: go", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd, stdout, stderr := commandApart(t, tt.env, tt.args...)
			err := cmd.Run()
			code := 0
			var exit *exec.ExitError
			if errors.As(err, &exit) {
				code = exit.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tt.wantCode {
				t.Errorf("exit status %d, want %d; stderr:\n%s", code, tt.wantCode, stderr.String())
			}
			if !strings.HasPrefix(stdout.String(), tt.wantStdout) || (tt.wantStdout == "" && stdout.String() != "") {
				t.Errorf("stdout:\n%s\nwant it to start with %q", stdout.String(), tt.wantStdout)
			}
			if got := stderr.String(); tt.stderrHas && !strings.Contains(got, tt.wantStderr) || !tt.stderrHas && got != tt.wantStderr {
				t.Errorf("stderr:\n%s\nwant %q", got, tt.wantStderr)
			}
			if strings.Contains(stdout.String()+stderr.String(), "hunter2") {
				t.Error("the secret was printed")
			}
		})
	}
}

// TestSIGTERMDrainsThenExitsZero runs the server process, sends it SIGTERM
// while a gRPC and a REST call wait on a slow upstream, and checks that
// readiness turns off at once, both calls complete, and the process exits 0.
func TestSIGTERMDrainsThenExitsZero(t *testing.T) {
	arrived, gate := make(chan struct{}, 4), make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/"+credentialCheckID) { // the start-up check of the key, not a call
			w.WriteHeader(http.StatusNotFound)
			return
		}
		arrived <- struct{}{}
		select {
		case <-gate:
		case <-r.Context().Done():
			return
		}
		_, _ = w.Write([]byte(`{"api_version":"connect/v1","kind":"CustomConnectorPlugin","id":"ccp-12345"}`))
	}))
	defer up.Close()
	defer func() {
		select {
		case <-gate:
		default:
			close(gate)
		}
	}()

	cmd, out := command(t, []string{"CONFLUENT_CLOUD_API_KEY=KEY", "CONFLUENT_CLOUD_API_SECRET=hunter2"},
		"--upstream-url", up.URL, "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() { _ = cmd.Process.Kill() }()

	grpcAddr, httpAddr := servingAddrs(t, out)
	httpURL := "http://" + httpAddr
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	results := make(chan error, 2)
	go func() {
		_, err := pluginv1.NewPluginServiceClient(conn).GetConnectorPlugin(t.Context(), &pluginv1.GetConnectorPluginRequest{Id: "ccp-12345"})
		results <- err
	}()
	go func() {
		resp, err := http.Get(httpURL + "/connect/v1/custom-connector-plugins/ccp-23456") // not the gRPC call's id, which would share its request
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				err = errors.New(resp.Status)
			}
		}
		results <- err
	}()
	for i := 0; i < 2; i++ {
		select {
		case <-arrived:
		case <-time.After(20 * time.Second):
			t.Fatalf("only %d of 2 calls reached the upstream", i)
		}
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		resp, err := http.Get(httpURL + "/readyz")
		if err != nil {
			t.Fatalf("/readyz during the drain: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusServiceUnavailable {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz = %s 20s after SIGTERM, want 503", resp.Status)
		}
	}
	close(gate)
	for i := 0; i < 2; i++ {
		if err := <-results; err != nil {
			t.Errorf("a call in flight at SIGTERM failed: %v", err)
		}
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("the process ended with %v, want exit status 0\n%s", err, out.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("the process did not exit within 30s of SIGTERM\n%s", out.String())
	}
	if strings.Contains(out.String(), "hunter2") {
		t.Errorf("the secret was printed:\n%s", out.String())
	}
}

// servingAddrs waits for the JSON log lines that say where the server serves.
func servingAddrs(t *testing.T, log *testutil.Buffer) (grpcAddr, httpAddr string) {
	t.Helper()
	addrs := map[string]string{}
	for deadline := time.Now().Add(20 * time.Second); len(addrs) < 2; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the server did not say where it serves:\n%s", log.String())
		}
		for _, line := range strings.Split(log.String(), "\n") {
			var l struct{ Msg, Addr string }
			if json.Unmarshal([]byte(line), &l) == nil && strings.HasPrefix(l.Msg, "serving ") {
				addrs[l.Msg] = l.Addr
			}
		}
	}
	return addrs["serving gRPC"], addrs["serving HTTP"]
}
