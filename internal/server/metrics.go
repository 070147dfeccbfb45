package server

import (
	"context"
	"fmt"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
)

// The protocols a call arrives by: the protocol label of the grpc_server_*
// metrics. gRPC on the gRPC listener; on the HTTP listener, REST (the
// gateway), and Connect and gRPC-Web (transcoded into the gRPC server).
const (
	protocolGRPC    = "grpc"
	protocolREST    = "rest"
	protocolConnect = "connect"
	protocolGRPCWeb = "grpcweb"
)

var protocols = []string{protocolGRPC, protocolREST, protocolConnect, protocolGRPCWeb}

// protocolKey is the context key of the protocol a call on the HTTP listener
// arrived by, for the calls the gRPC server handles there.
type protocolKey struct{}

func withProtocol(ctx context.Context, p string) context.Context {
	return context.WithValue(ctx, protocolKey{}, p)
}

// protocolOf is the protocol of a call the gRPC server handles: gRPC, unless
// the HTTP listener said otherwise.
func protocolOf(ctx context.Context) string {
	if p, ok := ctx.Value(protocolKey{}).(string); ok {
		return p
	}
	return protocolGRPC
}

// callMetrics are the go-grpc-middleware server metrics (grpc_server_started_total,
// grpc_server_handled_total, grpc_server_handling_seconds, ...) once per
// protocol, told apart by a constant protocol label so that each series is
// there from the start (InitializeMetrics), and plugin_facade_watches_open.
type callMetrics struct {
	byProtocol  map[string]*grpcprom.ServerMetrics
	watchesOpen prometheus.Gauge
}

func newCallMetrics(reg prometheus.Registerer) (*callMetrics, error) {
	m := &callMetrics{byProtocol: map[string]*grpcprom.ServerMetrics{}, watchesOpen: prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "plugin_facade_watches_open",
		Help: "WatchPluginVersion streams open now, over every protocol.",
	})}
	for _, p := range protocols {
		label := prometheus.Labels{"protocol": p}
		pm := grpcprom.NewServerMetrics(grpcprom.WithServerCounterOptions(grpcprom.WithConstLabels(label)),
			grpcprom.WithServerHandlingTimeHistogram(grpcprom.WithHistogramConstLabels(label)))
		if err := reg.Register(pm); err != nil {
			return nil, fmt.Errorf("registering the gRPC metrics: %w", err)
		}
		m.byProtocol[p] = pm
	}
	if err := reg.Register(m.watchesOpen); err != nil {
		return nil, fmt.Errorf("registering the watch metrics: %w", err)
	}
	return m, nil
}

// initialize creates every method's series, at zero, for every protocol.
func (m *callMetrics) initialize(srv *grpc.Server) {
	for _, pm := range m.byProtocol {
		pm.InitializeMetrics(srv)
	}
}

// unary counts the calls of protocol; "" means the gRPC server's calls, whose
// protocol is protocolOf their context.
func (m *callMetrics) unary(protocol string) grpc.UnaryServerInterceptor {
	if protocol != "" {
		return m.byProtocol[protocol].UnaryServerInterceptor()
	}
	each := map[string]grpc.UnaryServerInterceptor{}
	for p, pm := range m.byProtocol {
		each[p] = pm.UnaryServerInterceptor()
	}
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		return each[protocolOf(ctx)](ctx, req, info, handler)
	}
}

// stream is unary for streaming calls, which it also counts in
// plugin_facade_watches_open while they run (WatchPluginVersion is the only
// streaming method).
func (m *callMetrics) stream(protocol string) grpc.StreamServerInterceptor {
	each := map[string]grpc.StreamServerInterceptor{}
	for p, pm := range m.byProtocol {
		each[p] = pm.StreamServerInterceptor()
	}
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		p := protocol
		if p == "" {
			p = protocolOf(ss.Context())
		}
		if info.IsServerStream {
			m.watchesOpen.Inc()
			defer m.watchesOpen.Dec()
		}
		return each[p](srv, ss, info, handler)
	}
}
