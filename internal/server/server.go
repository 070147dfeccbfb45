// Package server assembles the running facade: a gRPC server (PluginService with
// call-log, metrics and panic-recovery interceptors, OpenTelemetry tracing,
// grpc.health.v1, server reflection v1 and v1alpha) and an HTTP server (the
// grpc-gateway REST mapping of the same API, /openapi.json, /metrics, /healthz
// and /readyz). The gateway calls PluginService in process through the same
// interceptors as the gRPC server, so REST calls get the same single log
// line, metrics and recovery (see gateway.go), and answers in Confluent
// Cloud's own JSON (rest_*.go).
//
// It lives apart from cmd/server so that tests can start the very stack the
// binary runs, on loopback listeners of their own.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
	"google.golang.org/protobuf/reflect/protoreflect"

	pluginv1 "github.com/acme/plugin-facade/gen/go/confluent/plugin/v1"
	"github.com/acme/plugin-facade/internal/caller"
	"github.com/acme/plugin-facade/internal/failure"
	"github.com/acme/plugin-facade/internal/telemetry"
)

// Limits of what one client may ask of the servers that no deployment needs
// to change (Limits has those that one may). Requests of this API are a few
// identifiers of at most 255 characters; credentials travel in headers.
const (
	maxRecvMsgBytes = 64 << 10 // gRPC request message
	// readHeaderTimeout bounds a client that opens a connection and sends its
	// headers slowly (slowloris); idleTimeout closes keep-alive connections
	// nobody uses.
	readHeaderTimeout = 10 * time.Second
	idleTimeout       = 2 * time.Minute
)

// keepaliveEnforcement refuses clients that ping more often than every 10s
// (they get GOAWAY "too_many_pings"), while allowing pings on idle connections.
var keepaliveEnforcement = keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}

// keepaliveParams closes idle connections and, by bounding a connection's
// age, makes long-lived gRPC clients spread over new replicas after a
// scale-out (a gRPC connection otherwise sticks to one backend forever). The
// grace outlasts the default 30s upstream timeout, so no call is cut short.
var keepaliveParams = keepalive.ServerParameters{
	MaxConnectionIdle:     15 * time.Minute,
	MaxConnectionAge:      30 * time.Minute,
	MaxConnectionAgeGrace: time.Minute,
	Time:                  time.Minute,
	Timeout:               20 * time.Second,
}

// streamWorkers is how many goroutines the gRPC server keeps to run calls.
// Without them it starts a goroutine per call, whose stack then grows (by
// copying) through the interceptors, the upstream HTTP call and JSON
// decoding; a worker's stack stays grown between calls (docs/benchmarks.md
// has what this saves). Calls beyond this many at once still get a goroutine
// of their own, so there are as many as unary calls may run at once under
// the default bound (DefaultMaxInFlight); a worker that never ran a call
// costs a minimal stack, one that did keeps what it grew to.
const streamWorkers = DefaultMaxInFlight

// Server is the facade's gRPC and HTTP servers, built by New and run once by
// Serve.
type Server struct {
	svc             pluginv1.PluginServiceServer
	log             *slog.Logger
	openAPI         []byte
	shutdownTimeout time.Duration
	registry        *prometheus.Registry
	tracer          trace.TracerProvider
	tls             *tls.Config
	readyDetails    []readyDetail
	limits          Limits
	callerKey       CallerKey
	callers         *caller.Guard

	// Built by New.
	health  *health.Server
	grpcSrv *grpc.Server
	httpSrv *http.Server
	rest    *restCalls // the gateway's in-process calls, drained at shutdown
	cutREST context.CancelFunc
	// Calls in flight on each listener, and watchers on both (Limits).
	grpcCalls, restCalls, watchers *gate
	// quiet samples the call log's lines of canceled and refused calls.
	quiet *sampler
}

// readyDetail is a field of /readyz's body (WithReadyDetail).
type readyDetail struct {
	name   string
	detail func() string
}

// Option configures a Server.
type Option func(*Server)

// WithLogger sets the logger for call logs and server events. The default
// discards everything.
func WithLogger(l *slog.Logger) Option {
	return func(s *Server) { s.log = l }
}

