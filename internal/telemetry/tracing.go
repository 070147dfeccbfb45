package telemetry

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"

	"go.opentelemetry.io/contrib/exporters/autoexport"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/stats"
)

// Propagator is how trace context crosses process boundaries: the W3C
// traceparent, in gRPC metadata and HTTP headers alike, and nothing else. It is
// used whether or not spans are exported, so that a caller's trace continues to
// the upstream through the facade.
//
// A caller's tracestate and baggage are dropped where they come in: the
// upstream requests are signed with the service's own key, and what a caller
// wrote there (tenant=evil) would reach Confluent Cloud as if the facade had
// said it. The trace id and parent span id are all a trace needs.
func Propagator() propagation.TextMapPropagator { return traceparentOnly{} }

// traceparentOnly is propagation.TraceContext without tracestate.
type traceparentOnly struct{ tc propagation.TraceContext }

var _ propagation.TextMapPropagator = traceparentOnly{}

func (p traceparentOnly) Inject(ctx context.Context, carrier propagation.TextMapCarrier) {
	if sc := trace.SpanContextFromContext(ctx); sc.TraceState().Len() > 0 {
		ctx = trace.ContextWithSpanContext(ctx, sc.WithTraceState(trace.TraceState{}))
	}
	p.tc.Inject(ctx, carrier)
}

func (p traceparentOnly) Extract(ctx context.Context, carrier propagation.TextMapCarrier) context.Context {
	ctx = p.tc.Extract(ctx, carrier)
	if sc := trace.SpanContextFromContext(ctx); sc.IsRemote() && sc.TraceState().Len() > 0 {
		ctx = trace.ContextWithRemoteSpanContext(ctx, sc.WithTraceState(trace.TraceState{}))
	}
	return ctx
}

func (traceparentOnly) Fields() []string { return []string{"traceparent"} }

// exportVars are the environment variables that turn span export on. Without
// any of them, spans are created (so that trace ids propagate and appear in
// logs) but sent nowhere: autoexport alone would default to OTLP on
// localhost:4318 and log an export error every few seconds on machines with
// no collector.
var exportVars = []string{"OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"}

// NewTracerProvider returns the process's tracer provider. Spans are exported
// as the standard OTEL_* environment variables say (see
// go.opentelemetry.io/contrib/exporters/autoexport: OTEL_TRACES_EXPORTER,
// OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_PROTOCOL, ...) once one of
// exportVars is set; otherwise nowhere. The service is named plugin-facade
// unless OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES say otherwise. Like
// the OpenTelemetry SDK, it reads the process environment. Shut the provider
// down on exit to flush the spans it holds.
//
// Whether to export is read through getenv (the environment run was given);
// how to, once exporting, is the SDK's business, and it reads the process
// environment itself.
func NewTracerProvider(ctx context.Context, version string, getenv func(string) string) (*TracerProvider, error) {
	res, err := resource.New(ctx,
		resource.WithAttributes(semconv.ServiceName("plugin-facade"), semconv.ServiceVersion(version)),
		resource.WithFromEnv(), // OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win
		resource.WithTelemetrySDK(),
	)
	if err != nil {
		return nil, fmt.Errorf("OpenTelemetry resource: %w", err)
	}
	var exp sdktrace.SpanExporter
	if exporting(getenv) {
		if exp, err = autoexport.NewSpanExporter(ctx); err != nil {
			return nil, fmt.Errorf("OpenTelemetry span exporter (OTEL_TRACES_EXPORTER=%q, OTEL_EXPORTER_OTLP_PROTOCOL=%q): %w",
				getenv("OTEL_TRACES_EXPORTER"), getenv("OTEL_EXPORTER_OTLP_PROTOCOL"), err)
		}
		if autoexport.IsNoneSpanExporter(exp) {
			exp = nil
		}
	}
	opts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res), sdktrace.WithIDGenerator(runtimeIDs{})}
	if exp != nil {
		opts = append(opts, sdktrace.WithBatcher(exp))
	} else {
		// Spans nobody will read are not recorded: they still carry the
		// caller's trace id (to the logs and the upstream) and a span id of
		// their own, but cost neither attributes nor events.
		opts = append(opts, sdktrace.WithSampler(sdktrace.NeverSample()))
	}
	return &TracerProvider{TracerProvider: sdktrace.NewTracerProvider(opts...), exporting: exp != nil}, nil
}

