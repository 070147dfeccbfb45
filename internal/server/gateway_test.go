package server

import (
	"context"
	"errors"
	"io"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/genproto/googleapis/api/annotations"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	_ "google.golang.org/protobuf/types/known/emptypb" // registers google/protobuf/empty.proto
	"google.golang.org/protobuf/types/known/wrapperspb"

	pluginv1 "github.com/acme/plugin-facade/gen/go/confluent/plugin/v1"
	"github.com/acme/plugin-facade/internal/callinfo"
	"github.com/acme/plugin-facade/internal/service"
	"github.com/acme/plugin-facade/internal/upstream"
)

// withService registers another gRPC service on the server, beside
// PluginService: a test-only way to exercise what PluginService has no
// method for yet.
func withService(desc *grpc.ServiceDesc, impl any) func(*Server) {
	return func(s *Server) { s.grpcSrv.RegisterService(desc, impl) }
}

// TestInProcessCoversEveryUnaryMethod: every unary method of PluginService
// has an in-process handler that goes through the interceptors, and every
// unary REST route is served by one. A method newInProcess does not bind
// would make New fail for its route (registerUnary).
func TestInProcessCoversEveryUnaryMethod(t *testing.T) {
	var seen []string
	p := newInProcess(pluginv1.UnimplementedPluginServiceServer{}, func(_ context.Context, _ any, info *grpc.UnaryServerInfo, _ grpc.UnaryHandler) (any, error) {
		seen = append(seen, info.FullMethod)
		return nil, status.Error(codes.Aborted, "intercepted")
	})
	for _, m := range pluginv1.PluginService_ServiceDesc.Methods {
		full := "/" + pluginv1.PluginService_ServiceDesc.ServiceName + "/" + m.MethodName
		h := p.handlers[full]
		if h == nil {
			t.Errorf("no in-process handler for %s: bind it in newInProcess", full)
			continue
		}
		if _, err := h(t.Context(), nil); status.Code(err) != codes.Aborted || !slices.Contains(seen, full) {
			t.Errorf("the in-process %s = %v without going through the interceptors", m.MethodName, err)
		}
	}
	if err := registerUnary(runtime.NewServeMux(), &inProcess{handlers: map[string]grpc.UnaryHandler{}}, unaryRoutes(pluginServiceDescriptor()), nil); err == nil {
		t.Error("registerUnary served routes without their handlers")
	}
}

// TestStreamingRoutes reads the REST bindings of server-streaming methods,
// and only of those, from google.api.http annotations.
func TestStreamingRoutes(t *testing.T) {
	bindings := func(routes []route) []string {
		var out []string
		for _, r := range routes {
			out = append(out, r.method+" "+r.path+" "+string(r.rpc.Name()))
		}
		return out
	}
	if got := bindings(streamingRoutes(pluginServiceDescriptor())); !slices.Equal(got, []string{"GET /ccpm/v1/plugins/{plugin_id}/versions/{id}:watch WatchPluginVersion"}) {
		t.Errorf("PluginService's streaming routes = %v, want WatchPluginVersion's only", got)
	}

	withHTTP := func(rule *annotations.HttpRule) *descriptorpb.MethodOptions {
		opts := &descriptorpb.MethodOptions{}
		proto.SetExtension(opts, annotations.E_Http, rule)
		return opts
	}
	empty := proto.String(".google.protobuf.Empty")
	fd, err := protodesc.NewFile(&descriptorpb.FileDescriptorProto{
		Name:       proto.String("test/streaming.proto"),
		Package:    proto.String("test"),
		Syntax:     proto.String("proto3"),
		Dependency: []string{"google/protobuf/empty.proto"},
		Service: []*descriptorpb.ServiceDescriptorProto{{
			Name: proto.String("Watcher"),
			Method: []*descriptorpb.MethodDescriptorProto{
				{Name: proto.String("Get"), InputType: empty, OutputType: empty,
					Options: withHTTP(&annotations.HttpRule{Pattern: &annotations.HttpRule_Get{Get: "/v1/things/{id}"}})},
				{Name: proto.String("Watch"), InputType: empty, OutputType: empty, ServerStreaming: proto.Bool(true),
					Options: withHTTP(&annotations.HttpRule{
						Pattern: &annotations.HttpRule_Get{Get: "/v1/things/{id}:watch"},
						AdditionalBindings: []*annotations.HttpRule{
							{Pattern: &annotations.HttpRule_Post{Post: "/v1/things:watch"}, Body: "*"},
						},
					})},
				{Name: proto.String("Unmapped"), InputType: empty, OutputType: empty, ServerStreaming: proto.Bool(true)},
				{Name: proto.String("Upload"), InputType: empty, OutputType: empty, ClientStreaming: proto.Bool(true),
					Options: withHTTP(&annotations.HttpRule{Pattern: &annotations.HttpRule_Post{Post: "/v1/things:upload"}, Body: "*"})},
			},
		}},
	}, protoregistry.GlobalFiles)
	if err != nil {
		t.Fatal(err)
	}
	got := bindings(streamingRoutes(fd.Services().Get(0)))
	want := []string{"GET /v1/things/{id}:watch Watch", "POST /v1/things:watch Watch"}
	if !slices.Equal(got, want) {
		t.Errorf("streamingRoutes = %v, want %v", got, want)
	}
}

