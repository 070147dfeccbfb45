package server

import (
	"net/http"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// nameSpanByRoute is a gateway middleware that names the request's server
// span (started by telemetry.Handler before routing, so named only "rest")
// by its route, as OpenTelemetry's HTTP conventions say: the method and the
// route template, such as "GET /ccpm/v1/plugins/{plugin_id}/versions/{id}",
// and sets http.route. A route template, never the path, so that a span name
// holds no identifier and traces group by endpoint.
func nameSpanByRoute(next runtime.HandlerFunc) runtime.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request, params map[string]string) {
		if span := trace.SpanFromContext(r.Context()); span.IsRecording() {
			if p, ok := runtime.HTTPPattern(r.Context()); ok {
				route := routeTemplate(p.String())
				span.SetName(r.Method + " " + route)
				span.SetAttributes(attribute.String("http.route", route))
			}
		}
		next(w, r, params)
	}
}

// routeTemplate turns grpc-gateway's rendering of a pattern
// ("/v1/{id=*}/x:watch") into the template the routes are declared with
// ("/v1/{id}/x:watch").
func routeTemplate(pattern string) string {
	return strings.ReplaceAll(pattern, "=*}", "}")
}
