package server

import (
	"context"
	"net/http"
	"sync"

	"google.golang.org/genproto/googleapis/api/annotations"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	pluginv1 "github.com/acme/plugin-facade/gen/go/confluent/plugin/v1"
	"github.com/acme/plugin-facade/internal/failure"
)

// The REST gateway serves every method in process, from the REST bindings
// (google.api.http) of the service's descriptor: unary ones through
// inProcess (rest_unary.go), which runs the same unary interceptors as the
// gRPC server (call info, call log with protocol rest, metrics, panic
// recovery, the caller guard, the limits) around the service's method, and
// streaming ones through the gRPC server's stream interceptors
// (rest_stream.go). Either way a failure is rendered from its status alone
// (failure.RenderREST, through rest_errors.go), in the upstream's own words.
// (grpc-gateway's generated in-process handlers, internal/gatewaypb, are not
// used: they answer streaming methods UNIMPLEMENTED, and for unary ones build
// the call's metadata, context and response metadata several times over.)
//
// A new streaming RPC therefore needs nothing here; a new unary RPC needs its
// handler bound in newInProcess (TestInProcessCoversEveryUnaryMethod says so,
// and New fails for a REST route without one).

// inProcess is the gateway's unary methods: for each full method name, the
// interceptor chain around svc's method, bound once (bindUnary), so that a
// call allocates no closure and no grpc.UnaryServerInfo of its own.
type inProcess struct {
	handlers map[string]grpc.UnaryHandler
}

// newInProcess runs svc's unary methods through interceptors, the first
// outermost, as grpc.ChainUnaryInterceptor does for a server.
func newInProcess(svc pluginv1.PluginServiceServer, interceptors ...grpc.UnaryServerInterceptor) *inProcess {
	return &inProcess{handlers: map[string]grpc.UnaryHandler{
		pluginv1.PluginService_GetPluginVersion_FullMethodName: bindUnary(svc,
			pluginv1.PluginService_GetPluginVersion_FullMethodName, interceptors, svc.GetPluginVersion),
		pluginv1.PluginService_GetConnectorPlugin_FullMethodName: bindUnary(svc,
			pluginv1.PluginService_GetConnectorPlugin_FullMethodName, interceptors, svc.GetConnectorPlugin),
	}}
}

// bindUnary is the handler that calls method (svc's fullMethod) through
// interceptors, the first outermost, as the gRPC server would.
func bindUnary[Req, Resp any](svc any, fullMethod string, interceptors []grpc.UnaryServerInterceptor, method func(context.Context, Req) (Resp, error)) grpc.UnaryHandler {
	info := &grpc.UnaryServerInfo{Server: svc, FullMethod: fullMethod}
	handler := func(ctx context.Context, req any) (any, error) {
		return method(ctx, req.(Req))
	}
	for i := len(interceptors) - 1; i >= 0; i-- {
		ic, next := interceptors[i], handler
		handler = func(ctx context.Context, req any) (any, error) { return ic(ctx, req, info, next) }
	}
	return handler
}

// chainStream makes one interceptor of several, the first outermost, as
// grpc.ChainStreamInterceptor does for a server.
func chainStream(interceptors ...grpc.StreamServerInterceptor) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		next := handler
		for i := len(interceptors) - 1; i >= 0; i-- {
			ic, h := interceptors[i], next
			next = func(srv any, ss grpc.ServerStream) error { return ic(srv, ss, info, h) }
		}
		return next(srv, ss)
	}
}

// route is one REST binding of an RPC: an HTTP method and a path template,
// and the request field its body fills, if any ("*": all of them).
type route struct {
	method, path string
	rpc          protoreflect.MethodDescriptor
	body         string
}

// streamingRoutes returns the REST bindings (google.api.http, additional
// bindings included) of sd's server-streaming methods. A method that streams
// its requests has no REST form: a request is one HTTP request.
func streamingRoutes(sd protoreflect.ServiceDescriptor) []route {
	return restRoutes(sd, func(m protoreflect.MethodDescriptor) bool {
		return !m.IsStreamingClient() && m.IsStreamingServer()
	})
}

// unaryRoutes returns the REST bindings of sd's unary methods.
func unaryRoutes(sd protoreflect.ServiceDescriptor) []route {
	return restRoutes(sd, func(m protoreflect.MethodDescriptor) bool {
		return !m.IsStreamingClient() && !m.IsStreamingServer()
	})
}

// restRoutes returns the REST bindings of the methods of sd that keep keeps,
// in the order of their declaration.
func restRoutes(sd protoreflect.ServiceDescriptor, keep func(protoreflect.MethodDescriptor) bool) []route {
	var routes []route
	var add func(m protoreflect.MethodDescriptor, r *annotations.HttpRule)
	add = func(m protoreflect.MethodDescriptor, r *annotations.HttpRule) {
		switch p := r.GetPattern().(type) {
		case *annotations.HttpRule_Get:
			routes = append(routes, route{http.MethodGet, p.Get, m, r.GetBody()})
		case *annotations.HttpRule_Put:
			routes = append(routes, route{http.MethodPut, p.Put, m, r.GetBody()})
		case *annotations.HttpRule_Post:
			routes = append(routes, route{http.MethodPost, p.Post, m, r.GetBody()})
		case *annotations.HttpRule_Delete:
			routes = append(routes, route{http.MethodDelete, p.Delete, m, r.GetBody()})
		case *annotations.HttpRule_Patch:
			routes = append(routes, route{http.MethodPatch, p.Patch, m, r.GetBody()})
		case *annotations.HttpRule_Custom:
			routes = append(routes, route{p.Custom.GetKind(), p.Custom.GetPath(), m, r.GetBody()})
		}
		for _, b := range r.GetAdditionalBindings() {
			add(m, b)
		}
	}
	for i := 0; i < sd.Methods().Len(); i++ {
		m := sd.Methods().Get(i)
		if !keep(m) {
			continue
		}
		if rule, ok := proto.GetExtension(m.Options(), annotations.E_Http).(*annotations.HttpRule); ok && rule != nil {
			add(m, rule)
		}
	}
	return routes
}

// restCalls keeps count of the gateway's in-process calls, which the gRPC
// server's GracefulStop does not see: once shutdown begins new ones answer
// UNAVAILABLE (refuse), as gRPC calls do once the server stops, and shutdown
// waits for those in flight (wait). Its interceptors go first in the in-process chains.
type restCalls struct {
	mu       sync.RWMutex
	draining bool
	inFlight sync.WaitGroup
}

func (r *restCalls) intercept(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if !r.enter() {
		return nil, errShuttingDown
	}
	defer r.inFlight.Done()
	return handler(ctx, req)
}

func (r *restCalls) interceptStream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if !r.enter() {
		return errShuttingDown
	}
	defer r.inFlight.Done()
	return handler(srv, ss)
}

var errShuttingDown = failure.Facade(failure.ReasonShuttingDown, "the server is shutting down")

// enter counts a call in, unless the server is draining.
func (r *restCalls) enter() bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.draining {
		return false
	}
	r.inFlight.Add(1)
	return true
}

// refuse refuses new calls from now on.
func (r *restCalls) refuse() {
	r.mu.Lock()
	r.draining = true
	r.mu.Unlock()
}

// wait waits for the calls in flight; call refuse first.
func (r *restCalls) wait() {
	r.inFlight.Wait()
}
