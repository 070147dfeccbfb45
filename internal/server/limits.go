package server

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	pluginv1 "github.com/acme/plugin-facade/gen/go/confluent/plugin/v1"
	"github.com/acme/plugin-facade/internal/failure"
	"github.com/acme/plugin-facade/internal/settings"
	"github.com/acme/plugin-facade/internal/upstream"
)

// Limits bound what callers may hold of the servers: connections, streams,
// headers, time, calls in flight and watchers. Each is a flag of cmd/server;
// the README's Limits table lists them with their defaults.
type Limits struct {
	// ReadTimeout bounds the reading of a whole HTTP request, body included;
	// the REST routes accept no body, so a request that declares one is
	// answered at once and its connection closed (see getOnly), and the RPC
	// routes one request message (rpcRoutes).
	ReadTimeout time.Duration
	// MaxConcurrentStreams is the SETTINGS_MAX_CONCURRENT_STREAMS advertised
	// on every HTTP/2 connection, gRPC and HTTPS: streams beyond it are
	// refused by the transport, and handlers beyond it never start.
	MaxConcurrentStreams int
	// MaxHeaderBytes bounds a request's headers: the HTTP/2 header list
	// (gRPC metadata included; SETTINGS_MAX_HEADER_LIST_SIZE) and HTTP/1.1's
	// request line and headers.
	MaxHeaderBytes int
	// MaxInFlight bounds the unary calls running at once on each listener
	// (gRPC, with the HTTP port's RPC routes that run in the gRPC server;
	// REST); beyond it a call is answered RESOURCE_EXHAUSTED (429) without
	// reaching the upstream.
	MaxInFlight int
	// MaxInFlightPerCaller bounds them per caller (WithCallerKey); 0: no
	// bound per caller.
	MaxInFlightPerCaller int
	// MaxWatchers bounds the watch streams open at once, gRPC and REST
	// together; MaxWatchersPerCaller bounds them per caller. Beyond either a
	// watch is answered RESOURCE_EXHAUSTED (429).
	MaxWatchers, MaxWatchersPerCaller int
}

// The default limits. The header bound is sized for the largest legitimate
// credential: an Authorization value of upstream.MaxAuthorizationBytes (8
// KiB), plus 8 KiB for everything else a request carries (its path and query
// of a few identifiers of at most 255 characters, traceparent, user agent,
// gRPC's own headers; HTTP/2 counts 32 bytes more per field). The watcher
// caps are what fits the Deployment's 128 MiB with room left for calls, as
// docs/hardening.md measures never-read watchers; 64 per caller lets one
// team watch a release's worth of versions without taking the lot.
const (
	DefaultReadTimeout          = 10 * time.Second
	DefaultMaxConcurrentStreams = 100
	DefaultMaxHeaderBytes       = 16 << 10
	DefaultMaxInFlight          = 256
	DefaultMaxWatchers          = 512
	DefaultMaxWatchersPerCaller = 64
)

// DefaultLimits are the limits of a Server without WithLimits.
func DefaultLimits() Limits {
	return Limits{
		ReadTimeout:          DefaultReadTimeout,
		MaxConcurrentStreams: DefaultMaxConcurrentStreams,
		MaxHeaderBytes:       DefaultMaxHeaderBytes,
		MaxInFlight:          DefaultMaxInFlight,
		MaxWatchers:          DefaultMaxWatchers,
		MaxWatchersPerCaller: DefaultMaxWatchersPerCaller,
	}
}

// Validate returns every limit that cannot be served with as a
// *settings.Problem.
func (l Limits) Validate() error {
	var ps settings.Problems
	ps.Check(l.ReadTimeout > 0, "ReadTimeout", "must be positive")
	ps.Check(l.MaxConcurrentStreams >= 1 && l.MaxConcurrentStreams <= 1<<20, "MaxConcurrentStreams", "must be between 1 and 1048576")
	ps.Check(l.MaxHeaderBytes >= 4<<10, "MaxHeaderBytes", "must be at least 4096")
	ps.Check(l.MaxInFlight >= 1, "MaxInFlight", "must be at least 1")
	ps.Check(l.MaxInFlightPerCaller >= 0, "MaxInFlightPerCaller", "must not be negative (0: no bound per caller)")
	ps.Check(l.MaxWatchers >= 1, "MaxWatchers", "must be at least 1")
	ps.Check(l.MaxWatchersPerCaller >= 1, "MaxWatchersPerCaller", "must be at least 1")
	return ps.Err()
}

