package server

import (
	"context"
	"net/http"
	"sync"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/genproto/googleapis/api/annotations"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	pluginv1 "github.com/acme/plugin-facade/gen/go/confluent/plugin/v1"
)

// The REST gateway serves unary methods in process: the generated
// RegisterPluginServiceHandlerServer handlers call inProcess, which runs the
// same unary interceptors as the gRPC server (call info, call log with
// protocol rest, metrics, panic recovery) around the service's method. An
// earlier version sent every REST call through a gRPC client connection to the
// facade's own server, in memory: a second gRPC client and server hop (HTTP/2
// framing, protobuf both ways, two more stats handlers) that cost more than
// half of the gateway's throughput.
//
// grpc-gateway's in-process handlers cannot serve streaming methods (they
// answer UNIMPLEMENTED). Those go through the in-memory connection still:
// streamingRoutes finds their routes in the service's google.api.http
// annotations, and the gateway hands them to a second mux registered with
// RegisterPluginServiceHandlerClient on that connection, where the gRPC
// server's stream interceptors (call log, metrics, recovery) apply. A new
// streaming RPC therefore needs nothing here; a new unary RPC needs its
// one-line method on inProcess (TestInProcessCoversEveryUnaryMethod says so).

// inProcess is PluginService for the gateway's in-process handlers: each
// unary method runs chain around svc's. Streaming methods are
// UnimplementedPluginServiceServer's: grpc-gateway never calls them in process.
type inProcess struct {
	pluginv1.UnimplementedPluginServiceServer
	svc   pluginv1.PluginServiceServer
	chain grpc.UnaryServerInterceptor
}

func (p *inProcess) GetPluginVersion(ctx context.Context, req *pluginv1.GetPluginVersionRequest) (*pluginv1.CustomConnectPluginVersion, error) {
	return invoke(ctx, p, pluginv1.PluginService_GetPluginVersion_FullMethodName, req, p.svc.GetPluginVersion)
}

func (p *inProcess) GetConnectorPlugin(ctx context.Context, req *pluginv1.GetConnectorPluginRequest) (*pluginv1.CustomConnectorPlugin, error) {
	return invoke(ctx, p, pluginv1.PluginService_GetConnectorPlugin_FullMethodName, req, p.svc.GetConnectorPlugin)
}

// invoke calls method (svc's fullMethod) with req through p's interceptors,
// as the gRPC server would.
func invoke[Req, Resp any](ctx context.Context, p *inProcess, fullMethod string, req Req, method func(context.Context, Req) (Resp, error)) (Resp, error) {
	info := &grpc.UnaryServerInfo{Server: p.svc, FullMethod: fullMethod}
	resp, err := p.chain(ctx, req, info, func(ctx context.Context, req any) (any, error) {
		return method(ctx, req.(Req))
	})
	r, _ := resp.(Resp) // nil when a recovered panic or an interceptor answered
	return r, err
}

// chainUnary makes one interceptor of several, the first outermost, as
// grpc.ChainUnaryInterceptor does for a server.
func chainUnary(interceptors ...grpc.UnaryServerInterceptor) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		next := handler
		for i := len(interceptors) - 1; i >= 0; i-- {
			ic, h := interceptors[i], next
			next = func(ctx context.Context, req any) (any, error) { return ic(ctx, req, info, h) }
		}
		return next(ctx, req)
	}
}

// route is one REST binding of an RPC: an HTTP method and a path template.
type route struct{ method, path string }

// streamingRoutes returns the REST bindings (google.api.http, additional
// bindings included) of sd's streaming methods.
func streamingRoutes(sd protoreflect.ServiceDescriptor) []route {
	var routes []route
	var add func(r *annotations.HttpRule)
	add = func(r *annotations.HttpRule) {
		switch p := r.GetPattern().(type) {
		case *annotations.HttpRule_Get:
			routes = append(routes, route{http.MethodGet, p.Get})
		case *annotations.HttpRule_Put:
			routes = append(routes, route{http.MethodPut, p.Put})
		case *annotations.HttpRule_Post:
			routes = append(routes, route{http.MethodPost, p.Post})
		case *annotations.HttpRule_Delete:
			routes = append(routes, route{http.MethodDelete, p.Delete})
		case *annotations.HttpRule_Patch:
			routes = append(routes, route{http.MethodPatch, p.Patch})
		case *annotations.HttpRule_Custom:
			routes = append(routes, route{p.Custom.GetKind(), p.Custom.GetPath()})
		}
		for _, b := range r.GetAdditionalBindings() {
			add(b)
		}
	}
	for i := 0; i < sd.Methods().Len(); i++ {
		m := sd.Methods().Get(i)
		if !m.IsStreamingClient() && !m.IsStreamingServer() {
			continue
		}
		if rule, ok := proto.GetExtension(m.Options(), annotations.E_Http).(*annotations.HttpRule); ok && rule != nil {
			add(rule)
		}
	}
	return routes
}

// routeTo registers routes on mux, sending their requests to h, ahead of
// whatever mux already serves for them.
func routeTo(mux *runtime.ServeMux, routes []route, h http.Handler) error {
	for _, r := range routes {
		// runtime.ServeMux tries the handlers registered last first.
		if err := mux.HandlePath(r.method, r.path, func(w http.ResponseWriter, req *http.Request, _ map[string]string) {
			h.ServeHTTP(w, req)
		}); err != nil {
			return err
		}
	}
	return nil
}

// restCalls keeps count of the gateway's in-process calls, which the gRPC
// server's GracefulStop does not see: shutdown waits for them with drain, and
// from then on new ones answer UNAVAILABLE, as gRPC calls do once the server
// stops. Its interceptor goes first in the in-process chain.
type restCalls struct {
	mu       sync.RWMutex
	draining bool
	inFlight sync.WaitGroup
}

func (r *restCalls) intercept(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	r.mu.RLock()
	if r.draining {
		r.mu.RUnlock()
		return nil, status.Error(codes.Unavailable, "the server is shutting down")
	}
	r.inFlight.Add(1)
	r.mu.RUnlock()
	defer r.inFlight.Done()
	return handler(ctx, req)
}

// drain refuses new calls and waits for those in flight.
func (r *restCalls) drain() {
	r.mu.Lock()
	r.draining = true
	r.mu.Unlock()
	r.inFlight.Wait()
}
