package telemetry

import (
	"context"
	"net/http"
	"testing"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/stats"
)

// roundTripperFunc answers with what f returns.
type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// unexported is the tracer provider of a process started without OTEL_*
// variables.
func unexported(tb testing.TB) *TracerProvider {
	tp, err := NewTracerProvider(context.Background(), "test", func(string) string { return "" })
	if err != nil {
		tb.Fatal(err)
	}
	if tp.Exporting() {
		tb.Fatal("exporting without OTEL_* variables")
	}
	tb.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return tp
}

// TestRuntimeIDs: ids are valid and do not repeat.
func TestRuntimeIDs(t *testing.T) {
	seen := map[trace.TraceID]bool{}
	spans := map[trace.SpanID]bool{}
	for range 10000 {
		tid, sid := runtimeIDs{}.NewIDs(context.Background())
		if !tid.IsValid() || !sid.IsValid() || seen[tid] || spans[sid] {
			t.Fatalf("ids %s %s: invalid or repeated", tid, sid)
		}
		seen[tid], spans[sid] = true, true
	}
}

// TestTransportWithoutExporter: an unrecorded call's upstream request carries
// its trace context, on a copy; the request it was given is unchanged.
func TestTransportWithoutExporter(t *testing.T) {
	tp := unexported(t)
	ctx, span := tp.Tracer("test").Start(context.Background(), "call")
	defer span.End()
	var sent *http.Request
	rt := Transport(tp)(roundTripperFunc(func(r *http.Request) (*http.Response, error) {
		sent = r
		return &http.Response{StatusCode: http.StatusOK, Body: http.NoBody}, nil
	}))
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://upstream.test/x", nil)
	req.Header.Set("Authorization", "Basic a2V5OnNlY3JldA==")
	req.Header.Set("Accept", "application/json")
	if _, err := rt.RoundTrip(req); err != nil {
		t.Fatal(err)
	}
	sc := span.SpanContext()
	want := "00-" + sc.TraceID().String() + "-" + sc.SpanID().String() + "-00"
	if got := sent.Header.Get("Traceparent"); got != want {
		t.Errorf("traceparent = %q, want %q", got, want)
	}
	if sent.Header.Get("Authorization") != "Basic a2V5OnNlY3JldA==" || sent.Header.Get("Accept") != "application/json" {
		t.Errorf("sent headers %v lack the request's own", sent.Header)
	}
	if len(req.Header) != 2 || req.Header.Get("Traceparent") != "" {
		t.Errorf("the given request was changed: %v", req.Header)
	}
	if trace.SpanFromContext(ctx).IsRecording() {
		t.Error("the span is recorded without an exporter")
	}
}

// BenchmarkTransportWithoutExporter is what tracing adds to each upstream
// request when no exporter is set. Run:
// go test -run '^$' -bench Transport -benchmem ./internal/telemetry/
func BenchmarkTransportWithoutExporter(b *testing.B) {
	tp := unexported(b)
	ctx, span := tp.Tracer("bench").Start(context.Background(), "call")
	defer span.End()
	ok := &http.Response{StatusCode: http.StatusOK, Body: http.NoBody}
	rt := Transport(tp)(roundTripperFunc(func(*http.Request) (*http.Response, error) { return ok, nil }))
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://upstream.test/x", nil)
	for _, k := range []string{"Authorization", "Accept", "User-Agent", "X-Request-Id"} {
		req.Header.Set(k, "value")
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := rt.RoundTrip(req); err != nil {
			b.Fatal(err)
		}
	}
}

// TestGRPCServerHandlerWithoutExporter: an unrecorded call continues the
// caller's trace from its traceparent metadata, as otelgrpc's handler does,
// and starts a trace of its own without one.
func TestGRPCServerHandlerWithoutExporter(t *testing.T) {
	tp := unexported(t)
	info := &stats.RPCTagInfo{FullMethodName: "/confluent.plugin.v1.PluginService/GetConnectorPlugin"}
	const caller = "4bf92f3577b34da6a3ce929d0e0e4736"
	tests := []struct {
		name    string
		md      metadata.MD
		traceID string // "" for a new one
	}{
		{"continues the caller's trace", metadata.Pairs("traceparent", "00-"+caller+"-00f067aa0ba902b7-01"), caller},
		{"starts a trace without traceparent", metadata.Pairs("x-other", "1"), ""},
		{"starts a trace for a malformed traceparent", metadata.Pairs("traceparent", "00-zz-00f067aa0ba902b7-01"), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for name, h := range map[string]stats.Handler{
				"ours":     GRPCServerHandler(tp),
				"otelgrpc": otelgrpc.NewServerHandler(otelgrpc.WithTracerProvider(tp), otelgrpc.WithPropagators(Propagator())),
			} {
				ctx := h.TagRPC(metadata.NewIncomingContext(context.Background(), tt.md), info)
				sc := trace.SpanContextFromContext(ctx)
				if !sc.IsValid() || trace.SpanFromContext(ctx).IsRecording() {
					t.Errorf("%s: span %+v, want a valid unrecorded one", name, sc)
				}
				if tt.traceID != "" && sc.TraceID().String() != tt.traceID {
					t.Errorf("%s: trace id %s, want the caller's %s", name, sc.TraceID(), tt.traceID)
				}
				if tt.traceID == "" && sc.TraceID().String() == caller {
					t.Errorf("%s: reused the caller's trace id", name)
				}
				h.HandleRPC(ctx, &stats.End{})
			}
		})
	}
	if _, ok := GRPCServerHandler(noop.NewTracerProvider()).(*grpcContinuer); ok {
		t.Error("a provider that may record got the unrecorded handler")
	}
}

// BenchmarkGRPCServerHandler is what tracing adds to each gRPC call when no
// exporter is set, through otelgrpc and through GRPCServerHandler: TagRPC and
// the events a unary call's handler sees. Run:
// go test -run '^$' -bench GRPCServerHandler -benchmem ./internal/telemetry/
func BenchmarkGRPCServerHandler(b *testing.B) {
	tp := unexported(b)
	info := &stats.RPCTagInfo{FullMethodName: "/confluent.plugin.v1.PluginService/GetConnectorPlugin"}
	md := metadata.Pairs("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"user-agent", "grpc-go/1.79", "content-type", "application/grpc", ":authority", "127.0.0.1:9090")
	base := metadata.NewIncomingContext(context.Background(), md)
	events := []stats.RPCStats{&stats.Begin{}, &stats.InHeader{}, &stats.InPayload{}, &stats.OutHeader{}, &stats.OutPayload{}, &stats.OutTrailer{}, &stats.End{}}
	for name, h := range map[string]stats.Handler{
		"otelgrpc": otelgrpc.NewServerHandler(otelgrpc.WithTracerProvider(tp), otelgrpc.WithPropagators(Propagator())),
		"ours":     GRPCServerHandler(tp),
	} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				ctx := h.TagRPC(base, info)
				for _, e := range events {
					h.HandleRPC(ctx, e)
				}
			}
		})
	}
}