// WithOpenAPI sets the OpenAPI document served at /openapi.json. Without it,
// that path answers 404.
func WithOpenAPI(doc []byte) Option {
	return func(s *Server) { s.openAPI = doc }
}

// DefaultShutdownTimeout is how long Serve waits for calls in flight by
// default (WithShutdownTimeout).
const DefaultShutdownTimeout = 15 * time.Second

// WithShutdownTimeout bounds how long Serve waits, once its context ends, for
// calls in flight to finish before it closes them. The default is
// DefaultShutdownTimeout.
func WithShutdownTimeout(d time.Duration) Option {
	return func(s *Server) { s.shutdownTimeout = d }
}

// WithRegistry sets the Prometheus registry served at /metrics; the server
// adds its gRPC metrics to it. Use it to serve other metrics (the Go runtime's,
// the upstream client's) beside them. The default is a new registry holding
// only the server's metrics.
func WithRegistry(reg *prometheus.Registry) Option {
	return func(s *Server) { s.registry = reg }
}

// WithTracerProvider sets where the server's spans go. Whatever it is, an
// incoming W3C traceparent (gRPC metadata or HTTP header) is carried on to
// the handlers' context, and so to the upstream. The default records nothing.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(s *Server) { s.tracer = tp }
}

// WithTLS serves both listeners over TLS with cfg (certificates and, for
// mutual TLS, ClientAuth and ClientCAs). The default is plaintext, for local
// use and for deployments where a proxy or mesh terminates TLS.
func WithTLS(cfg *tls.Config) Option {
	return func(s *Server) { s.tls = cfg }
}

// WithCallers has every call, gRPC and REST, go through g: caller identity,
// the caller policy and the fair share of the service's key (internal/caller).
// The identity is then also the caller of the bounds per caller, unless
// WithCallerKey says otherwise. Without it, callers are not told apart.
func WithCallers(g *caller.Guard) Option {
	return func(s *Server) { s.callers = g }
}

// WithReadyDetail adds the field name to the JSON body of /readyz, with what
// detail says at each probe (such as "fleet": "degraded"). It informs
// operators; it never fails the probe.
func WithReadyDetail(name string, detail func() string) Option {
	return func(s *Server) { s.readyDetails = append(s.readyDetails, readyDetail{name, detail}) }
}

