package server

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"golang.org/x/net/http2"
	"google.golang.org/genproto/googleapis/rpc/errdetails"

	pluginv1 "github.com/acme/plugin-facade/gen/go/confluent/plugin/v1"
	"github.com/acme/plugin-facade/internal/sandbox"
	"github.com/acme/plugin-facade/internal/service"
)

// rpcStack is a whole facade whose watches poll fast, in front of the sandbox.
func rpcStack(t *testing.T) *stack {
	return startStack(t, []service.Option{service.WithDefaultCredentials(sandboxKey),
		service.WithWatchIntervals(service.WatchIntervals{Min: 10 * time.Millisecond, Default: 20 * time.Millisecond, Cap: 80 * time.Millisecond})},
		sandbox.WithLifecycle(300*time.Millisecond))
}

// h2cClient speaks HTTP/2 without TLS (prior knowledge), as gRPC needs.
func h2cClient() *http.Client {
	return &http.Client{Transport: &http2.Transport{AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		}}}
}

// TestConnectClients runs one scenario with a Connect Go client over each
// protocol the HTTP listener serves beside REST: a read, a failure with its
// details, and a watch to READY; and checks that the metrics tell the
// protocols apart.
func TestConnectClients(t *testing.T) {
	s := rpcStack(t)
	protocols := []struct {
		name   string
		client *http.Client
		opts   []connect.ClientOption
	}{
		{"connect", http.DefaultClient, nil},
		{"grpcweb", http.DefaultClient, []connect.ClientOption{connect.WithGRPCWeb()}},
		{"grpc", h2cClient(), []connect.ClientOption{connect.WithGRPC()}},
	}
	const svc = "/confluent.plugin.v1.PluginService/"
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			get := connect.NewClient[pluginv1.GetConnectorPluginRequest, pluginv1.CustomConnectorPlugin](p.client, s.httpURL+svc+"GetConnectorPlugin", p.opts...)
			res, err := get.CallUnary(t.Context(), connect.NewRequest(&pluginv1.GetConnectorPluginRequest{Id: sandbox.PluginID}))
			if err != nil {
				t.Fatal(err)
			}
			if res.Msg.GetId() != sandbox.PluginID || res.Msg.GetDisplayName() == "" {
				t.Errorf("GetConnectorPlugin = %v", res.Msg)
			}

			big := strings.Repeat("x", maxRecvMsgBytes+1)
			// Refused before it reaches the gRPC server. Over Connect's
			// HTTP/1.1 the client may still be sending when the refusal
			// closes the request, and reports UNAVAILABLE with the server's
			// words.
			if _, err := get.CallUnary(t.Context(), connect.NewRequest(&pluginv1.GetConnectorPluginRequest{Id: big})); err == nil ||
				!strings.Contains(err.Error(), "resource_exhausted") {
				t.Errorf("a message over %d bytes: %v, want resource_exhausted", maxRecvMsgBytes, err)
			}

			_, err = get.CallUnary(t.Context(), connect.NewRequest(&pluginv1.GetConnectorPluginRequest{Id: "ccp-00000"}))
			var ce *connect.Error
			if !errors.As(err, &ce) || ce.Code() != connect.CodeNotFound {
				t.Fatalf("unknown plugin: %v, want NotFound", err)
			}
			var info *errdetails.ErrorInfo
			for _, d := range ce.Details() {
				if v, err := d.Value(); err == nil {
					if i, ok := v.(*errdetails.ErrorInfo); ok {
						info = i
					}
				}
			}
			if info == nil || info.GetReason() != "NOT_FOUND" {
				t.Errorf("unknown plugin: details %v, want an ErrorInfo NOT_FOUND", ce.Details())
			}

			watch := connect.NewClient[pluginv1.WatchPluginVersionRequest, pluginv1.CustomConnectPluginVersion](p.client, s.httpURL+svc+"WatchPluginVersion", p.opts...)
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			stream, err := watch.CallServerStream(ctx, connect.NewRequest(&pluginv1.WatchPluginVersionRequest{
				PluginId: sandbox.PluginID, Id: sandbox.ProcessingVersionID, Environment: sandbox.Environment}))
			if err != nil {
				t.Fatal(err)
			}
			var phases []string
			for stream.Receive() {
				phases = append(phases, stream.Msg().GetStatus().GetPhase().String())
			}
			if err := stream.Err(); err != nil {
				t.Fatalf("watch: %v", err)
			}
			// The sandbox's version is PROCESSING for a while after its
			// first read (by the first protocol's watch), READY afterwards.
			if len(phases) == 0 || phases[len(phases)-1] != "VERSION_PHASE_READY" || (p.name == "connect" && phases[0] != "VERSION_PHASE_PROCESSING") {
				t.Errorf("watch phases %v, want (PROCESSING ...) READY", phases)
			}
		})
	}

	fams := scrape(t, s.httpURL)
	for _, tt := range []struct {
		protocol string
		want     float64
	}{{"connect", 1}, {"grpcweb", 1}, {"grpc", 1}, {"rest", 0}} {
		if got := value(fams, "grpc_server_handled_total", "protocol", tt.protocol, "grpc_method", "GetConnectorPlugin", "grpc_code", "OK"); got != tt.want {
			t.Errorf("grpc_server_handled_total{protocol=%s, GetConnectorPlugin, OK} = %v, want %v", tt.protocol, got, tt.want)
		}
	}
}

// TestBufCurl calls the HTTP listener with the buf curl the Makefile builds
// (bin/buf), with its defaults: the Connect protocol, over HTTP/1.1, the
// schema from the server's reflection.
func TestBufCurl(t *testing.T) {
	buf, err := filepath.Abs("../../bin/buf")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(buf); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("no %s (make test builds it): %v", buf, err)
		}
		t.Skipf("no %s: run make tools (make test builds it)", buf)
	}
	s := rpcStack(t)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"defaults", []string{"-d", `{"id":"` + sandbox.PluginID + `"}`, s.httpURL + "/confluent.plugin.v1.PluginService/GetConnectorPlugin"}, `"id": "` + sandbox.PluginID + `"`},
		{"HTTP/2", []string{"--http2-prior-knowledge", "-d", `{"id":"` + sandbox.PluginID + `"}`, s.httpURL + "/confluent.plugin.v1.PluginService/GetConnectorPlugin"}, `"id": "` + sandbox.PluginID + `"`},
		{"gRPC-Web", []string{"--protocol", "grpcweb", "-d", `{"id":"` + sandbox.PluginID + `"}`, s.httpURL + "/confluent.plugin.v1.PluginService/GetConnectorPlugin"}, `"id": "` + sandbox.PluginID + `"`},
		{"a watch", []string{"-d", `{"plugin_id":"` + sandbox.PluginID + `","id":"` + sandbox.ProcessingVersionID + `","environment":"` + sandbox.Environment + `"}`,
			s.httpURL + "/confluent.plugin.v1.PluginService/WatchPluginVersion"}, `"phase": "VERSION_PHASE_READY"`},
		{"list", []string{"--list-methods", s.httpURL}, "confluent.plugin.v1.PluginService/GetPluginVersion"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, buf, append([]string{"curl"}, tt.args...)...).CombinedOutput()
			if err != nil || !strings.Contains(string(out), tt.want) {
				t.Errorf("buf curl %s: %v\n%s\nwant %s", strings.Join(tt.args, " "), err, out, tt.want)
			}
		})
	}
}