// TracerProvider is the SDK's, knowing whether it exports: when it does not,
// every span it makes is unrecorded, Handler and Transport skip otelhttp, and
// GRPCServerHandler skips otelgrpc.
type TracerProvider struct {
	*sdktrace.TracerProvider
	exporting bool
}

// Exporting reports whether spans are recorded and exported.
func (tp *TracerProvider) Exporting() bool { return tp.exporting }

// recording reports whether tp may record spans: any provider but one of ours
// that does not export.
func recording(tp trace.TracerProvider) bool {
	if e, ok := tp.(interface{ Exporting() bool }); ok {
		return e.Exporting()
	}
	return true
}

// Handler traces the HTTP requests h serves: with otelhttp (a server span
// with the request's attributes) when tp records spans; otherwise it only
// continues the caller's trace, putting the traceparent's context and an
// unrecorded span of its own in the request's context, for the upstream
// request and the call log.
func Handler(h http.Handler, tp trace.TracerProvider, name string) http.Handler {
	return HandlerWithContext(h, tp, name, nil)
}

// HandlerWithContext is Handler, but h gets the request with the context
// that with derives from the traced one (with nil: the traced one itself).
// Without a recording provider, the request is then copied once, for both.
func HandlerWithContext(h http.Handler, tp trace.TracerProvider, name string, with func(context.Context, *http.Request) context.Context) http.Handler {
	if with == nil {
		with = func(ctx context.Context, _ *http.Request) context.Context { return ctx }
	}
	if recording(tp) {
		inner := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			h.ServeHTTP(w, r.WithContext(with(r.Context(), r)))
		})
		traced := otelhttp.NewHandler(inner, name, otelhttp.WithTracerProvider(tp), otelhttp.WithPropagators(Propagator()))
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			// otelhttp renames the span after h returns from the pattern of
			// the ServeMux that routed here (a catch-all "/"), which would
			// undo the name h gave it by its own route (server's
			// nameSpanByRoute); without a pattern it keeps h's name.
			r = r.WithContext(r.Context())
			r.Pattern = ""
			traced.ServeHTTP(w, r)
		})
	}
	tracer, prop := tp.Tracer("github.com/acme/plugin-facade/internal/telemetry"), Propagator()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := prop.Extract(r.Context(), requestHeader(r.Header))
		ctx, span := tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindServer))
		defer span.End()
		h.ServeHTTP(w, r.WithContext(with(ctx, r)))
	})
}

// requestHeader is propagation.HeaderCarrier for a request's headers,
// reading the propagator's own fields (traceparent, tracestate) by their
// canonical names rather than canonicalising the name on every request, as
// http.Header.Get does.
type requestHeader http.Header

var canonicalFields = map[string]string{"traceparent": "Traceparent", "tracestate": "Tracestate"}

func (h requestHeader) Get(key string) string {
	if name, ok := canonicalFields[key]; ok {
		if vs := h[name]; len(vs) > 0 {
			return vs[0]
		}
		return ""
	}
	return http.Header(h).Get(key)
}

func (h requestHeader) Values(key string) []string {
	if name, ok := canonicalFields[key]; ok {
		return h[name]
	}
	return http.Header(h).Values(key)
}

func (h requestHeader) Set(key, value string) { http.Header(h).Set(key, value) }

func (h requestHeader) Keys() []string { return propagation.HeaderCarrier(h).Keys() }

// GRPCServerHandler traces the gRPC calls a server serves: with otelgrpc (a
// server span with the call's attributes and events) when tp records spans;
// otherwise, as Handler does for HTTP, it only continues the caller's trace,
// putting the traceparent's context and an unrecorded span of its own in the
// call's context, for the upstream request and the call log.
func GRPCServerHandler(tp trace.TracerProvider) stats.Handler {
	if recording(tp) {
		return otelgrpc.NewServerHandler(otelgrpc.WithTracerProvider(tp), otelgrpc.WithPropagators(Propagator()))
	}
	return &grpcContinuer{tracer: tp.Tracer("github.com/acme/plugin-facade/internal/telemetry"), prop: Propagator()}
}

