package server

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	pluginv1 "github.com/acme/plugin-facade/gen/go/confluent/plugin/v1"
	gatewaypb "github.com/acme/plugin-facade/internal/gatewaypb/confluent/plugin/v1"
	"github.com/acme/plugin-facade/internal/passthrough"
)

// TestUnaryRoutesAnswerAsTheGeneratedHandlers: the gateway's own unary
// handlers give the service the request, incoming metadata and deadline that
// grpc-gateway's generated in-process handlers (RegisterPluginServiceHandlerServer,
// forwarding no header of their own) give it, and answer the caller with the
// same status, headers and body, over methods, paths, queries and headers
// valid and not.
func TestUnaryRoutesAnswerAsTheGeneratedHandlers(t *testing.T) {
	enc, err := newRESTJSON(pluginServiceDescriptor())
	if err != nil {
		t.Fatal(err)
	}
	theirsSvc, oursSvc := &recordingService{}, &recordingService{}
	generated := runtime.NewServeMux(append(gatewayOptions(enc), runtime.WithIncomingHeaderMatcher(noIncomingHeader))...)
	if err := gatewaypb.RegisterPluginServiceHandlerServer(t.Context(), generated, theirsSvc); err != nil {
		t.Fatal(err)
	}
	ours, err := restGateway(gateway{inProcess: newInProcess(oursSvc),
		streams: &inProcessStreams{svc: oursSvc, desc: &pluginv1.PluginService_ServiceDesc, chain: chainStream()}})
	if err != nil {
		t.Fatal(err)
	}
	const version = "/ccpm/v1/plugins/p-1/versions/"
	const plugin = "/connect/v1/custom-connector-plugins/"
	for _, tt := range []struct {
		name, target string
		method       string // GET when empty
		header       map[string][]string
		remoteAddr   string
		host         string
	}{
		{name: "plugin", target: plugin + "ccp-1"},
		{name: "plugin, a query it takes none of", target: plugin + "ccp-1?x=%zz&id=other"},
		{name: "plugin, an escaped slash", target: plugin + "ccp-1%2F..%2Fx"},
		{name: "plugin, UTF-8", target: plugin + "caf%C3%A9"},
		{name: "version", target: version + "v-1"},
		{name: "version, environment", target: version + "v-1?environment=env-1"},
		{name: "version, two environments", target: version + "v-1?environment=a&environment=b"},
		{name: "version, a query that does not parse", target: version + "v-1?%zz"},
		{name: "version, path fields and unknown fields in the query", target: version + "v-1?id=other&plugin_id=x&unknown=1"},
		{name: "service failure", target: version + "fail"},
		{name: "invalid argument without a reason", target: version + "invalid"},
		{name: "the upstream's JSON", target: version + "attached"},
		{name: "an unknown route", target: "/ccpm/v1/nothing"},
		{name: "HEAD", target: version + "v-1", method: http.MethodHead},
		{name: "POST", target: plugin + "ccp-1", method: http.MethodPost},
		{name: "headers", target: version + "v-1", header: map[string][]string{
			"Authorization":    {"Basic a2V5OnNlY3JldA==", "Bearer x\x7f", "Bearer y"},
			"X-Forwarded-For":  {"10.0.0.1", "bad\x01", "10.0.0.2, 10.0.0.3"},
			"X-Forwarded-Host": {"h.example"},
			"Accept":           {"application/json"},
			"User-Agent":       {"test"},
			"Te":               {"Trailers"},
			"Grpc-Metadata-X":  {"y"},
		}},
		{name: "an invalid forwarded host", target: version + "v-1", header: map[string][]string{"X-Forwarded-Host": {"h\x01"}}},
		{name: "no host", target: version + "v-1", host: "-"},
		{name: "IPv6 client", target: version + "v-1", remoteAddr: "[2001:db8::1]:443"},
		{name: "a client address without a port", target: version + "v-1", remoteAddr: "192.0.2.9"},
		{name: "timeout", target: version + "v-1", header: map[string][]string{"Grpc-Timeout": {"5S"}}},
		{name: "zero timeout", target: version + "v-1", header: map[string][]string{"Grpc-Timeout": {"0m"}}},
		{name: "longest timeout", target: version + "v-1", header: map[string][]string{"Grpc-Timeout": {"99999999999H"}}},
		{name: "timeout out of range", target: version + "v-1", header: map[string][]string{"Grpc-Timeout": {"99999999999999999999H"}}},
		{name: "timeout without a unit", target: version + "v-1", header: map[string][]string{"Grpc-Timeout": {"5"}}},
		{name: "timeout of an unknown unit", target: version + "v-1", header: map[string][]string{"Grpc-Timeout": {"5x"}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			answer := func(h http.Handler, svc *recordingService) (*httptest.ResponseRecorder, []recordedCall) {
				svc.reset()
				method := tt.method
				if method == "" {
					method = http.MethodGet
				}
				r := httptest.NewRequest(method, tt.target, nil)
				for k, vs := range tt.header {
					r.Header[k] = vs
				}
				if tt.remoteAddr != "" {
					r.RemoteAddr = tt.remoteAddr
				}
				if tt.host == "-" {
					r.Host = ""
				}
				w := httptest.NewRecorder()
				h.ServeHTTP(w, r.WithContext(carryUpstreamJSON(r.Context())))
				return w, svc.recorded()
			}
			want, wantCalls := answer(generated, theirsSvc)
			got, gotCalls := answer(ours, oursSvc)
			if got.Code != want.Code || got.Body.String() != want.Body.String() {
				t.Errorf("answered %d %s, want %d %s", got.Code, got.Body, want.Code, want.Body)
			}
			if diff := cmp.Diff(want.Header(), got.Header()); diff != "" {
				t.Errorf("headers (-generated +ours):\n%s", diff)
			}
			// grpc.Method names the call's method, as over gRPC; the
			// generated handlers' transport stream names none.
			for i := range gotCalls {
				if !strings.HasPrefix(gotCalls[i].method, pluginServicePrefix) {
					t.Errorf("grpc.Method = %q, want PluginService's method", gotCalls[i].method)
				}
				gotCalls[i].method = ""
			}
			if diff := cmp.Diff(wantCalls, gotCalls, protocmp.Transform(), cmp.AllowUnexported(recordedCall{})); diff != "" {
				t.Errorf("what the service was given (-generated +ours):\n%s", diff)
			}
		})
	}
}

