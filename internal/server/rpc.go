package server

import (
	"fmt"
	"net/http"
	"strings"

	"connectrpc.com/vanguard"
	"connectrpc.com/vanguard/vanguardgrpc"
)

// rpcRoutes serves every service of the gRPC server (PluginService, health,
// reflection) on the HTTP listener too, at its gRPC path
// (/confluent.plugin.v1.PluginService/GetPluginVersion), in the Connect
// protocol, gRPC-Web and gRPC, so that `buf curl`, Connect clients and
// browser clients work with their defaults. vanguard transcodes each call
// into the gRPC server itself (ServeHTTP), so it goes through the same
// interceptors as on the gRPC listener: call log, metrics and limits; the
// protocol label says which protocol it came by. The gRPC listener stays
// gRPC only (and faster: grpc-go's own transport).
func (s *Server) rpcRoutes(mux *http.ServeMux) error {
	// A message is buffered whole before it reaches the gRPC server, whose
	// own bound (maxRecvMsgBytes) would come too late: vanguard's default
	// is 4 GiB.
	transcoder, err := vanguardgrpc.NewTranscoder(s.grpcSrv, vanguard.WithDefaultServiceOptions(
		vanguard.WithMaxMessageBufferBytes(maxRecvMsgBytes)))
	if err != nil {
		return fmt.Errorf("serving Connect and gRPC-Web: %w", err)
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		transcoder.ServeHTTP(w, r.WithContext(withProtocol(r.Context(), rpcProtocol(r))))
	})
	for name := range s.grpcSrv.GetServiceInfo() {
		mux.Handle("/"+name+"/", h)
	}
	return nil
}

// rpcProtocol is the protocol of an RPC on the HTTP listener, by its
// Content-Type, as vanguard tells them apart.
func rpcProtocol(r *http.Request) string {
	ct := r.Header.Get("Content-Type")
	switch {
	case strings.HasPrefix(ct, "application/grpc-web"):
		return protocolGRPCWeb
	case strings.HasPrefix(ct, "application/grpc"):
		return protocolGRPC
	}
	return protocolConnect
}
