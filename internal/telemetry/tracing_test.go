package telemetry

import (
	"context"
	"net/http"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// roundTripperFunc answers with what f returns.
type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestTransportWithoutExporter: an unrecorded call's upstream request carries
// its trace context, on a copy; the request it was given is unchanged.
func TestTransportWithoutExporter(t *testing.T) {
	tp := &TracerProvider{TracerProvider: sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.NeverSample()))}
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
	tp := &TracerProvider{TracerProvider: sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.NeverSample()))}
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
