package server

import (
	"context"
	"log/slog"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	"github.com/acme/plugin-facade/internal/callinfo"
)

// withCallInfo gives each call a *callinfo.Info for the service to record
// the upstream's answer into; callFields reads it for the call's log line.
func withCallInfo(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	ctx, _ = callinfo.NewContext(ctx)
	return handler(ctx, req)
}

// callFields are the fields the call log adds to go-grpc-middleware's own
// (grpc.service, grpc.method, grpc.code, grpc.time_ms, peer.address, ...):
// protocol (grpc, or rest for calls through the gateway, whose
// peer.address is then the HTTP client's), trace_id, and what the upstream
// answered. The logging interceptor asks again when the call finishes, so the
// upstream's facts recorded by the handler make it into the line.
func callFields(ctx context.Context) logging.Fields {
	f := logging.Fields{"protocol", "grpc"}
	if p, ok := peer.FromContext(ctx); ok && p.Addr.Network() == "bufconn" {
		f = logging.Fields{"protocol", "rest"}
		// grpc-gateway passes the HTTP client's address on as X-Forwarded-For.
		if xff := metadata.ValueFromIncomingContext(ctx, "x-forwarded-for"); len(xff) > 0 {
			f = append(f, "peer.address", xff[len(xff)-1])
		}
	}
	if sc := trace.SpanContextFromContext(ctx); sc.HasTraceID() {
		f = append(f, "trace_id", sc.TraceID().String())
	}
	for _, a := range callinfo.FromContext(ctx).Attrs() {
		f = append(f, a.Key, a.Value.Any())
	}
	return f
}

// slogAdapter lets go-grpc-middleware's logging interceptor write to slog. The
// interceptor logs no metadata and no payload, so credentials never reach the
// log.
func slogAdapter(l *slog.Logger) logging.Logger {
	return logging.LoggerFunc(func(ctx context.Context, lvl logging.Level, msg string, fields ...any) {
		l.Log(ctx, slog.Level(lvl), msg, fields...)
	})
}