// New builds the servers for svc: the gRPC server with its interceptors and
// services, and the HTTP server with the REST gateway and the operational
// endpoints. It fails only when the metrics or the gateway cannot be
// registered.
func New(svc pluginv1.PluginServiceServer, opts ...Option) (*Server, error) {
	s := &Server{svc: svc}
	for _, opt := range opts {
		opt(s)
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.shutdownTimeout <= 0 {
		s.shutdownTimeout = DefaultShutdownTimeout
	}
	if s.registry == nil {
		s.registry = prometheus.NewRegistry()
	}
	if s.tracer == nil {
		s.tracer = noop.NewTracerProvider()
	}
	if s.limits == (Limits{}) {
		s.limits = DefaultLimits()
	}
	if err := s.limits.Validate(); err != nil {
		return nil, err
	}
	if s.callerKey == nil && s.callers != nil {
		s.callerKey = callerIdentity
	}
	if s.callerKey == nil {
		s.callerKey = credentialOrPeer
	}
	if err := s.build(); err != nil {
		return nil, err
	}
	return s, nil
}

// build makes, from the configuration New completed, what serves the calls:
// the bounds, the gRPC server, and the HTTP server with the REST gateway,
// whose in-process calls go through the same interceptors as gRPC's.
func (s *Server) build() error {
	l := s.limits
	s.grpcCalls = newGate(l.MaxInFlight, l.MaxInFlightPerCaller, s.callerKey)
	s.restCalls = newGate(l.MaxInFlight, l.MaxInFlightPerCaller, s.callerKey)
	s.watchers = newGate(l.MaxWatchers, l.MaxWatchersPerCaller, s.callerKey)
	s.quiet = newSampler(time.Second, time.Now)

	s.health = health.NewServer()
	metrics, err := newCallMetrics(s.registry)
	if err != nil {
		return err
	}
	s.grpcSrv = s.grpcServer(metrics)
	s.rest = &restCalls{}
	gw := gateway{
		inProcess: newInProcess(s.svc, append(
			[]grpc.UnaryServerInterceptor{s.rest.intercept}, s.unaryInterceptors(metrics, true)...)...),
		streams: &inProcessStreams{svc: s.svc, desc: &pluginv1.PluginService_ServiceDesc, chain: chainStream(append(
			[]grpc.StreamServerInterceptor{s.rest.interceptStream}, s.streamInterceptors(metrics, true)...)...)},
	}
	handler, err := s.httpHandler(gw)
	if err != nil {
		return err
	}
	s.httpSrv = s.httpServer(handler)
	return nil
}

// httpServer serves handler on the HTTP listener within the limits.
func (s *Server) httpServer(handler http.Handler) *http.Server {
	l := s.limits
	// REST calls still running at the shutdown timeout are canceled through
	// their requests' base context, as grpcSrv.Stop cancels gRPC calls.
	baseCtx, cutREST := context.WithCancel(context.Background())
	s.cutREST = cutREST
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: min(readHeaderTimeout, l.ReadTimeout),
		ReadTimeout:       l.ReadTimeout, // the whole request, body included (only RPC routes take one)
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    l.MaxHeaderBytes, // HTTP/2: SETTINGS_MAX_HEADER_LIST_SIZE
		// The HTTPS listener's HTTP/2 gets the gRPC listener's stream bound.
		// net/http starts at most MaxConcurrentStreams handlers per
		// connection and sends GOAWAY to a client that resets streams faster
		// than they finish; a client that reconnects meets the in-flight
		// bound and, for each reset stream, a call that never starts.
		HTTP2:       &http.HTTP2Config{MaxConcurrentStreams: int(l.MaxConcurrentStreams)},
		BaseContext: func(net.Listener) context.Context { return baseCtx },
		ErrorLog:    slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	if s.tls != nil {
		srv.TLSConfig = s.tls.Clone() // ServeTLS adds h2 and http/1.1
	} else {
		// HTTP/2 without TLS too (prior knowledge, as buf curl
		// --http2-prior-knowledge and gRPC clients speak it), for the
		// streams of gRPC and Connect on this listener (rpcRoutes).
		srv.Protocols = new(http.Protocols)
		srv.Protocols.SetHTTP1(true)
		srv.Protocols.SetUnencryptedHTTP2(true)
	}
	return srv
}

// Serve serves gRPC on grpcLis and HTTP on httpLis until ctx ends, then shuts
// both down gracefully (see shutdown). It returns nil after a clean shutdown,
// or the first error that stopped a server. It closes both listeners.
func (s *Server) Serve(ctx context.Context, grpcLis, httpLis net.Listener) error {
	defer s.cutREST()
	g, gctx := errgroup.WithContext(ctx)
	s.log.Info("serving gRPC", "addr", grpcLis.Addr().String(), "tls", s.tls != nil)
	g.Go(func() error { return s.serveGRPC(grpcLis) })
	s.log.Info("serving HTTP", "addr", httpLis.Addr().String(), "tls", s.tls != nil)
	g.Go(func() error { return s.serveHTTP(httpLis) })
	g.Go(func() error {
		<-gctx.Done()
		return s.shutdown(context.WithoutCancel(ctx))
	})
	err := g.Wait()
	if err != nil { // a server failed: its listener may not have been closed
		grpcLis.Close()
		httpLis.Close()
	}
	return err
}

func (s *Server) serveGRPC(lis net.Listener) error {
	if err := s.grpcSrv.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("gRPC server: %w", err)
	}
	return nil
}

func (s *Server) serveHTTP(lis net.Listener) error {
	var err error
	if s.tls != nil {
		err = s.httpSrv.ServeTLS(lis, "", "")
	} else {
		err = s.httpSrv.Serve(lis)
	}
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("HTTP server: %w", err)
	}
	return nil
}

