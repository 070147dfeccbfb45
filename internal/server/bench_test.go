package server

import (
	"net/http"
	"testing"

	pluginv1 "github.com/acme/plugin-facade/gen/go/confluent/plugin/v1"
	"github.com/acme/plugin-facade/internal/sandbox"
	"github.com/acme/plugin-facade/internal/service"
)

// BenchmarkGetConnectorPlugin measures one call through the whole stack (client,
// interceptors, service, upstream client, sandbox over loopback HTTP) per
// protocol. Run: go test -run '^$' -bench . -benchmem ./internal/server/
// The sandbox's rate limit is off, so every call reaches it.
func BenchmarkGetConnectorPlugin(b *testing.B) {
	s := startStack(b, []service.Option{service.WithDefaultCredentials(sandboxKey)}, sandbox.WithRateLimit(0, 0))
	req := &pluginv1.GetConnectorPluginRequest{Id: sandbox.PluginID}

	b.Run("gRPC", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := s.client.GetConnectorPlugin(b.Context(), req); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("gRPC-parallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := s.client.GetConnectorPlugin(b.Context(), req); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	b.Run("REST", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if r := s.get(b, "/connect/v1/custom-connector-plugins/"+sandbox.PluginID); r.status != http.StatusOK {
				b.Fatalf("status %d", r.status)
			}
		}
	})
	b.Run("invalid-request", func(b *testing.B) {
		// Rejected by validation: the cost of the facade alone, no upstream call.
		bad := &pluginv1.GetConnectorPluginRequest{Id: "ccp/1"}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := s.client.GetConnectorPlugin(b.Context(), bad); err == nil {
				b.Fatal("want an error")
			}
		}
	})
}