// noIncomingHeader forwards no request header as metadata.
func noIncomingHeader(string) (string, bool) { return "", false }

// recordingService records what each call is given, and answers by the
// version's id.
type recordingService struct {
	pluginv1.UnimplementedPluginServiceServer
	mu    sync.Mutex
	calls []recordedCall
}

type recordedCall struct {
	req      proto.Message
	md       metadata.MD
	deadline bool
	method   string
}

func (s *recordingService) record(ctx context.Context, req proto.Message) {
	md, _ := metadata.FromIncomingContext(ctx)
	_, deadline := ctx.Deadline()
	method, _ := grpc.Method(ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, recordedCall{req: proto.Clone(req), md: md, deadline: deadline, method: method})
}

func (s *recordingService) reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = nil
}

func (s *recordingService) recorded() []recordedCall {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

func (s *recordingService) GetPluginVersion(ctx context.Context, req *pluginv1.GetPluginVersionRequest) (*pluginv1.CustomConnectPluginVersion, error) {
	s.record(ctx, req)
	_ = grpc.SetHeader(ctx, metadata.Pairs("x-request-id", "r-1", "x-ratelimit-limit", "10", "x-other", "o"))
	_ = grpc.SetHeader(ctx, metadata.Pairs("x-request-id", "r-2"))
	switch req.GetId() {
	case "fail":
		return nil, status.Error(codes.NotFound, "no such version")
	case "invalid":
		return nil, status.Error(codes.InvalidArgument, "a value \x01 that is not right")
	}
	msg := &pluginv1.CustomConnectPluginVersion{Id: req.GetId(), ApiVersion: "ccpm/v1", Kind: "CustomConnectPluginVersion"}
	if req.GetId() == "attached" {
		passthrough.Attach(ctx, msg, []byte(`{"id":"attached","future_field":1}`))
	}
	return msg, nil
}

func (s *recordingService) GetConnectorPlugin(ctx context.Context, req *pluginv1.GetConnectorPluginRequest) (*pluginv1.CustomConnectorPlugin, error) {
	s.record(ctx, req)
	return &pluginv1.CustomConnectorPlugin{Id: req.GetId(), ApiVersion: "connect/v1", Kind: "CustomConnectorPlugin"}, nil
}
