package service

import (
	"encoding/json"
	"errors"
	"os"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/acme/plugin-facade/internal/failure"
	"github.com/acme/plugin-facade/internal/upstream"
)

// The microbenchmarks of `make bench`: what the facade adds to each call
// besides the network. Run: go test -run '^$' -bench . -benchmem ./internal/service/

func benchBody(b *testing.B, name string) []byte {
	b.Helper()
	body, err := os.ReadFile("../upstream/testdata/" + name)
	if err != nil {
		b.Fatal(err)
	}
	return body
}

// BenchmarkPluginVersion decodes the specification's example version (as the
// upstream client does), translates it into the contract's message, and
// encodes that as gRPC sends it; each step alone, then the three together.
func BenchmarkPluginVersion(b *testing.B) {
	benchResource(b, "plugin_version.json", func(v *upstream.PluginVersion) proto.Message { return pluginVersionToProto(v) })
}

// BenchmarkConnectorPlugin is BenchmarkPluginVersion for the connector plugin.
func BenchmarkConnectorPlugin(b *testing.B) {
	benchResource(b, "connector_plugin.json", func(p *upstream.ConnectorPlugin) proto.Message { return connectorPluginToProto(p) })
}

func benchResource[T any](b *testing.B, file string, translate func(*T) proto.Message) {
	body := benchBody(b, file)
	decode := func(b *testing.B) *T {
		var v T
		if err := json.Unmarshal(body, &v); err != nil {
			b.Fatal(err)
		}
		return &v
	}
	b.Run("decode", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			decode(b)
		}
	})
	v := decode(b)
	b.Run("translate", func(b *testing.B) {
		for b.Loop() {
			translate(v)
		}
	})
	msg := translate(v)
	b.Run("marshal", func(b *testing.B) {
		for b.Loop() {
			if _, err := proto.Marshal(msg); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("decode+translate+marshal", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			if _, err := proto.Marshal(translate(decode(b))); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkErrorTranslation turns upstream failures into a gRPC status with
// its details, and encodes the status as it travels in the grpc-status-details-bin
// trailer.
func BenchmarkErrorTranslation(b *testing.B) {
	var f struct{ Errors []upstream.ErrorItem }
	if err := json.Unmarshal(benchBody(b, "failure_400.json"), &f); err != nil {
		b.Fatal(err)
	}
	tests := []struct {
		name string
		err  error
	}{
		{"400-envelope-with-source", &upstream.Error{StatusCode: 400, Items: f.Errors, RequestID: "6f1e9c1a-3b7d-4a0e-9f59-7c2d1e8b4a10",
			RateLimit: upstream.RateLimit{Limit: -1, Remaining: -1, Reset: -1}}},
		{"429-retry-after", &upstream.Error{StatusCode: 429, RequestID: "6f1e9c1a-3b7d-4a0e-9f59-7c2d1e8b4a10",
			Items:      []upstream.ErrorItem{{ID: "1", Status: "429", Code: "too_many_requests", Title: "Too Many Requests", Detail: "Slow down."}},
			RateLimit:  upstream.RateLimit{Limit: 1000, Remaining: 0, Reset: 7 * time.Second},
			RetryAfter: 7 * time.Second}},
		{"502-html", &upstream.Error{StatusCode: 502, Excerpt: "<html><head><title>502 Bad Gateway</title></head>",
			RateLimit: upstream.RateLimit{Limit: -1, Remaining: -1, Reset: -1}}},
		{"connection-reset", &upstream.TransportError{Method: "GET", Path: "/connect/v1/custom-connector-plugins/ccp-1", Err: syscall.ECONNRESET}},
	}
	for _, tt := range tests {
		b.Run(tt.name, func(b *testing.B) {
			for b.Loop() {
				err := failure.FromUpstream(tt.err, "api.confluent.cloud", upstream.Meta{Attempts: 1})
				st, ok := status.FromError(err)
				if !ok {
					b.Fatal(errors.New("not a status"))
				}
				if _, err := proto.Marshal(st.Proto()); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
