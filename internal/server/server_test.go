package server

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	reflectionv1 "google.golang.org/grpc/reflection/grpc_reflection_v1"
	reflectionv1alpha "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"

	pluginfacade "github.com/acme/plugin-facade"
	pluginv1 "github.com/acme/plugin-facade/gen/go/confluent/plugin/v1"
	"github.com/acme/plugin-facade/internal/sandbox"
	"github.com/acme/plugin-facade/internal/service"
	"github.com/acme/plugin-facade/internal/testutil"
	"github.com/acme/plugin-facade/internal/upstream"
)

// stack is the whole facade, as cmd/server runs it, on loopback listeners in
// front of the sandbox.
type stack struct {
	sandbox *sandbox.Server
	conn    *grpc.ClientConn
	client  pluginv1.PluginServiceClient
	httpURL string
}

// sandboxKey is the default credential of a stack: the sandbox's Cloud API key.
var sandboxKey = upstream.BasicAuth(sandbox.APIKey, sandbox.APISecret)

func startStack(t testing.TB, svcOpts []service.Option, sbOpts ...sandbox.Option) *stack {
	t.Helper()
	sb := testutil.StartSandbox(t, sbOpts...)
	uc, err := upstream.New(sb.URL(), upstream.WithUserAgent("plugin-facade/test"))
	if err != nil {
		t.Fatal(err)
	}
	return startServer(t, service.New(uc, svcOpts...), sb)
}

func startServer(t testing.TB, svc pluginv1.PluginServiceServer, sb *sandbox.Server, opts ...Option) *stack {
	t.Helper()
	return startServerWith(t, svc, sb, nil, opts...)
}

