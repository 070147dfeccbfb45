// Package server assembles the running facade: a gRPC server (PluginService with
// logging and panic-recovery interceptors, grpc.health.v1, server reflection v1
// and v1alpha) and an HTTP server (the grpc-gateway REST mapping of the same API,
// /openapi.json and /healthz). The gateway reaches PluginService through a gRPC
// client connection to the gRPC listener, so REST calls pass through the same
// interceptors as gRPC calls.
//
// It lives apart from cmd/server so that tests can start the very stack the
// binary runs, on loopback listeners of their own.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	pluginv1 "github.com/acme/plugin-facade/gen/go/confluent/plugin/v1"
)

// streamWorkers is how many goroutines the gRPC server keeps to run calls.
// Without them it starts a goroutine per call, whose stack then grows (by
// copying) through the interceptors, the upstream HTTP call and JSON decoding:
// about a tenth of the facade's CPU under load (see docs/benchmarks.md). A
// worker's stack stays grown between calls. Calls beyond this many at once
// still get a goroutine of their own; idle workers cost only their stacks.
const streamWorkers = 64

// Server is the facade's gRPC and HTTP servers, ready to serve. Create it with
// New and run it with Serve.
type Server struct {
	svc             pluginv1.PluginServiceServer
	log             *slog.Logger
	openAPI         []byte
	shutdownTimeout time.Duration
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

// WithShutdownTimeout bounds how long Serve waits, once its context ends, for
// calls in flight to finish before it closes them. The default is 10 seconds.
func WithShutdownTimeout(d time.Duration) Option {
	return func(s *Server) { s.shutdownTimeout = d }
}

// New returns a Server for svc.
func New(svc pluginv1.PluginServiceServer, opts ...Option) *Server {
	s := &Server{svc: svc}
	for _, opt := range opts {
		opt(s)
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.shutdownTimeout <= 0 {
		s.shutdownTimeout = 10 * time.Second
	}
	return s
}

// Serve serves gRPC on grpcLis and HTTP on httpLis until ctx ends, then shuts
// both down gracefully: health turns NOT_SERVING, new connections are refused,
// and calls in flight get the shutdown timeout to finish. It returns nil after a
// clean shutdown, or the first error that stopped a server. It closes both
// listeners.
func (s *Server) Serve(ctx context.Context, grpcLis, httpLis net.Listener) (err error) {
	defer func() {
		if err != nil { // when a server failed, or before they started
			grpcLis.Close()
			httpLis.Close()
		}
	}()
	healthSrv := health.NewServer()
	grpcSrv := grpc.NewServer(
		grpc.NumStreamWorkers(streamWorkers),
		grpc.ChainUnaryInterceptor(
			logging.UnaryServerInterceptor(slogAdapter(s.log), logging.WithLogOnEvents(logging.FinishCall)),
			recovery.UnaryServerInterceptor(recovery.WithRecoveryHandlerContext(s.recoverPanic)),
		),
	)
	pluginv1.RegisterPluginServiceServer(grpcSrv, s.svc)
	healthpb.RegisterHealthServer(grpcSrv, healthSrv)
	reflection.Register(grpcSrv) // v1 and v1alpha
	healthSrv.SetServingStatus(pluginv1.PluginService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)

	conn, err := grpc.NewClient(LoopbackAddr(grpcLis.Addr()), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("gateway connection to %s: %w", grpcLis.Addr(), err)
	}
	defer conn.Close()
	gw, err := s.gateway(ctx, conn)
	if err != nil {
		return err
	}
	httpSrv := &http.Server{
		Handler:           gw,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		s.log.Info("serving gRPC", "addr", grpcLis.Addr().String())
		if err := grpcSrv.Serve(grpcLis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			return fmt.Errorf("gRPC server: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		s.log.Info("serving HTTP", "addr", httpLis.Addr().String())
		if err := httpSrv.Serve(httpLis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("HTTP server: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		s.log.Info("shutting down", "timeout", s.shutdownTimeout.String())
		healthSrv.Shutdown()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.shutdownTimeout)
		defer cancel()
		// HTTP first: its calls in flight still need the gRPC server to finish.
		httpErr := httpSrv.Shutdown(sctx)
		stopped := make(chan struct{})
		go func() { grpcSrv.GracefulStop(); close(stopped) }()
		select {
		case <-stopped:
		case <-sctx.Done():
			grpcSrv.Stop()
		}
		if httpErr != nil && !errors.Is(httpErr, context.DeadlineExceeded) {
			return fmt.Errorf("HTTP shutdown: %w", httpErr)
		}
		return nil
	})
	return g.Wait()
}

// gateway builds the HTTP handler: the REST mapping of PluginService (JSON with
// the proto field names, other gateway defaults kept), /healthz backed by the
// gRPC health service, and /openapi.json.
func (s *Server) gateway(ctx context.Context, conn *grpc.ClientConn) (http.Handler, error) {
	mux := runtime.NewServeMux(
		runtime.WithMarshalerOption(runtime.MIMEWildcard, &runtime.HTTPBodyMarshaler{
			Marshaler: &runtime.JSONPb{
				MarshalOptions:   protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true},
				UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: true},
			},
		}),
		runtime.WithErrorHandler(errorHandler),
		// Route on the escaped path, so that an encoded '/' (%2F) stays inside
		// its path variable instead of splitting it: "ccp-1%2F..%2Fx" reaches
		// validation (decoded) and gets a clear INVALID_ARGUMENT rather than an
		// opaque route miss.
		runtime.WithUnescapingMode(runtime.UnescapingModeAllExceptReserved),
		runtime.WithHealthzEndpoint(healthpb.NewHealthClient(conn)),
	)
	if err := pluginv1.RegisterPluginServiceHandler(ctx, mux, conn); err != nil {
		return nil, fmt.Errorf("registering the REST gateway: %w", err)
	}
	if s.openAPI != nil {
		if err := mux.HandlePath(http.MethodGet, "/openapi.json", s.serveOpenAPI); err != nil {
			return nil, fmt.Errorf("registering /openapi.json: %w", err)
		}
	}
	return mux, nil
}

func (s *Server) serveOpenAPI(w http.ResponseWriter, _ *http.Request, _ map[string]string) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(s.openAPI)
}

// recoverPanic turns a panic in a handler into INTERNAL for the caller and an
// error log for the operator, instead of a crashed process.
func (s *Server) recoverPanic(ctx context.Context, p any) error {
	s.log.ErrorContext(ctx, "panic in a call", "panic", fmt.Sprint(p))
	return status.Error(codes.Internal, "internal error")
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

// slogAdapter lets go-grpc-middleware's logging interceptor write to slog. The
// interceptor logs the method, code and duration of each call; it logs no
// metadata, so credentials never reach the log.
func slogAdapter(l *slog.Logger) logging.Logger {
	return logging.LoggerFunc(func(ctx context.Context, lvl logging.Level, msg string, fields ...any) {
		l.Log(ctx, slog.Level(lvl), msg, fields...)
	})
}