// shutdown stops both servers gracefully: health turns NOT_SERVING (so
// /readyz answers 503) and new REST calls are refused from that moment, the
// gRPC listener closes while calls in flight, gRPC and REST, get the shutdown
// timeout to finish, and the HTTP server, which answers /readyz and /healthz
// meanwhile, stops last.
func (s *Server) shutdown(ctx context.Context) error {
	s.log.Info("shutting down", "timeout", s.shutdownTimeout.String())
	s.health.Shutdown()
	s.rest.refuse()
	if e, ok := s.svc.(StreamEnder); ok {
		e.EndStreams() // before waiting: an open watch would hold shutdown to its timeout
	}
	ctx, cancel := context.WithTimeout(ctx, s.shutdownTimeout)
	defer cancel()
	// Calls first: the gRPC server stops accepting and waits for its calls in
	// flight, and the gateway's in-process calls (unary and streaming) are
	// drained, while the HTTP server keeps answering /readyz with 503 for the
	// load balancer.
	stopped := make(chan struct{})
	go func() { s.grpcSrv.GracefulStop(); s.rest.wait(); close(stopped) }()
	select {
	case <-stopped:
	case <-ctx.Done():
		s.log.Warn("shutdown timeout: closing calls still in flight")
		s.grpcSrv.Stop()
		s.cutREST()
	}
	// Then HTTP, whose handlers now only write the answers of finished calls.
	if err := s.httpSrv.Shutdown(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("HTTP shutdown: %w", err)
	}
	return nil
}

// StreamEnder is a service whose streams do not end on their own (a watch
// lasts as long as its version takes to change): shutdown calls EndStreams
// first, so that they end at once, each with a status that tells its caller
// to call again, rather than hold shutdown to its timeout and be cut.
type StreamEnder interface {
	EndStreams()
}