// WithLimits sets the servers' limits; New refuses limits that do not
// Validate. The default is DefaultLimits.
func WithLimits(l Limits) Option {
	return func(s *Server) { s.limits = l }
}

// CallerKey names the caller of a call, for the bounds per caller; calls with
// the same key share them. An empty key is a caller of its own.
type CallerKey func(ctx context.Context) string

// WithCallerKey sets who a call's caller is, for MaxInFlightPerCaller and
// MaxWatchersPerCaller. Use it once callers are identified (a client
// certificate, a token's subject). The default is credentialOrPeer.
func WithCallerKey(k CallerKey) Option {
	return func(s *Server) { s.callerKey = k }
}

// credentialOrPeer is the default caller key: the fingerprint of the
// credential the caller sent, else its network address without the port: the
// gRPC peer's, or for a REST call (served in process, so without a peer) the
// HTTP client's, which the gateway appends to x-forwarded-for. A gRPC
// caller's own x-forwarded-for is never read: it could name anyone.
func credentialOrPeer(ctx context.Context) string {
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get("authorization"); len(v) == 1 {
		if a, err := upstream.ParseAuthorization(v[0]); err == nil {
			fp := a.Fingerprint()
			return "credential:" + string(fp[:])
		}
	}
	if p, ok := peer.FromContext(ctx); ok {
		host, _, err := net.SplitHostPort(p.Addr.String())
		if err != nil {
			host = p.Addr.String()
		}
		return "peer:" + host
	}
	if addr, ok := restClient(ctx); ok {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			host = addr
		}
		return "peer:" + host
	}
	return ""
}

// gate counts what callers hold (calls in flight, watchers) against a total
// bound and a bound per caller (0: none). Without a bound per caller it is
// one atomic counter, so that every call does not take a lock.
type gate struct {
	max, perCaller int
	key            CallerKey // consulted only with a bound per caller
	total          atomic.Int64
	release        func() // gives back a place without a caller

	mu       sync.Mutex
	byCaller map[string]int
}

func newGate(max, perCaller int, key CallerKey) *gate {
	g := &gate{max: max, perCaller: perCaller, key: key, byCaller: map[string]int{}}
	g.release = func() { g.total.Add(-1) }
	return g
}

// enter takes a place for ctx's caller, and returns the function that gives
// it back; ok is false, and nothing taken, when a bound is reached.
func (g *gate) enter(ctx context.Context) (leave func(), ok bool) {
	if g.total.Add(1) > int64(g.max) {
		g.total.Add(-1)
		return nil, false
	}
	if g.perCaller == 0 {
		return g.release, true
	}
	caller := g.key(ctx)
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.byCaller[caller] >= g.perCaller {
		g.total.Add(-1)
		return nil, false
	}
	g.byCaller[caller]++
	return func() {
		g.mu.Lock()
		defer g.mu.Unlock()
		if g.byCaller[caller]--; g.byCaller[caller] == 0 {
			delete(g.byCaller, caller)
		}
		g.total.Add(-1)
	}, true
}

// held is what the gate's callers hold now.
func (g *gate) held() int { return int(g.total.Load()) }

// refusal is the RESOURCE_EXHAUSTED failure of a call a limit refused
// (failure.ReasonTooManyCalls, failure.ReasonTooManyWatchers): 429 over REST,
// with a retry hint of a second, since places come back as calls end.
func refusal(reason, msg string) error { return failure.Busy(reason, msg, time.Second) }

// isPluginService reports whether fullMethod is one of PluginService's: the
// calls that reach the upstream. Health and reflection are never refused.
func isPluginService(fullMethod string) bool {
	return strings.HasPrefix(fullMethod, pluginServicePrefix)
}