// startServerWith is startServer, with prepare called on the Server between
// New and Serve.
func startServerWith(t testing.TB, svc pluginv1.PluginServiceServer, sb *sandbox.Server, prepare []func(*Server), opts ...Option) *stack {
	t.Helper()
	r := serveWith(t, svc, prepare, opts...)
	conn, err := grpc.NewClient(r.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return &stack{sandbox: sb, conn: conn, client: pluginv1.NewPluginServiceClient(conn), httpURL: "http://" + r.httpAddr}
}

// running is a Server serving on loopback listeners.
type running struct {
	grpcAddr, httpAddr string
	// stop ends Serve's context, as a signal does, without waiting.
	stop func()
	// done is closed when Serve returns, with its result in err.
	done chan struct{}
	err  error
}

// wait waits for Serve to return (bounded) and returns its result.
func (r *running) wait(t testing.TB) error {
	t.Helper()
	select {
	case <-r.done:
		return r.err
	case <-time.After(20 * time.Second):
		t.Fatal("Serve did not return within 20s of shutdown")
		return nil
	}
}

// serve runs New(svc, opts...) on loopback listeners until the test ends
// (or r.stop), and checks that it then shuts down cleanly.
func serve(t testing.TB, svc pluginv1.PluginServiceServer, opts ...Option) *running {
	return serveWith(t, svc, nil, opts...)
}

// serveWith is serve, with prepare called on the Server between New and Serve.
func serveWith(t testing.TB, svc pluginv1.PluginServiceServer, prepare []func(*Server), opts ...Option) *running {
	t.Helper()
	grpcLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	httpLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{grpcAddr: grpcLis.Addr().String(), httpAddr: httpLis.Addr().String(), stop: cancel, done: make(chan struct{})}
	opts = append([]Option{WithOpenAPI(pluginfacade.OpenAPI()), WithShutdownTimeout(5 * time.Second)}, opts...)
	srv, err := New(svc, opts...)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range prepare {
		f(srv)
	}
	go func() { r.err = srv.Serve(ctx, grpcLis, httpLis); close(r.done) }()
	t.Cleanup(func() {
		cancel()
		if err := r.wait(t); err != nil {
			t.Errorf("Serve returned %v after shutdown, want nil", err)
		}
	})
	return r
}

// restResponse is one HTTP answer as a client reads it.
type restResponse struct {
	status int
	header http.Header
	body   []byte
}

// get GETs path of the stack's HTTP server, with header pairs (name, value).
func (s *stack) get(t testing.TB, path string, header ...string) restResponse {
	t.Helper()
	return fetch(t, s.httpURL+path, header...)
}

// fetch GETs url, with header pairs (name, value); an empty value sends no
// header.
func fetch(t testing.TB, url string, header ...string) restResponse {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		if header[i+1] != "" {
			req.Header.Set(header[i], header[i+1])
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return restResponse{status: resp.StatusCode, header: resp.Header, body: body}
}

// assertAllFieldsSet fails for every field of m (recursively) that is not set,
// except the paths in allowedUnset. It is how "returns every field" is checked
// against the fully populated sandbox seeds.
func assertAllFieldsSet(t *testing.T, m proto.Message, allowedUnset ...string) {
	t.Helper()
	var walk func(prefix string, m protoreflect.Message)
	walk = func(prefix string, m protoreflect.Message) {
		fields := m.Descriptor().Fields()
		for i := 0; i < fields.Len(); i++ {
			fd := fields.Get(i)
			path := prefix + string(fd.Name())
			if slices.Contains(allowedUnset, path) {
				continue
			}
			if !m.Has(fd) {
				t.Errorf("field %s is not set", path)
				continue
			}
			switch {
			case fd.IsList() && fd.Message() != nil:
				for j := 0; j < m.Get(fd).List().Len(); j++ {
					walk(path+"[].", m.Get(fd).List().Get(j).Message())
				}
			case fd.Message() != nil && fd.Message().ParentFile().Package() == "confluent.plugin.v1":
				// Well-known types such as Timestamp are leaves: a zero nanos is a value.
				walk(path+".", m.Get(fd).Message())
			}
		}
	}
	walk("", m.ProtoReflect())
}

func TestReflectionListsPluginService(t *testing.T) {
	s := startStack(t, []service.Option{service.WithDefaultCredentials(sandboxKey)})

	t.Run("v1", func(t *testing.T) {
		stream, err := reflectionv1.NewServerReflectionClient(s.conn).ServerReflectionInfo(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if err := stream.Send(&reflectionv1.ServerReflectionRequest{MessageRequest: &reflectionv1.ServerReflectionRequest_ListServices{}}); err != nil {
			t.Fatal(err)
		}
		resp, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, svc := range resp.GetListServicesResponse().GetService() {
			names = append(names, svc.GetName())
		}
		for _, want := range []string{"confluent.plugin.v1.PluginService", "grpc.health.v1.Health"} {
			if !slices.Contains(names, want) {
				t.Errorf("reflection lists %v, want %s among them", names, want)
			}
		}

		// A client such as grpcurl then fetches the descriptors to build requests.
		if err := stream.Send(&reflectionv1.ServerReflectionRequest{MessageRequest: &reflectionv1.ServerReflectionRequest_FileContainingSymbol{
			FileContainingSymbol: "confluent.plugin.v1.PluginService",
		}}); err != nil {
			t.Fatal(err)
		}
		resp, err = stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		var methods []string
		for _, raw := range resp.GetFileDescriptorResponse().GetFileDescriptorProto() {
			var fd descriptorpb.FileDescriptorProto
			if err := proto.Unmarshal(raw, &fd); err != nil {
				t.Fatal(err)
			}
			for _, svc := range fd.GetService() {
				for _, m := range svc.GetMethod() {
					methods = append(methods, svc.GetName()+"/"+m.GetName())
				}
			}
		}
		for _, want := range []string{"PluginService/GetPluginVersion", "PluginService/GetConnectorPlugin"} {
			if !slices.Contains(methods, want) {
				t.Errorf("descriptors describe %v, want %s", methods, want)
			}
		}
	})

	t.Run("v1alpha", func(t *testing.T) {
		stream, err := reflectionv1alpha.NewServerReflectionClient(s.conn).ServerReflectionInfo(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if err := stream.Send(&reflectionv1alpha.ServerReflectionRequest{MessageRequest: &reflectionv1alpha.ServerReflectionRequest_ListServices{}}); err != nil {
			t.Fatal(err)
		}
		resp, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, svc := range resp.GetListServicesResponse().GetService() {
			found = found || svc.GetName() == "confluent.plugin.v1.PluginService"
		}
		if !found {
			t.Errorf("v1alpha reflection does not list PluginService: %v", resp)
		}
	})
}

func TestHealth(t *testing.T) {
	s := startStack(t, nil)
	for _, name := range []string{"", "confluent.plugin.v1.PluginService"} {
		resp, err := healthpb.NewHealthClient(s.conn).Check(t.Context(), &healthpb.HealthCheckRequest{Service: name})
		if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("health of %q = %v, %v; want SERVING", name, resp, err)
		}
	}
	if r := s.get(t, "/healthz"); r.status != http.StatusOK || !strings.Contains(string(r.body), `"alive"`) {
		t.Errorf("/healthz = %d %s, want 200 alive", r.status, r.body)
	}
	if r := s.get(t, "/readyz"); r.status != http.StatusOK || !strings.Contains(string(r.body), `"SERVING"`) {
		t.Errorf("/readyz = %d %s, want 200 SERVING", r.status, r.body)
	}
}

func TestOpenAPIDocumentIsServed(t *testing.T) {
	s := startStack(t, nil)
	r := s.get(t, "/openapi.json")
	if r.status != http.StatusOK || r.header.Get("Content-Type") != "application/json" {
		t.Fatalf("/openapi.json = %d %s", r.status, r.header.Get("Content-Type"))
	}
	var doc struct {
		OpenAPI string                    `json:"openapi"`
		Paths   map[string]map[string]any `json:"paths"`
	}
	if err := json.Unmarshal(r.body, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.OpenAPI != "3.0.3" {
		t.Errorf("openapi %q, want 3.0.3", doc.OpenAPI)
	}
	for _, p := range []string{"/ccpm/v1/plugins/{plugin_id}/versions/{id}", "/connect/v1/custom-connector-plugins/{id}",
		"/ccpm/v1/plugins/{plugin_id}/versions/{id}:watch"} {
		if _, ok := doc.Paths[p]["get"]; !ok {
			t.Errorf("OpenAPI document has no GET %s; paths: %v", p, doc.Paths)
		}
	}
}

func TestBothRPCsOverGRPCAndREST(t *testing.T) {
	s := startStack(t, []service.Option{service.WithDefaultCredentials(sandboxKey)})

	tests := []struct {
		name         string
		grpc         func(context.Context) (proto.Message, error)
		restPath     string
		allowedUnset []string
	}{
		{
			name: "plugin version with every field",
			grpc: func(ctx context.Context) (proto.Message, error) {
				return s.client.GetPluginVersion(ctx, &pluginv1.GetPluginVersionRequest{
					PluginId: sandbox.PluginID, Id: sandbox.DeletedVersionID, Environment: sandbox.Environment})
			},
			restPath:     "/ccpm/v1/plugins/" + sandbox.PluginID + "/versions/" + sandbox.DeletedVersionID + "?environment=" + sandbox.Environment,
			allowedUnset: []string{"status.error_message"}, // a READY version has no error
		},
		{
			name: "failed plugin version",
			grpc: func(ctx context.Context) (proto.Message, error) {
				return s.client.GetPluginVersion(ctx, &pluginv1.GetPluginVersionRequest{
					PluginId: sandbox.FailedPluginID, Id: sandbox.FailedVersionID, Environment: sandbox.Environment})
			},
			restPath:     "/ccpm/v1/plugins/" + sandbox.FailedPluginID + "/versions/" + sandbox.FailedVersionID + "?environment=" + sandbox.Environment,
			allowedUnset: []string{"metadata.deleted_at"},
		},
		{
			name: "connector plugin with every field",
			grpc: func(ctx context.Context) (proto.Message, error) {
				return s.client.GetConnectorPlugin(ctx, &pluginv1.GetConnectorPluginRequest{Id: sandbox.PluginID})
			},
			restPath:     "/connect/v1/custom-connector-plugins/" + sandbox.PluginID,
			allowedUnset: []string{"metadata.deleted_at"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.grpc(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			assertAllFieldsSet(t, got, tt.allowedUnset...)

			// REST: the upstream's own JSON.
			r := s.get(t, tt.restPath)
			if r.status != http.StatusOK {
				t.Fatalf("GET %s = %d %s", tt.restPath, r.status, r.body)
			}
			direct := fetch(t, s.sandbox.URL()+tt.restPath, "Authorization", "Bearer "+sandbox.BearerToken)
			assertSameJSON(t, direct.body, r.body)
		})
	}
}

// TestUnknownEnumValuesReachBothProtocols: a value the contract does not
// know yet is the enum's UNSPECIFIED and the raw literal over gRPC, and the
// literal itself over REST.
func TestUnknownEnumValuesReachBothProtocols(t *testing.T) {
	s := startStack(t, []service.Option{service.WithDefaultCredentials(sandboxKey)})
	v, err := s.client.GetPluginVersion(t.Context(), &pluginv1.GetPluginVersionRequest{
		PluginId: sandbox.UnknownEnumsPluginID, Id: sandbox.UnknownEnumsVersionID, Environment: sandbox.Environment})
	if err != nil {
		t.Fatal(err)
	}
	if v.GetStatus().GetPhase() != pluginv1.VersionPhase_VERSION_PHASE_UNSPECIFIED || v.GetStatus().GetPhaseRaw() != "VALIDATING" {
		t.Errorf("gRPC phase = %v / %q, want UNSPECIFIED / VALIDATING", v.GetStatus().GetPhase(), v.GetStatus().GetPhaseRaw())
	}
	if got := v.GetSpec().GetConnectorClasses()[0].GetTypeRaw(); got != "TRANSFORM" {
		t.Errorf("gRPC connector class type_raw = %q, want TRANSFORM", got)
	}

	r := s.get(t, "/ccpm/v1/plugins/"+sandbox.UnknownEnumsPluginID+"/versions/"+sandbox.UnknownEnumsVersionID+"?environment="+sandbox.Environment)
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	var rest upstream.PluginVersion
	if err := json.Unmarshal(r.body, &rest); err != nil {
		t.Fatal(err)
	}
	if got := *rest.Status.Phase; got != "VALIDATING" {
		t.Errorf("REST phase = %q, want VALIDATING", got)
	}
	if got := *rest.Spec.ConnectorClasses[0].Type; got != "TRANSFORM" {
		t.Errorf("REST connector class type = %q, want TRANSFORM", got)
	}
	if got := *rest.Spec.UploadSource.Location; got != "GIT_REPOSITORY_LOCATION" {
		t.Errorf("REST upload location = %q, want GIT_REPOSITORY_LOCATION", got)
	}
	if strings.Contains(string(r.body), "_raw") || strings.Contains(string(r.body), "UNSPECIFIED") {
		t.Errorf("REST body carries the gRPC representation: %s", r.body)
	}
}

// TestErrorsOverBothProtocols checks the mapping table from a client's seat: the
// gRPC code and the gateway's HTTP status of each failure, and whether the call
// reached the upstream at all.
func TestErrorsOverBothProtocols(t *testing.T) {
	s := startStack(t, []service.Option{service.WithDefaultCredentials(sandboxKey)})
	version := func(plugin, id, env string) *pluginv1.GetPluginVersionRequest {
		return &pluginv1.GetPluginVersionRequest{PluginId: plugin, Id: id, Environment: env}
	}
	plugin := func(id string) *pluginv1.GetConnectorPluginRequest {
		return &pluginv1.GetConnectorPluginRequest{Id: id}
	}
	tests := []struct {
		name            string
		req             proto.Message // a *GetPluginVersionRequest or *GetConnectorPluginRequest
		path            string        // the same request over REST
		auth            string        // Authorization the caller sends, if any
		wantCode        codes.Code
		wantHTTP        int
		reachesUpstream bool
	}{
		{"unknown plugin", plugin("ccp-00000"), "/connect/v1/custom-connector-plugins/ccp-00000", "",
			codes.NotFound, 404, true},
		{"unknown version", version(sandbox.PluginID, "ver-00000", sandbox.Environment),
			"/ccpm/v1/plugins/ccp-12345/versions/ver-00000?environment=env-00000", "", codes.NotFound, 404, true},
		{"environment the key may not read", version(sandbox.PluginID, sandbox.VersionID, sandbox.ForbiddenEnvironment),
			"/ccpm/v1/plugins/ccp-12345/versions/ver-12345?environment=env-forbidden", "", codes.PermissionDenied, 403, true},
		{"wrong bearer token is forwarded, not replaced by the default key", plugin(sandbox.PluginID),
			"/connect/v1/custom-connector-plugins/ccp-12345", "Bearer not-the-token", codes.Unauthenticated, 401, true},
		{"missing environment", version(sandbox.PluginID, sandbox.VersionID, ""),
			"/ccpm/v1/plugins/ccp-12345/versions/ver-12345", "", codes.InvalidArgument, 400, false},
		{"id with a space", plugin("ccp 12345"), "/connect/v1/custom-connector-plugins/ccp%2012345", "",
			codes.InvalidArgument, 400, false},
		{"id with an encoded slash", plugin("ccp-1/../x"), "/connect/v1/custom-connector-plugins/ccp-1%2F..%2Fx", "",
			codes.InvalidArgument, 400, false},
		{"authorization with an unknown scheme", plugin(sandbox.PluginID), "/connect/v1/custom-connector-plugins/ccp-12345",
			"Digest abc", codes.Unauthenticated, 401, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := s.sandbox.Requests()

			ctx := t.Context()
			var header []string
			if tt.auth != "" {
				ctx = metadata.AppendToOutgoingContext(ctx, "authorization", tt.auth)
				header = []string{"Authorization", tt.auth}
			}
			var err error
			switch req := tt.req.(type) {
			case *pluginv1.GetPluginVersionRequest:
				_, err = s.client.GetPluginVersion(ctx, req)
			case *pluginv1.GetConnectorPluginRequest:
				_, err = s.client.GetConnectorPlugin(ctx, req)
			}
			if status.Code(err) != tt.wantCode {
				t.Errorf("gRPC: %v, want %s", err, tt.wantCode)
			}

			r := s.get(t, tt.path, header...)
			if r.status != tt.wantHTTP {
				t.Errorf("REST %s = %d %s, want %d", tt.path, r.status, r.body, tt.wantHTTP)
			}
			var body failureEnvelope
			if err := json.Unmarshal(r.body, &body); err != nil || len(body.Errors) == 0 ||
				body.Errors[0].Status != strconv.Itoa(tt.wantHTTP) || body.Errors[0].Title == "" {
				t.Errorf("REST error body = %s, want a Failure envelope of a %d", r.body, tt.wantHTTP)
			}

			reached := s.sandbox.Requests() > before
			if reached != tt.reachesUpstream {
				t.Errorf("reached the upstream = %v, want %v", reached, tt.reachesUpstream)
			}
			if tt.reachesUpstream && r.header.Get("X-Request-Id") == "" {
				t.Error("REST error lacks the upstream's X-Request-Id header")
			}
			if c := r.header.Get("WWW-Authenticate"); tt.wantHTTP == 401 && !strings.HasPrefix(c, "Basic ") {
				t.Errorf("401 WWW-Authenticate = %q, want a Basic challenge", c)
			}
		})
	}
}

func TestCredentialsAreForwarded(t *testing.T) {
	// No default key: only a forwarded credential can succeed.
	s := startStack(t, nil)
	path := "/connect/v1/custom-connector-plugins/" + sandbox.PluginID

	t.Run("REST Authorization header", func(t *testing.T) {
		if r := s.get(t, path, "Authorization", "Bearer "+sandbox.BearerToken); r.status != http.StatusOK {
			t.Errorf("with the sandbox token: %d %s", r.status, r.body)
		}
		basic := "Basic " + "U0FOREJPWEtFWTpzYW5kYm94LXNlY3JldA==" // SANDBOXKEY:sandbox-secret
		if r := s.get(t, path, "Authorization", basic); r.status != http.StatusOK {
			t.Errorf("with the sandbox key: %d %s", r.status, r.body)
		}
	})
	t.Run("gRPC authorization metadata", func(t *testing.T) {
		ctx := metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer "+sandbox.BearerToken)
		if _, err := s.client.GetConnectorPlugin(ctx, &pluginv1.GetConnectorPluginRequest{Id: sandbox.PluginID}); err != nil {
			t.Error(err)
		}
	})
	t.Run("no credential at all never reaches the upstream", func(t *testing.T) {
		before := s.sandbox.Requests()
		_, err := s.client.GetConnectorPlugin(t.Context(), &pluginv1.GetConnectorPluginRequest{Id: sandbox.PluginID})
		if status.Code(err) != codes.Unauthenticated {
			t.Errorf("gRPC: %v, want Unauthenticated", err)
		}
		if r := s.get(t, path); r.status != http.StatusUnauthorized {
			t.Errorf("REST: %d, want 401", r.status)
		}
		if n := s.sandbox.Requests() - before; n != 0 {
			t.Errorf("upstream received %d requests, want 0", n)
		}
	})
}

// TestRateLimitReachesTheCaller: the upstream's window is passed on, and once
// it is exhausted the rate-limit guard answers RESOURCE_EXHAUSTED / 429 with a
// retry hint without spending upstream requests.
func TestRateLimitReachesTheCaller(t *testing.T) {
	s := startStack(t, []service.Option{service.WithDefaultCredentials(sandboxKey)}, sandbox.WithRateLimit(2, time.Minute))
	req := &pluginv1.GetConnectorPluginRequest{Id: sandbox.PluginID}
	for i := 0; i < 2; i++ {
		if _, err := s.client.GetConnectorPlugin(t.Context(), req); err != nil {
			t.Fatalf("call %d within the limit: %v", i, err)
		}
	}
	before := s.sandbox.Requests()
	var header metadata.MD
	_, err := s.client.GetConnectorPlugin(t.Context(), req, grpc.Header(&header))
	st := status.Convert(err)
	if st.Code() != codes.ResourceExhausted {
		t.Fatalf("gRPC over the limit: %v, want ResourceExhausted", err)
	}
	var retry time.Duration
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			retry = ri.GetRetryDelay().AsDuration()
		}
	}
	if retry <= 0 || retry > time.Minute {
		t.Errorf("RetryInfo delay = %v, want within the 1m window", retry)
	}
	if got := header.Get("x-ratelimit-remaining"); len(got) != 1 || got[0] != "0" {
		t.Errorf("x-ratelimit-remaining = %v, want 0", got)
	}
	if got := header.Get("retry-after"); len(got) != 1 {
		t.Errorf("retry-after = %v, want the guard's hint", got)
	}

	r := s.get(t, "/connect/v1/custom-connector-plugins/"+sandbox.PluginID)
	if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") == "" || r.header.Get("X-RateLimit-Remaining") != "0" {
		t.Errorf("REST over the limit = %d, headers %v; want 429 with Retry-After and X-RateLimit-Remaining 0", r.status, r.header)
	}
	if n := s.sandbox.Requests() - before; n != 0 {
		t.Errorf("the sandbox received %d requests while the window was exhausted, want 0 (the guard answers)", n)
	}
}

// TestResponseHeaders: the upstream's request id and rate-limit window reach
// gRPC callers as response metadata and REST callers as plain headers, on
// success and on failure.
func TestResponseHeaders(t *testing.T) {
	s := startStack(t, []service.Option{service.WithDefaultCredentials(sandboxKey)}, sandbox.WithRateLimit(100, time.Minute))
	for _, tt := range []struct {
		name, id string
		wantCode codes.Code
		wantHTTP int
	}{
		{"success", sandbox.PluginID, codes.OK, 200},
		{"failure", "ccp-00000", codes.NotFound, 404},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var md metadata.MD
			_, err := s.client.GetConnectorPlugin(t.Context(), &pluginv1.GetConnectorPluginRequest{Id: tt.id}, grpc.Header(&md))
			if status.Code(err) != tt.wantCode {
				t.Fatalf("gRPC: %v, want %s", err, tt.wantCode)
			}
			for _, k := range []string{"x-request-id", "x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"} {
				if v := md.Get(k); len(v) != 1 || v[0] == "" {
					t.Errorf("gRPC metadata %s = %v, want one value", k, v)
				}
			}
			if got := md.Get("x-ratelimit-limit"); len(got) == 1 && got[0] != "100" {
				t.Errorf("x-ratelimit-limit = %v, want 100", got)
			}

			r := s.get(t, "/connect/v1/custom-connector-plugins/"+tt.id)
			if r.status != tt.wantHTTP {
				t.Fatalf("REST: %d %s, want %d", r.status, r.body, tt.wantHTTP)
			}
			for _, k := range []string{"X-Request-Id", "X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"} {
				if v := r.header.Values(k); len(v) != 1 || v[0] == "" {
					t.Errorf("REST header %s = %v, want one value", k, v)
				}
			}
			for k := range r.header {
				if strings.HasPrefix(k, "Grpc-Metadata-") {
					t.Errorf("REST header %s: metadata must not be forwarded with a prefix", k)
				}
			}
			if r.header.Get("Retry-After") != "" {
				t.Errorf("Retry-After = %q on a %d", r.header.Get("Retry-After"), r.status)
			}
		})
	}
}

