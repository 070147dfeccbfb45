package attack

import (
	"context"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	pluginv1 "github.com/acme/plugin-facade/gen/go/confluent/plugin/v1"
	"github.com/acme/plugin-facade/internal/sandbox"
)

// Watchers is a crowd of watch streams whose clients do not read.
type Watchers struct {
	cancel  context.CancelFunc
	conns   []*grpc.ClientConn
	streams []grpc.ServerStreamingClient[pluginv1.CustomConnectPluginVersion]
}

// OpenWatchers opens n watches of a version that stays PROCESSING on the
// plaintext gRPC port addr, perConn per connection, and reads none of them.
func OpenWatchers(addr string, n, perConn int) (*Watchers, error) {
	ctx, cancel := context.WithCancel(context.Background())
	w := &Watchers{cancel: cancel}
	req := &pluginv1.WatchPluginVersionRequest{PluginId: sandbox.PluginID, Id: sandbox.ProcessingVersionID, Environment: sandbox.Environment}
	var client pluginv1.PluginServiceClient
	for i := range n {
		if i%perConn == 0 {
			conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				w.Close()
				return nil, err
			}
			w.conns = append(w.conns, conn)
			client = pluginv1.NewPluginServiceClient(conn)
		}
		s, err := client.WatchPluginVersion(ctx, req)
		if err != nil {
			continue // refused before it opened
		}
		w.streams = append(w.streams, s)
	}
	return w, nil
}

// Count reads each stream's first message and reports how many watches were
// accepted and how many refused RESOURCE_EXHAUSTED.
func (w *Watchers) Count() (accepted, refused int) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for _, s := range w.streams {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			_, err := s.Recv()
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				accepted++
			case status.Code(err) == codes.ResourceExhausted:
				refused++
			}
		})
	}
	wg.Wait()
	return accepted, refused
}

// Close cancels every watch and closes the connections.
func (w *Watchers) Close() {
	w.cancel()
	for _, c := range w.conns {
		c.Close()
	}
}
