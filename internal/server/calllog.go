package server

import (
	"context"
	"log/slog"
	"maps"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/acme/plugin-facade/internal/callinfo"
)

// withCallInfo gives each call a *callinfo.Info for the service to record
// the upstream's answer into; the call log reads it for the call's line.
func withCallInfo(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	ctx, _ = callinfo.NewContext(ctx)
	return handler(ctx, req)
}

// streamWithCallInfo is withCallInfo for streaming calls.
func streamWithCallInfo(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	ctx, _ := callinfo.NewContext(ss.Context())
	return handler(srv, &contextStream{ServerStream: ss, ctx: ctx})
}

// contextStream is a ServerStream whose handler sees another context.
type contextStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *contextStream) Context() context.Context { return s.ctx }

// callLog writes the one line of each call, "finished call", with the fields
// go-grpc-middleware's logging interceptor writes (grpc.component,
// grpc.service, grpc.method, grpc.method_type, peer.address, grpc.start_time,
// grpc.request.deadline, grpc.code, grpc.error, grpc.time_ms), at its levels
// (logging.DefaultServerCodeToLevel), plus protocol (grpc, or rest for calls
// through the gateway, whose peer.address is then the HTTP client's),
// trace_id and what the upstream answered (callinfo).
//
// It replaces that interceptor because the latter builds and merges every
// field of every call, twice asking for the context's, before the logger can
// say that the line's level is off: work for lines nobody reads at
// --log-level warn. callLog asks the logger first, once the call's code, and
// so its level, is known.
//
// Health checks are left out: probes would flood the log. The interceptor
// logs no metadata and no payload, so credentials never reach the log.
type callLog struct {
	log *slog.Logger
	// rest is set on the chain the gateway's in-process calls go through.
	rest bool
	// The strings of the last peer and start second, which most lines
	// repeat; nil keeps no memory.
	memo *lineMemo
	// quiet samples the lines of canceled and refused calls (sampledCode).
	quiet *sampler
	// methods holds, per method, log with the attributes every line of the
	// method begins with.
	methods *methodLoggers
}

// newCallLog returns the call log of the gRPC server's chain (rest false)
// or of the gateway's, sampling with quiet (nil: every line).
func newCallLog(log *slog.Logger, rest bool, quiet *sampler) callLog {
	return callLog{log: log, rest: rest, memo: &lineMemo{}, quiet: quiet, methods: &methodLoggers{}}
}

// methodLoggers are loggers with the attributes every line of a method
// begins with (grpc.component, grpc.service, grpc.method, grpc.method_type,
// and protocol on the gateway's chain), which slog.Logger.With has the
// handler format once rather than on every line: the line is the same. A
// method is one the server serves (the gRPC server calls no interceptor
// for another), so there are a few; past maxMethodLoggers the attributes
// are the line's own. The map is replaced whole, so a line reads it without
// a lock.
type methodLoggers struct {
	m  atomic.Pointer[map[string]*slog.Logger]
	mu sync.Mutex
}

const maxMethodLoggers = 64

// get returns the logger of fullMethod, made by build the first time; nil
// when there are too many.
func (l *methodLoggers) get(fullMethod string, build func() *slog.Logger) *slog.Logger {
	if m := l.m.Load(); m != nil {
		if log, ok := (*m)[fullMethod]; ok {
			return log
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	old := map[string]*slog.Logger{}
	if m := l.m.Load(); m != nil {
		old = *m
	}
	if log, ok := old[fullMethod]; ok {
		return log
	}
	if len(old) >= maxMethodLoggers {
		return nil
	}
	next := maps.Clone(old)
	next[fullMethod] = build()
	l.m.Store(&next)
	return next[fullMethod]
}

// lineMemo remembers the last peer address and start second as strings,
// for the lines that follow: the calls of one connection have one peer, and
// thousands of calls a second start within one second. Each is one
// immutable value, replaced whole, so concurrent calls need no lock.
type lineMemo struct {
	peer  atomic.Pointer[memoPeer]
	start atomic.Pointer[memoSecond]
}

type memoPeer struct {
	addr *net.TCPAddr
	s    string
}

type memoSecond struct {
	unix int64
	loc  *time.Location
	s    string
}

// peerAddress is addr.String().
func (m *lineMemo) peerAddress(addr net.Addr) string {
	tcp, ok := addr.(*net.TCPAddr)
	if m == nil || !ok {
		return addr.String()
	}
	if p := m.peer.Load(); p != nil && p.addr == tcp {
		return p.s
	}
	s := tcp.String()
	m.peer.Store(&memoPeer{tcp, s})
	return s
}

// startTime is t.Format(time.RFC3339).
func (m *lineMemo) startTime(t time.Time) string {
	if m == nil {
		return t.Format(time.RFC3339)
	}
	if p := m.start.Load(); p != nil && p.unix == t.Unix() && p.loc == t.Location() {
		return p.s
	}
	s := t.Format(time.RFC3339)
	m.start.Store(&memoSecond{t.Unix(), t.Location(), s})
	return s
}

func (c callLog) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if isHealth(info.FullMethod) {
		return handler(ctx, req)
	}
	start := time.Now()
	resp, err := handler(ctx, req)
	c.finished(ctx, info.FullMethod, "unary", start, err)
	return resp, err
}

func (c callLog) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if isHealth(info.FullMethod) {
		return handler(srv, ss)
	}
	typ := "bidi_stream" // the method types' names of go-grpc-middleware
	switch {
	case !info.IsClientStream:
		typ = "server_stream"
	case !info.IsServerStream:
		typ = "client_stream"
	}
	start := time.Now()
	err := handler(srv, ss)
	c.finished(ss.Context(), info.FullMethod, typ, start, err)
	return err
}

