package server

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	pluginv1 "github.com/acme/plugin-facade/gen/go/confluent/plugin/v1"
	"github.com/acme/plugin-facade/internal/caller"
	"github.com/acme/plugin-facade/internal/callinfo"
	"github.com/acme/plugin-facade/internal/passthrough"
	"github.com/acme/plugin-facade/internal/service"
	"github.com/acme/plugin-facade/internal/telemetry"
)

// BenchmarkGatewayPath is the facade's own cost of one REST call, without the
// network and without the service's upstream call: the HTTP server's handler
// (getOnly, tracing without an exporter, caller origin, the upstream JSON's carrier,
// grpc-gateway, the interceptors with the call log at info, the caller guard
// and the limits) around a service that answers at once as the real one
// does: it records the upstream's answer for the call log, sets the
// upstream's response headers and attaches the upstream's JSON. The default
// configuration's, as make bench runs it. Run:
// go test -run '^$' -bench GatewayPath -benchmem ./internal/server/
func BenchmarkGatewayPath(b *testing.B) {
	guard, err := caller.New()
	if err != nil {
		b.Fatal(err)
	}
	tp, err := telemetry.NewTracerProvider(b.Context(), "bench", func(string) string { return "" }) // no exporter
	if err != nil {
		b.Fatal(err)
	}
	srv, err := New(answerAtOnce{}, WithLogger(slog.New(slog.NewJSONHandler(io.Discard, nil))), WithCallers(guard), WithTracerProvider(tp))
	if err != nil {
		b.Fatal(err)
	}
	h := srv.httpSrv.Handler
	req := httptest.NewRequest(http.MethodGet, "/connect/v1/custom-connector-plugins/ccp-4d2b7a", nil)
	req.RemoteAddr = "127.0.0.1:54321"
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "Go-http-client/1.1")
	req.Header.Set("Authorization", "Basic a2V5OnNlY3JldA==")
	w := &discardResponse{header: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		r := *req
		clear(w.header)
		w.status = 0
		h.ServeHTTP(w, &r)
		if w.status != http.StatusOK {
			b.Fatalf("status %d", w.status)
		}
	}
}

// answerAtOnce answers GetConnectorPlugin as the service does after its
// upstream call.
type answerAtOnce struct {
	pluginv1.UnimplementedPluginServiceServer
}

const benchPluginJSON = `{"api_version":"connect/v1","kind":"CustomConnectorPlugin","id":"ccp-4d2b7a",` +
	`"metadata":{"self":"https://api.confluent.cloud/connect/v1/custom-connector-plugins/ccp-4d2b7a",` +
	`"resource_name":"crn://confluent.cloud/organization=o-1/custom-connector-plugin=ccp-4d2b7a",` +
	`"created_at":"2026-01-02T03:04:05.123456Z","updated_at":"2026-01-02T03:04:05.123456Z"},` +
	`"display_name":"Datagen","content_format":"ZIP","description":"Generates data",` +
	`"connector_class":"io.confluent.kafka.connect.datagen.DatagenConnector","connector_type":"SOURCE","cloud":"AWS"}`

func (answerAtOnce) GetConnectorPlugin(ctx context.Context, req *pluginv1.GetConnectorPluginRequest) (*pluginv1.CustomConnectorPlugin, error) {
	callinfo.FromContext(ctx).Record(callinfo.Upstream{Status: 200, RequestID: "9c1b4e0f-6b1e-4c55-8d11-2f4a3f1d2e3c", Attempts: 1})
	_ = grpc.SetHeader(ctx, metadata.Pairs(service.MDRequestID, "9c1b4e0f-6b1e-4c55-8d11-2f4a3f1d2e3c",
		service.MDRateLimitLimit, "100", service.MDRateLimitRemaining, "99", service.MDRateLimitReset, "60"))
	msg := &pluginv1.CustomConnectorPlugin{ApiVersion: "connect/v1", Kind: "CustomConnectorPlugin", Id: req.GetId()}
	passthrough.Attach(ctx, msg, []byte(benchPluginJSON))
	return msg, nil
}

// discardResponse is an http.ResponseWriter that keeps the status and
// headers and discards the body.
type discardResponse struct {
	header http.Header
	status int
}

func (w *discardResponse) Header() http.Header { return w.header }

func (w *discardResponse) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
}

func (w *discardResponse) Write(b []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	return len(b), nil
}