// grpcServer builds the gRPC server with its interceptors, services and limits.
func (s *Server) grpcServer(metrics *callMetrics) *grpc.Server {
	opts := []grpc.ServerOption{
		grpc.NumStreamWorkers(streamWorkers),
		grpc.StatsHandler(telemetry.GRPCServerHandler(s.tracer)),
		grpc.ChainUnaryInterceptor(s.unaryInterceptors(metrics, false)...),
		grpc.ChainStreamInterceptor(s.streamInterceptors(metrics, false)...),
		grpc.MaxRecvMsgSize(maxRecvMsgBytes),
		// Advertised in SETTINGS; grpc-go also runs at most this many
		// handlers per connection, so a client resetting streams waits for
		// its handlers rather than starting more.
		grpc.MaxConcurrentStreams(uint32(s.limits.MaxConcurrentStreams)),
		grpc.MaxHeaderListSize(uint32(s.limits.MaxHeaderBytes)),
		grpc.KeepaliveEnforcementPolicy(keepaliveEnforcement),
		grpc.KeepaliveParams(keepaliveParams),
	}
	if s.tls != nil {
		// Through grpc's credentials rather than a TLS listener, so that a
		// call's peer carries the client's verified certificate (caller
		// identity). They negotiate h2 by ALPN, as gRPC clients require.
		opts = append(opts, grpc.Creds(credentials.NewTLS(s.tls.Clone())))
	}
	grpcSrv := grpc.NewServer(opts...)
	pluginv1.RegisterPluginServiceServer(grpcSrv, s.svc)
	healthpb.RegisterHealthServer(grpcSrv, s.health)
	reflection.Register(grpcSrv) // v1 and v1alpha
	s.health.SetServingStatus(pluginv1.PluginService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	metrics.initialize(grpcSrv)
	return grpcSrv
}

// unaryInterceptors are the interceptors of every unary call, outermost
// first, over gRPC (rest false) and in process from the gateway (rest true),
// so that both protocols get the same call log line, metrics and recovery.
// A streaming call gets their stream equivalents (streamInterceptors).
//
// The caller guard (WithCallers) and the limits go last, so that what they
// refuse is logged and counted, and before the service: a call they refuse
// never reaches the upstream. The guard goes first of the two, so that the
// limits per caller know who is calling.
func (s *Server) unaryInterceptors(metrics *callMetrics, rest bool) []grpc.UnaryServerInterceptor {
	calls := s.grpcCalls
	if rest {
		calls = s.restCalls
	}
	ics := []grpc.UnaryServerInterceptor{
		withCallInfo,
		newCallLog(s.log, rest, s.quiet).unary,
		metrics.unary(restOrFromContext(rest)),
		recovery.UnaryServerInterceptor(recovery.WithRecoveryHandlerContext(s.recoverPanic)),
	}
	if s.callers != nil {
		ics = append(ics, s.callers.Unary)
	}
	return append(ics, calls.inFlight)
}

// streamInterceptors are unaryInterceptors for streaming calls.
func (s *Server) streamInterceptors(metrics *callMetrics, rest bool) []grpc.StreamServerInterceptor {
	ics := []grpc.StreamServerInterceptor{
		streamWithCallInfo,
		newCallLog(s.log, rest, s.quiet).stream,
		metrics.stream(restOrFromContext(rest)),
		recovery.StreamServerInterceptor(recovery.WithRecoveryHandlerContext(s.recoverPanic)),
		decodeErrors,
	}
	if s.callers != nil {
		ics = append(ics, s.callers.Stream)
	}
	return append(ics, s.watchers.watchers)
}

// callerIdentity is the caller key of a Server WithCallers: the identity the
// guard decided.
func callerIdentity(ctx context.Context) string {
	id, _ := caller.FromContext(ctx)
	return id.Name
}

// restOrFromContext is the protocol the metrics of a chain count its calls
// under: REST for the gateway's, else as the call's context says.
func restOrFromContext(rest bool) string {
	if rest {
		return protocolREST
	}
	return ""
}

// pluginServiceDescriptor is PluginService's descriptor, with its
// google.api.http annotations.
func pluginServiceDescriptor() protoreflect.ServiceDescriptor {
	return pluginv1.File_confluent_plugin_v1_plugin_service_proto.Services().
		ByName(protoreflect.FullName(pluginv1.PluginService_ServiceDesc.ServiceName).Name())
}

// gateway is what the REST mapping calls: inProcess for unary methods,
// streams for streaming ones.
type gateway struct {
	inProcess *inProcess
	streams   *inProcessStreams
}

// httpHandler builds the HTTP side: the REST mapping of PluginService in
// Confluent Cloud's own JSON (restJSON, rest_errors.go) traced by otelhttp,
// /openapi.json, /metrics, /healthz (liveness: the process answers) and
// /readyz (readiness: the gRPC health state).
func (s *Server) httpHandler(gateway gateway) (http.Handler, error) {
	gw, err := restGateway(gateway)
	if err != nil {
		return nil, err
	}
	// The request's context, made once (one copy of the request): the
	// caller's trace (its traceparent header, and a span in the request's
	// context, which in-process calls keep), the carrier of the upstream's
	// JSON and, with a caller guard, the HTTP origin: the gateway's
	// in-process calls have no gRPC peer, so the guard reads the client's
	// address, certificate and forwarding headers from the HTTP request
	// instead. (Connect and gRPC-Web calls, served by the gRPC server
	// itself, have one.)
	restContext := func(ctx context.Context, r *http.Request) context.Context {
		ctx = carryUpstreamJSON(ctx)
		if s.callers != nil {
			ctx = caller.WithHTTPOrigin(ctx, r)
		}
		return ctx
	}
	api := telemetry.HandlerWithContext(gw, s.tracer, "rest", restContext)
	ops := s.operationalEndpoints()
	// The operational endpoints at their exact paths, the REST mapping
	// everywhere else. The outer mux has cleaned the path (redirecting a
	// request that was not clean), so an exact match is what a ServeMux
	// would find.
	get := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h, ok := ops[r.URL.Path]; ok {
			h.ServeHTTP(w, r)
			return
		}
		api.ServeHTTP(w, r)
	})
	// The RPC protocols POST their messages; everything else is GET only.
	outer := http.NewServeMux()
	if err := s.rpcRoutes(outer); err != nil {
		return nil, err
	}
	outer.Handle("/", getOnly(get))
	return outer, nil
}

