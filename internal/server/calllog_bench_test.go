package server

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/peer"

	"github.com/acme/plugin-facade/internal/callinfo"
)

// BenchmarkCallLog is the call log's cost per call, apart from the write
// (the handler writes to io.Discard): a gRPC call with a peer, a deadline, a
// trace and an upstream answer, as make bench's calls have. Run:
// go test -run '^$' -bench CallLog -benchmem ./internal/server/
func BenchmarkCallLog(b *testing.B) {
	ctx := peer.NewContext(context.Background(), &peer.Peer{Addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 54321}})
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	tid, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	sid, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	ctx = trace.ContextWithSpanContext(ctx, trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid}))
	info := &grpc.UnaryServerInfo{FullMethod: "/confluent.plugin.v1.PluginService/GetConnectorPlugin"}
	for _, tt := range []struct {
		name string
		err  error
	}{{"ok", nil}, {"error", errors.New("upstream: 404 Not Found")}} {
		b.Run(tt.name, func(b *testing.B) {
			c := newCallLog(slog.New(slog.NewJSONHandler(io.Discard, nil)), false, nil)
			handler := func(ctx context.Context, _ any) (any, error) {
				callinfo.FromContext(ctx).Record(callinfo.Upstream{Status: 200, RequestID: "9c1b4e0f-6b1e-4c55-8d11-2f4a3f1d2e3c", Attempts: 1})
				return nil, tt.err
			}
			b.ReportAllocs()
			for b.Loop() {
				_, _ = withCallInfo(ctx, nil, info, func(ctx context.Context, req any) (any, error) {
					return c.unary(ctx, req, info, handler)
				})
			}
		})
	}
}
