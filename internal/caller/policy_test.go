package caller_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	pluginv1 "github.com/acme/plugin-facade/gen/go/confluent/plugin/v1"
	"github.com/acme/plugin-facade/internal/caller"
	"github.com/acme/plugin-facade/internal/sandbox"
	"github.com/acme/plugin-facade/internal/testutil"
)

// policyFile is the policy the tests start with: team-a (127.0.0.2) reads
// versions of env-0* and watches env-00000, and connector plugins ccp-1*;
// team-b (127.0.0.3) reads connector plugins only. Anyone else: nothing but
// health and reflection.
const policyFile = `
callers:
  - name: team-a
    match: ["ip:127.0.0.2"]
    allow:
      GetPluginVersion: {environments: ["env-0*"]}
      WatchPluginVersion: {environments: ["env-00000"]}
      GetConnectorPlugin: {plugins: ["ccp-1*"]}
  - name: team-b
    match: ["ip:127.0.0.3"]
    allow:
      GetConnectorPlugin: {}
`

// writePolicy replaces the policy file at once (a new file renamed over it),
// as Kubernetes updates a mounted ConfigMap.
func writePolicy(t *testing.T, path, text string) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// policyCall is one call of the policy table, made over one protocol.
type policyCall struct {
	method, plugin, id, env string
}

func (c policyCall) grpc(t *testing.T, client pluginv1.PluginServiceClient) error {
	ctx := context.Background()
	switch c.method {
	case "GetPluginVersion":
		_, err := client.GetPluginVersion(ctx, &pluginv1.GetPluginVersionRequest{PluginId: c.plugin, Id: c.id, Environment: c.env})
		return err
	case "GetConnectorPlugin":
		_, err := client.GetConnectorPlugin(ctx, &pluginv1.GetConnectorPluginRequest{Id: c.plugin})
		return err
	default: // WatchPluginVersion: its first event
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		s, err := client.WatchPluginVersion(ctx, &pluginv1.WatchPluginVersionRequest{PluginId: c.plugin, Id: c.id, Environment: c.env})
		if err != nil {
			return err
		}
		if _, err := s.Recv(); err != nil && err != io.EOF {
			return err
		}
		return nil
	}
}