// operationalEndpoints are /metrics, /healthz, /readyz and /openapi.json,
// by their exact paths (GET and HEAD only: getOnly).
func (s *Server) operationalEndpoints() map[string]http.Handler {
	ops := map[string]http.Handler{}
	ops["/metrics"] = promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	})
	ops["/healthz"] = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		writeStatus(w, http.StatusOK, "alive")
	})
	ops["/readyz"] = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		resp, err := s.health.Check(r.Context(), &healthpb.HealthCheckRequest{})
		if st := resp.GetStatus(); err == nil && st == healthpb.HealthCheckResponse_SERVING {
			writeStatus(w, http.StatusOK, st.String(), s.readyDetails...)
			return
		}
		writeStatus(w, http.StatusServiceUnavailable, healthpb.HealthCheckResponse_NOT_SERVING.String(), s.readyDetails...)
	})
	if s.openAPI != nil {
		ops["/openapi.json"] = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(s.openAPI)
		})
	}
	return ops
}

// restGateway is grpc-gateway's mux of the REST routes, at the upstream's
// own paths, answering through gateway's in-process calls.
func restGateway(gateway gateway) (*runtime.ServeMux, error) {
	sd := pluginServiceDescriptor()
	enc, err := newRESTJSON(sd)
	if err != nil {
		return nil, err
	}
	gw := runtime.NewServeMux(gatewayOptions(enc)...)
	// runtime.ServeMux tries the handlers registered last first: the unary
	// routes, then the streaming ones, as grpc-gateway's generated
	// registration would order them.
	if err := registerUnary(gw, gateway.inProcess, unaryRoutes(sd), enc); err != nil {
		return nil, fmt.Errorf("registering the REST gateway: %w", err)
	}
	if err := gateway.streams.register(gw, streamingRoutes(sd), enc); err != nil {
		return nil, fmt.Errorf("registering the REST gateway's streaming methods: %w", err)
	}
	return gw, nil
}

// gatewayOptions are the options of the gateway's runtime.ServeMux, which
// routes REST requests to the in-process handlers (rest_unary.go,
// rest_stream.go) and answers what no route serves; those handlers write
// with enc. They forward no request header as metadata of its own
// (incomingContext), as grpc-gateway's generated handlers would with
// runtime.WithIncomingHeaderMatcher(noIncomingHeader).
func gatewayOptions(enc *restJSON) []runtime.ServeMuxOption {
	return []runtime.ServeMuxOption{
		runtime.WithMarshalerOption(runtime.MIMEWildcard, enc),
		runtime.WithErrorHandler(errorHandler),
		runtime.WithRoutingErrorHandler(routingErrorHandler),
		runtime.WithOutgoingHeaderMatcher(outgoingHeader),
		// Route on the escaped path, so that an encoded '/' (%2F) stays inside
		// its path variable instead of splitting it: "ccp-1%2F..%2Fx" reaches
		// validation (decoded) and gets a clear INVALID_ARGUMENT rather than an
		// opaque route miss.
		runtime.WithUnescapingMode(runtime.UnescapingModeAllExceptReserved),
		// No POST with a form body served as the GET it names: the routes
		// are GET only (getOnly).
		runtime.WithDisablePathLengthFallback(),
		runtime.WithMiddlewares(nameSpanByRoute),
		// A resource the service attached the upstream's JSON to is written
		// as the upstream sent it (see package passthrough).
		runtime.WithForwardResponseRewriter(upstreamJSON),
	}
}

// writeStatus answers a probe with {"status": status} and the details.
func writeStatus(w http.ResponseWriter, code int, status string, details ...readyDetail) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	fmt.Fprintf(w, "{\"status\":%q", status)
	for _, d := range details {
		fmt.Fprintf(w, ",%q:%q", d.name, d.detail())
	}
	fmt.Fprint(w, "}\n")
}

// recoverPanic turns a panic in a handler into INTERNAL for the caller and an
// error log for the operator, instead of a crashed process.
func (s *Server) recoverPanic(ctx context.Context, p any) error {
	s.log.ErrorContext(ctx, "panic in a call", "panic", fmt.Sprint(p))
	return failure.Facade(failure.ReasonInternal, "internal error")
}

// LoopbackAddr is the address a local client dials to reach a listener: the
// listener's own port on 127.0.0.1 when it listens on every interface.
func LoopbackAddr(addr net.Addr) string {
	tcp, ok := addr.(*net.TCPAddr)
	if !ok {
		return addr.String()
	}
	if tcp.IP == nil || tcp.IP.IsUnspecified() {
		return net.JoinHostPort("127.0.0.1", fmt.Sprint(tcp.Port))
	}
	return tcp.String()
}