var pluginServicePrefix = "/" + pluginv1.PluginService_ServiceDesc.ServiceName + "/"

// inFlight bounds the unary PluginService calls of one listener. It goes
// after the call log and metrics, so that a refused call is logged and
// counted, and before the service: a call refused here, or whose caller left
// while it waited to be handled (a reset stream), never reaches the upstream.
func (g *gate) inFlight(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if !isPluginService(info.FullMethod) {
		return handler(ctx, req)
	}
	if err := ctx.Err(); err != nil {
		return nil, status.FromContextError(err).Err()
	}
	leave, ok := g.enter(ctx)
	if !ok {
		return nil, refusal(failure.ReasonTooManyCalls, fmt.Sprintf(
			"too many calls in flight on this listener (at most %d at once%s); try again shortly", g.max, g.perCallerText()))
	}
	defer leave()
	return handler(ctx, req)
}

// watchers bounds the server-streaming PluginService calls (watches) of
// both listeners.
func (g *gate) watchers(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if !isPluginService(info.FullMethod) || !info.IsServerStream {
		return handler(srv, ss)
	}
	leave, ok := g.enter(ss.Context())
	if !ok {
		return refusal(failure.ReasonTooManyWatchers, fmt.Sprintf(
			"too many watches open (at most %d at once%s); close one or try again later", g.max, g.perCallerText()))
	}
	defer leave()
	return handler(srv, ss)
}

func (g *gate) perCallerText() string {
	if g.perCaller == 0 {
		return ""
	}
	return fmt.Sprintf(", %d per caller", g.perCaller)
}

// decodeErrors makes a request message the server could not decode the
// caller's fault in the call log and the metrics: INVALID_ARGUMENT, where
// grpc-go says INTERNAL, so that it is neither logged at ERROR nor counted as
// a server fault. (grpc-go itself has already answered the caller INTERNAL
// by then: its RecvMsg writes the status. A unary call's request is decoded
// before any interceptor runs, so it is neither logged nor counted.)
func decodeErrors(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	return handler(srv, &decodingStream{ss})
}

type decodingStream struct{ grpc.ServerStream }

// grpcDecodeFailure begins grpc-go's message for a request message it could
// not unmarshal (its wording since 1.0; the code is INTERNAL).
const grpcDecodeFailure = "grpc: failed to unmarshal the received message"

func (s *decodingStream) RecvMsg(m any) error {
	err := s.ServerStream.RecvMsg(m)
	if st, ok := status.FromError(err); ok && st.Code() == codes.Internal && strings.HasPrefix(st.Message(), grpcDecodeFailure) {
		return status.Error(codes.InvalidArgument, "the request message is not a valid "+fmt.Sprintf("%T", m)+" in protobuf")
	}
	return err
}

// getOnly serves only what a REST route (or /metrics, a probe, the OpenAPI
// document) can be: a GET (or HEAD) without a body. Another method is answered 405, a body 413, without reading it: over
// HTTP/1.1 the answer closes the connection at once (no read of the rest of
// the body to reuse it), so that a declared body the client never sends holds
// nothing. (The whole-request deadline, Limits.ReadTimeout, bounds only the
// reading: a watch or a slow upstream call outlasts it.)
func getOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		httpStatus := 0
		switch {
		case r.Method != http.MethodGet && r.Method != http.MethodHead:
			httpStatus = http.StatusMethodNotAllowed
			w.Header().Set("Allow", "GET, HEAD")
		case r.ContentLength != 0: // declared, or -1: chunked, or an HTTP/2 stream still open
			httpStatus = http.StatusRequestEntityTooLarge
		}
		if httpStatus != 0 {
			if r.ProtoMajor == 1 {
				w.Header().Set("Connection", "close")
			}
			routingErrorHandler(r.Context(), nil, nil, w, r, httpStatus)
			if r.ProtoMajor == 1 {
				// net/http would read up to 256 KiB of the unread body before
				// closing; with the deadline past, it closes at once.
				_ = http.NewResponseController(w).SetReadDeadline(time.Now())
			}
			return
		}
		h.ServeHTTP(w, r)
	})
}
