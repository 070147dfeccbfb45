package server

import (
	"net/http"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/acme/plugin-facade/internal/sandbox"
	"github.com/acme/plugin-facade/internal/service"
	"github.com/acme/plugin-facade/internal/upstream"
)

// TestRESTSpansNamedByRoute: each REST call's server span is named by the
// method and route template, never the path with its identifiers.
func TestRESTSpansNamedByRoute(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	sb, err := sandbox.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sb.Close() })
	uc, err := upstream.New(sb.URL())
	if err != nil {
		t.Fatal(err)
	}
	s := startServer(t, service.New(uc, service.WithDefaultCredentials(sandboxKey)), sb, WithTracerProvider(tp))

	tests := []struct{ path, wantSpan string }{
		{"/ccpm/v1/plugins/" + sandbox.PluginID + "/versions/" + sandbox.VersionID + "?environment=" + sandbox.Environment,
			"GET /ccpm/v1/plugins/{plugin_id}/versions/{id}"},
		{"/connect/v1/custom-connector-plugins/" + sandbox.PluginID, "GET /connect/v1/custom-connector-plugins/{id}"},
		{"/connect/v1/custom-connector-plugins/ccp-00000", "GET /connect/v1/custom-connector-plugins/{id}"},
		{"/ccpm/v1/plugins/" + sandbox.PluginID + "/versions/" + sandbox.VersionID + ":watch?environment=" + sandbox.Environment,
			"GET /ccpm/v1/plugins/{plugin_id}/versions/{id}:watch"},
	}
	for _, tt := range tests {
		t.Run(tt.wantSpan, func(t *testing.T) {
			before := len(rec.Ended())
			r := s.get(t, tt.path)
			if r.status == 0 {
				t.Fatalf("no answer")
			}
			var names []string
			for _, sp := range rec.Ended()[before:] {
				if sp.SpanKind().String() != "server" {
					continue
				}
				names = append(names, sp.Name())
				if sp.Name() == tt.wantSpan {
					for _, a := range sp.Attributes() {
						if a.Key == "http.route" && a.Value != attribute.StringValue(tt.wantSpan[len(http.MethodGet)+1:]) {
							t.Errorf("http.route = %v", a.Value.AsString())
						}
					}
					return
				}
			}
			t.Errorf("server spans %q, want one named %q", names, tt.wantSpan)
		})
	}
}