func isHealth(fullMethod string) bool {
	return strings.HasPrefix(fullMethod, "/"+healthpb.Health_ServiceDesc.ServiceName+"/")
}

// finished logs the line of a call to fullMethod that started at start and
// ended with err.
func (c callLog) finished(ctx context.Context, fullMethod, typ string, start time.Time, err error) {
	code := status.Code(err)
	level := slog.Level(logging.DefaultServerCodeToLevel(code))
	if !c.log.Enabled(ctx, level) {
		return
	}
	dropped := 0
	if sampledCode(code) && c.quiet != nil {
		var ok bool
		if dropped, ok = c.quiet.admit(fullMethod + " " + code.String()); !ok {
			return
		}
	}
	elapsed := time.Since(start)
	attrs := make([]slog.Attr, 0, 20)
	log := c.methods.get(fullMethod, func() *slog.Logger {
		return c.log.With(attrsToAny(c.appendMethod(nil, fullMethod, typ))...)
	})
	if log == nil {
		log, attrs = c.log, c.appendMethod(attrs, fullMethod, typ)
	}
	attrs = c.appendOrigin(attrs, ctx)
	attrs = append(attrs, slog.String("grpc.start_time", c.memo.startTime(start)))
	if d, ok := ctx.Deadline(); ok {
		attrs = append(attrs, slog.String("grpc.request.deadline", d.Format(time.RFC3339)))
	}
	if sc := trace.SpanContextFromContext(ctx); sc.HasTraceID() {
		attrs = append(attrs, slog.String("trace_id", sc.TraceID().String()))
	}
	attrs = callinfo.FromContext(ctx).AppendAttrs(attrs)
	attrs = append(attrs, slog.String("grpc.code", code.String()))
	if err != nil {
		attrs = append(attrs, slog.String("grpc.error", err.Error()))
	}
	// Milliseconds with microsecond precision, as a string: go-grpc-middleware's
	// grpc.time_ms, which dashboards may already parse.
	ms := float32(elapsed.Nanoseconds()/1000) / 1000
	attrs = append(attrs, slog.String("grpc.time_ms", strconv.FormatFloat(float64(ms), 'g', -1, 32)))
	if dropped > 0 {
		attrs = append(attrs, slog.Int("calls_not_logged", dropped))
	}
	// The record goes to the handler directly: Logger.LogAttrs would also
	// capture the caller's program counter for a source location (this line,
	// for every call), which no handler of the facade's writes.
	r := slog.NewRecord(time.Now(), level, "finished call", 0)
	r.AddAttrs(attrs...)
	_ = log.Handler().Handle(ctx, r) // as LogAttrs, which drops the handler's error
}

// appendMethod appends the attributes every line of fullMethod (of type
// typ) begins with: grpc.component, grpc.service, grpc.method,
// grpc.method_type and, on the gateway's chain, protocol.
func (c callLog) appendMethod(attrs []slog.Attr, fullMethod, typ string) []slog.Attr {
	service, method, _ := strings.Cut(strings.TrimPrefix(fullMethod, "/"), "/")
	attrs = append(attrs,
		slog.String("grpc.component", "server"),
		slog.String("grpc.service", service),
		slog.String("grpc.method", method),
		slog.String("grpc.method_type", typ),
	)
	if c.rest {
		attrs = append(attrs, slog.String("protocol", protocolREST))
	}
	return attrs
}

func attrsToAny(attrs []slog.Attr) []any {
	out := make([]any, len(attrs))
	for i, a := range attrs {
		out[i] = a
	}
	return out
}

// sampledCode reports whether lines of calls that ended with code are
// sampled (one per second per method and code, with calls_not_logged saying
// how many were left out before it): the codes a flood of callers can cause
// at will, a stream reset (CANCELED) and a limit reached (RESOURCE_EXHAUSTED).
func sampledCode(code codes.Code) bool {
	return code == codes.Canceled || code == codes.ResourceExhausted
}

// appendOrigin appends protocol (but on the gateway's chain, whose
// protocol is appendMethod's) and peer.address. A REST call is one of
// c.rest's chains (served in process by the gateway), which put the HTTP
// client's address last in x-forwarded-for.
func (c callLog) appendOrigin(attrs []slog.Attr, ctx context.Context) []slog.Attr {
	if !c.rest {
		attrs = append(attrs, slog.String("protocol", protocolOf(ctx)))
		if p, ok := peer.FromContext(ctx); ok {
			attrs = append(attrs, slog.String("peer.address", c.memo.peerAddress(p.Addr)))
		}
		return attrs
	}
	if addr, ok := restClient(ctx); ok {
		attrs = append(attrs, slog.String("peer.address", addr))
	}
	return attrs
}

// restClient is the HTTP client's address of a call the gateway serves in
// process: the last of x-forwarded-for, to which the gateway appends it.
func restClient(ctx context.Context) (string, bool) {
	xff := metadata.ValueFromIncomingContext(ctx, "x-forwarded-for")
	if len(xff) == 0 {
		return "", false
	}
	last := xff[len(xff)-1]
	if i := strings.LastIndexByte(last, ','); i >= 0 {
		last = strings.TrimSpace(last[i+1:])
	}
	return last, true
}