// grpcContinuer is GRPCServerHandler's handler for unrecorded calls.
type grpcContinuer struct {
	tracer trace.Tracer
	prop   propagation.TextMapPropagator
}

func (h *grpcContinuer) TagRPC(ctx context.Context, info *stats.RPCTagInfo) context.Context {
	ctx = h.prop.Extract(ctx, incomingMetadata{ctx})
	ctx, _ = h.tracer.Start(ctx, strings.TrimPrefix(info.FullMethodName, "/"), trace.WithSpanKind(trace.SpanKindServer))
	return ctx
}

func (h *grpcContinuer) HandleRPC(ctx context.Context, s stats.RPCStats) {
	if _, ok := s.(*stats.End); ok {
		trace.SpanFromContext(ctx).End()
	}
}

func (h *grpcContinuer) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return ctx
}

func (h *grpcContinuer) HandleConn(context.Context, stats.ConnStats) {}

// incomingMetadata is the incoming gRPC metadata of a call as a
// propagation.TextMapCarrier, read in place (metadata.FromIncomingContext
// would copy it all).
type incomingMetadata struct{ ctx context.Context }

func (m incomingMetadata) Get(key string) string {
	if v := metadata.ValueFromIncomingContext(m.ctx, key); len(v) > 0 {
		return v[0]
	}
	return ""
}

func (m incomingMetadata) Set(string, string) {}

func (m incomingMetadata) Keys() []string {
	md, _ := metadata.FromIncomingContext(m.ctx)
	keys := make([]string, 0, len(md))
	for k := range md {
		keys = append(keys, k)
	}
	return keys
}

// runtimeIDs makes trace and span ids from math/rand/v2's generator, which
// each thread runs on its own: the SDK's default draws them from one
// math/rand source behind a mutex, which every call of every core takes.
// Ids need to be unpredictable enough not to collide, not secret; never zero.
type runtimeIDs struct{}

func (runtimeIDs) NewIDs(context.Context) (trace.TraceID, trace.SpanID) {
	var tid trace.TraceID
	for !tid.IsValid() {
		binary.NativeEndian.PutUint64(tid[:8], rand.Uint64())
		binary.NativeEndian.PutUint64(tid[8:], rand.Uint64())
	}
	return tid, runtimeIDs{}.NewSpanID(context.Background(), tid)
}

func (runtimeIDs) NewSpanID(context.Context, trace.TraceID) trace.SpanID {
	var sid trace.SpanID
	for !sid.IsValid() {
		binary.NativeEndian.PutUint64(sid[:], rand.Uint64())
	}
	return sid
}

func exporting(getenv func(string) string) bool {
	for _, v := range exportVars {
		if getenv(v) != "" {
			return true
		}
	}
	return false
}

// Transport returns an upstream.WithTransport wrapper that sends the trace
// context along with each upstream HTTP exchange, and traces the exchange as a
// client span when the call's span is recorded (sampled, with an exporter).
// Calls whose span is not recorded skip otelhttp, which would compute span and
// metric attributes nobody reads.
func Transport(tp trace.TracerProvider) func(http.RoundTripper) http.RoundTripper {
	return func(rt http.RoundTripper) http.RoundTripper {
		return &transport{
			next:   rt,
			traced: otelhttp.NewTransport(rt, otelhttp.WithTracerProvider(tp), otelhttp.WithPropagators(Propagator())),
			prop:   Propagator(),
		}
	}
}

type transport struct {
	next, traced http.RoundTripper
	prop         propagation.TextMapPropagator
}

func (t *transport) RoundTrip(r *http.Request) (*http.Response, error) {
	ctx := r.Context()
	if trace.SpanFromContext(ctx).IsRecording() {
		return t.traced.RoundTrip(r)
	}
	// A RoundTripper must not change the request it is given: the context
	// goes on a copy with a header map of its own. The map's values are
	// shared, not copied: Inject only sets whole keys (a new slice each),
	// and nothing below changes a request's headers.
	r2 := *r
	r2.Header = make(http.Header, len(r.Header)+3) // + traceparent, tracestate, baggage
	for k, v := range r.Header {
		r2.Header[k] = v
	}
	t.prop.Inject(ctx, propagation.HeaderCarrier(r2.Header))
	return t.next.RoundTrip(&r2)
}