// panicky is a PluginService whose handler panics, to prove one bad call
// cannot take the process down.
type panicky struct {
	pluginv1.UnimplementedPluginServiceServer
}

func (panicky) GetConnectorPlugin(context.Context, *pluginv1.GetConnectorPluginRequest) (*pluginv1.CustomConnectorPlugin, error) {
	panic("boom")
}

func (panicky) WatchPluginVersion(*pluginv1.WatchPluginVersionRequest, grpc.ServerStreamingServer[pluginv1.CustomConnectPluginVersion]) error {
	panic("boom")
}

func TestPanicsBecomeInternal(t *testing.T) {
	var logs logBuffer
	s := startServer(t, panicky{}, nil, WithLogger(logs.logger()))
	for i := 0; i < 2; i++ { // the second call proves the server survived the first
		_, err := s.client.GetConnectorPlugin(t.Context(), &pluginv1.GetConnectorPluginRequest{Id: "ccp-1"})
		if st := status.Convert(err); st.Code() != codes.Internal || strings.Contains(st.Message(), "boom") {
			t.Fatalf("call %d: %v, want Internal without the panic's words", i, err)
		}
	}
	if r := s.get(t, "/connect/v1/custom-connector-plugins/ccp-1"); r.status != http.StatusInternalServerError {
		t.Errorf("REST: %d, want 500", r.status)
	}
	if r := s.get(t, "/ccpm/v1/plugins/ccp-1/versions/ver-1:watch?environment=env-1"); r.status != http.StatusInternalServerError ||
		strings.Contains(string(r.body), "boom") {
		t.Errorf("REST watch: %d %s, want 500 without the panic's words", r.status, r.body)
	}
	// The operator sees what the caller does not.
	if panics := logs.lines(t, "panic in a call"); len(panics) != 4 || panics[0]["panic"] != "boom" || panics[0]["level"] != "ERROR" {
		t.Errorf("panic log lines = %v, want 4 at ERROR with the panic's words", panics)
	}
	for _, l := range logs.lines(t, "finished call") {
		if l["grpc.code"] != "Internal" || l["level"] != "ERROR" {
			t.Errorf("call log = %v, want code Internal at ERROR", l)
		}
	}
}

func TestServeReturnsErrorWhenAListenerFails(t *testing.T) {
	grpcLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	httpLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	httpLis.Close() // Serve must report it, not hang
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	srv, err := New(panicky{})
	if err != nil {
		t.Fatal(err)
	}
	err = srv.Serve(ctx, grpcLis, httpLis)
	if err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Serve = %v, want the HTTP listener's error", err)
	}
	if _, err := grpcLis.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("gRPC listener after a failed Serve: Accept = %v, want it closed", err)
	}
}