// rest makes the call over REST and returns its HTTP status and the
// envelope's first code (or, for a watch, the first line's).
func (c policyCall) rest(t *testing.T, hc *http.Client, base string) (int, string) {
	t.Helper()
	var path string
	switch c.method {
	case "GetPluginVersion":
		path = "/ccpm/v1/plugins/" + c.plugin + "/versions/" + c.id + "?environment=" + c.env
	case "GetConnectorPlugin":
		path = "/connect/v1/custom-connector-plugins/" + c.plugin
	default:
		path = "/ccpm/v1/plugins/" + c.plugin + "/versions/" + c.id + ":watch?environment=" + c.env
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var env struct {
		Errors []struct {
			Code string `json:"code"`
		} `json:"errors"`
		Error *struct { // a watch's {"error": <envelope>} line
			Errors []struct {
				Code string `json:"code"`
			} `json:"errors"`
		} `json:"error"`
	}
	line, _ := readLine(resp.Body)
	_ = json.Unmarshal(line, &env)
	switch {
	case len(env.Errors) > 0:
		return resp.StatusCode, env.Errors[0].Code
	case env.Error != nil && len(env.Error.Errors) > 0:
		return resp.StatusCode, env.Error.Errors[0].Code
	}
	return resp.StatusCode, ""
}

// readLine reads the first line of a body (a watch streams one per event).
func readLine(r io.Reader) ([]byte, error) {
	var out []byte
	buf := make([]byte, 1)
	for len(out) < 1<<16 {
		n, err := r.Read(buf)
		if n == 1 {
			if buf[0] == '\n' {
				return out, nil
			}
			out = append(out, buf[0])
		}
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

var (
	readVersion     = policyCall{"GetPluginVersion", sandbox.PluginID, sandbox.VersionID, sandbox.Environment}
	readOtherEnv    = policyCall{"GetPluginVersion", sandbox.PluginID, sandbox.VersionID, "env-99999"}
	watchVersion    = policyCall{"WatchPluginVersion", sandbox.PluginID, sandbox.VersionID, sandbox.Environment}
	watchOtherEnv   = policyCall{"WatchPluginVersion", sandbox.PluginID, sandbox.VersionID, "env-01234"}
	readPlugin      = policyCall{"GetConnectorPlugin", sandbox.PluginID, "", ""}
	readOtherPlugin = policyCall{"GetConnectorPlugin", sandbox.FailedPluginID, "", ""}
)

// TestPolicy: the same decision over gRPC, REST and watches (gRPC stream and
// REST :watch); a denial never reaches the upstream.
func TestPolicy(t *testing.T) {
	sb := testutil.StartSandbox(t)
	p, err := caller.ParsePolicy("policy.yaml", []byte(policyFile))
	if err != nil {
		t.Fatal(err)
	}
	f := startFacade(t, sb, nil, caller.WithPolicy(p))
	tests := []struct {
		name       string
		from       string
		call       policyCall
		wantReason string // "" allowed
	}{
		{"team-a reads a version of its environment", "127.0.0.2", readVersion, ""},
		{"team-a reads a version of another environment", "127.0.0.2", readOtherEnv, caller.ReasonEnvironmentDenied},
		{"team-a watches its environment", "127.0.0.2", watchVersion, ""},
		{"team-a watches another environment", "127.0.0.2", watchOtherEnv, caller.ReasonEnvironmentDenied},
		{"team-a reads its plugin", "127.0.0.2", readPlugin, ""},
		{"team-a reads another plugin", "127.0.0.2", readOtherPlugin, caller.ReasonPluginDenied},
		{"team-b reads any plugin", "127.0.0.3", readOtherPlugin, ""},
		{"team-b may not read versions", "127.0.0.3", readVersion, caller.ReasonMethodDenied},
		{"team-b may not watch", "127.0.0.3", watchVersion, caller.ReasonMethodDenied},
		{"an anonymous caller is denied", "127.0.0.4", readPlugin, caller.ReasonCallerUnknown},
		{"an anonymous caller may not watch", "127.0.0.4", watchVersion, caller.ReasonCallerUnknown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := sb.Requests()
			err := tt.call.grpc(t, grpcClient(t, f.grpcAddr, tt.from, nil))
			st := status.Convert(err)
			httpStatus, code := tt.call.rest(t, httpClient(tt.from, nil), "http://"+f.httpAddr)
			if tt.wantReason == "" {
				if err != nil {
					t.Errorf("gRPC: %v, want allowed", err)
				}
				if httpStatus != http.StatusOK {
					t.Errorf("REST: %d %s, want 200", httpStatus, code)
				}
				if sb.Requests() == before {
					t.Error("an allowed call did not reach the upstream")
				}
				return
			}
			if st.Code() != codes.PermissionDenied || errorReason(st) != tt.wantReason {
				t.Errorf("gRPC: %v (%s), want PERMISSION_DENIED %s", st.Code(), errorReason(st), tt.wantReason)
			}
			if httpStatus != http.StatusForbidden || code != strings.ToLower(tt.wantReason) {
				t.Errorf("REST: %d %q, want 403 %q", httpStatus, code, strings.ToLower(tt.wantReason))
			}
			if n := sb.Requests() - before; n != 0 {
				t.Errorf("a denied call sent %d requests upstream", n)
			}
		})
	}

	t.Run("health stays open", func(t *testing.T) {
		_, err := healthpb.NewHealthClient(grpcConn(t, f.grpcAddr, "127.0.0.4", nil)).Check(context.Background(), &healthpb.HealthCheckRequest{})
		if err != nil {
			t.Error(err)
		}
	})
	t.Run("denials are counted by caller name", func(t *testing.T) {
		if got := counter(t, f, "plugin_facade_caller_calls_total", map[string]string{"caller": "team-a", "outcome": "denied"}); got != 6 {
			t.Errorf("team-a denied = %v, want 6 (3 calls, two protocols)", got)
		}
		if got := counter(t, f, "plugin_facade_caller_calls_total", map[string]string{"caller": "other", "outcome": "denied"}); got != 4 {
			t.Errorf("other denied = %v, want 4", got)
		}
	})
}

// TestPolicyClosesHealth: health is open unless the policy says otherwise.
func TestPolicyClosesHealth(t *testing.T) {
	p, err := caller.ParsePolicy("policy.yaml", []byte(`
open: {health: false}
callers:
  - name: probes
    match: ["ip:127.0.0.2"]
    allow: {Health: {}}
`))
	if err != nil {
		t.Fatal(err)
	}
	f := startFacade(t, testutil.StartSandbox(t), nil, caller.WithPolicy(p))
	check := func(from string) error {
		_, err := healthpb.NewHealthClient(grpcConn(t, f.grpcAddr, from, nil)).Check(context.Background(), &healthpb.HealthCheckRequest{})
		return err
	}
	if err := check("127.0.0.2"); err != nil {
		t.Errorf("the probe: %v", err)
	}
	if err := check("127.0.0.3"); status.Code(err) != codes.PermissionDenied {
		t.Errorf("anyone else: %v, want PERMISSION_DENIED", err)
	}
}

// TestPolicyReload: a reload (the signal, or a changed file) changes the
// decision without a restart; a bad file keeps the last good policy and says
// so in the log and a metric.
func TestPolicyReload(t *testing.T) {
	sb := testutil.StartSandbox(t)
	path := filepath.Join(t.TempDir(), "policy.yaml")
	writePolicy(t, path, policyFile)
	p, err := caller.LoadPolicy(path)
	if err != nil {
		t.Fatal(err)
	}
	f := startFacade(t, sb, nil, caller.WithPolicy(p))
	ctx, cancel := context.WithCancel(context.Background())
	hup := make(chan os.Signal)
	done := make(chan struct{})
	go func() { defer close(done); f.guard.WatchPolicy(ctx, path, 20*time.Millisecond, hup) }()
	t.Cleanup(func() { cancel(); <-done })
	teamB := grpcClient(t, f.grpcAddr, "127.0.0.3", nil)
	reloads := func(result string) float64 {
		return counter(t, f, "plugin_facade_caller_policy_reloads_total", map[string]string{"result": result})
	}
	// waitFor waits for the reload counter of result to pass n (bounded).
	waitFor := func(result string, n float64) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for reloads(result) <= n {
			if time.Now().After(deadline) {
				t.Fatalf("no %s reload within 10s", result)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}

	if status.Code(readVersion.grpc(t, teamB)) != codes.PermissionDenied {
		t.Fatal("team-b may read versions before the reload")
	}
	// A watch in flight across the reloads keeps going.
	wctx, wcancel := context.WithCancel(context.Background())
	defer wcancel()
	watch, err := grpcClient(t, f.grpcAddr, "127.0.0.2", nil).WatchPluginVersion(wctx, &pluginv1.WatchPluginVersionRequest{
		PluginId: sandbox.PluginID, Id: sandbox.ProcessingVersionID, Environment: sandbox.Environment})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := watch.Recv(); err != nil {
		t.Fatal(err)
	}

	allowB := strings.Replace(policyFile, "      GetConnectorPlugin: {}\n", "      GetConnectorPlugin: {}\n      GetPluginVersion: {}\n", 1)
	writePolicy(t, path, allowB)
	waitFor("ok", 0) // the file watch sees the change
	if err := readVersion.grpc(t, teamB); err != nil {
		t.Errorf("after the reload team-b reads versions: %v", err)
	}

	writePolicy(t, path, allowB+"    colour: blue\n")
	hup <- os.Interrupt // the signal, as SIGHUP delivers it
	waitFor("failed", 0)
	if err := readVersion.grpc(t, teamB); err != nil {
		t.Errorf("after a bad reload the last good policy should stand: %v", err)
	}
	if got := gauge(t, f, "plugin_facade_caller_policy_last_reload_ok"); got != 0 {
		t.Errorf("last_reload_ok = %v after a failed reload, want 0", got)
	}
	if log := f.log.String(); !strings.Contains(log, "caller policy reload failed") || !strings.Contains(log, "unknown key colour") {
		t.Errorf("the log does not say the reload failed and why:\n%s", log)
	}

	writePolicy(t, path, policyFile)
	hup <- os.Interrupt
	waitFor("ok", 1)
	if status.Code(readVersion.grpc(t, teamB)) != codes.PermissionDenied {
		t.Error("the reload back did not deny team-b again")
	}
	if gauge(t, f, "plugin_facade_caller_policy_last_reload_ok") != 1 {
		t.Error("last_reload_ok is not 1 after a good reload")
	}
	wcancel()
	if _, err := watch.Recv(); status.Code(err) != codes.Canceled {
		t.Errorf("the watch in flight ended with %v, want the caller's own cancellation", err)
	}
}

func counter(t *testing.T, f *facade, name string, labels map[string]string) float64 {
	t.Helper()
	m := metric(t, f, name, labels)
	if m == nil {
		return 0
	}
	return m.GetCounter().GetValue()
}

func gauge(t *testing.T, f *facade, name string) float64 {
	t.Helper()
	return metric(t, f, name, nil).GetGauge().GetValue()
}

func metric(t *testing.T, f *facade, name string, labels map[string]string) *dto.Metric {
	t.Helper()
	mfs, err := f.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue next
				}
			}
			return m
		}
	}
	return nil
}