// streamer is a test-only service with one server-streaming method: Watch
// sends its request's value back twice, or panics when the value is "panic".
var streamer = grpc.ServiceDesc{
	ServiceName: "test.Streamer",
	HandlerType: (*any)(nil),
	Streams: []grpc.StreamDesc{{
		StreamName:    "Watch",
		ServerStreams: true,
		Handler: func(_ any, ss grpc.ServerStream) error {
			in := new(wrapperspb.StringValue)
			if err := ss.RecvMsg(in); err != nil {
				return err
			}
			if in.GetValue() == "panic" {
				panic("boom")
			}
			callinfo.FromContext(ss.Context()).Record(callinfo.Upstream{Status: http.StatusOK, RequestID: "req-stream", Attempts: 1})
			for range 2 {
				if err := ss.SendMsg(in); err != nil {
					return err
				}
			}
			return nil
		},
	}},
}

// TestStreamingCallsAreLoggedCountedAndRecovered: a server-streaming call gets
// one call log line, the gRPC metrics and panic recovery, as a unary call does.
func TestStreamingCallsAreLoggedCountedAndRecovered(t *testing.T) {
	sb := startSandbox(t)
	s, logs := instrumentedStack(t, sb.URL(), withService(&streamer, struct{}{}))

	watch := func(value string) (int, error) {
		stream, err := s.conn.NewStream(t.Context(), &streamer.Streams[0], "/test.Streamer/Watch")
		if err != nil {
			return 0, err
		}
		if err := stream.SendMsg(wrapperspb.String(value)); err != nil {
			return 0, err
		}
		if err := stream.CloseSend(); err != nil {
			return 0, err
		}
		for n := 0; ; n++ {
			if err := stream.RecvMsg(new(wrapperspb.StringValue)); err != nil {
				if errors.Is(err, io.EOF) {
					return n, nil
				}
				return n, err
			}
		}
	}
	if n, err := watch("x"); n != 2 || err != nil {
		t.Fatalf("Watch = %d messages, %v; want 2, nil", n, err)
	}
	if _, err := watch("panic"); status.Code(err) != codes.Internal {
		t.Fatalf("Watch that panics: %v, want Internal", err)
	}
	if n, err := watch("again"); n != 2 || err != nil {
		t.Fatalf("Watch after a panic = %d messages, %v; want 2, nil", n, err)
	}

	lines := logs.lines(t, "finished call")
	wantCodes := []string{"OK", "Internal", "OK"}
	if len(lines) != len(wantCodes) {
		t.Fatalf("%d call log lines, want %d: %v", len(lines), len(wantCodes), lines)
	}
	for i, l := range lines {
		want := map[string]any{"grpc.service": "test.Streamer", "grpc.method": "Watch", "grpc.method_type": "server_stream",
			"protocol": "grpc", "grpc.code": wantCodes[i]}
		got := map[string]any{}
		for k := range want {
			got[k] = l[k]
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("line %d (-want +got):\n%s", i, diff)
		}
	}
	if lines[0]["upstream_status"] != 200.0 || lines[0]["upstream_request_id"] != "req-stream" {
		t.Errorf("line 0 = %v, want what the handler recorded (callinfo)", lines[0])
	}
	if lines[1]["level"] != "ERROR" {
		t.Errorf("the panic's line is at %v, want ERROR", lines[1]["level"])
	}

	fams := scrape(t, s.httpURL)
	for code, want := range map[string]float64{"OK": 2, "Internal": 1} {
		if got := value(fams, "grpc_server_handled_total", "protocol", "grpc", "grpc_service", "test.Streamer", "grpc_method", "Watch", "grpc_type", "server_stream", "grpc_code", code); got != want {
			t.Errorf("grpc_server_handled_total{Watch, %s} = %v, want %v", code, got, want)
		}
	}
}

// TestRESTCallsDrainAtShutdown stops the server while only a REST call is in
// flight: in-process calls are invisible to the gRPC server's GracefulStop,
// yet the call completes, /readyz answers 503 meanwhile, and a new REST call
// is refused with 503 as a new gRPC call would be.
func TestRESTCallsDrainAtShutdown(t *testing.T) {
	up := startGatedUpstream(t)
	uc, err := upstream.New(up.URL)
	if err != nil {
		t.Fatal(err)
	}
	r := serve(t, service.New(uc, service.WithDefaultCredentials(sandboxKey)), WithShutdownTimeout(30*time.Second))
	httpURL := "http://" + r.httpAddr

	result := make(chan error, 1)
	go func() { result <- getOK(httpURL + "/connect/v1/custom-connector-plugins/ccp-12345") }()
	up.waitArrivals(t, 1)

	r.stop()
	waitNotReady(t, httpURL)
	resp, err := http.Get(httpURL + "/connect/v1/custom-connector-plugins/ccp-23456")
	if err != nil {
		t.Fatalf("a REST call during the drain: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("a REST call during the drain = %d, want 503", resp.StatusCode)
	}
	select {
	case err := <-result:
		t.Fatalf("the call finished before its upstream answered: %v", err)
	case <-r.done:
		t.Fatal("Serve returned with a REST call in flight")
	default:
	}

	up.open()
	if err := <-result; err != nil {
		t.Errorf("the REST call in flight at shutdown failed: %v", err)
	}
	if err := r.wait(t); err != nil {
		t.Errorf("Serve = %v, want nil", err)
	}
}
