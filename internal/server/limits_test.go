package server

import (
	"context"
	"fmt"
	"net"
	"runtime"
	"sync"
	"testing"

	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
)

// The default caller key: the credential whatever its spelling, else the
// address the server itself saw; a gRPC caller's x-forwarded-for names nobody.
func TestCredentialOrPeer(t *testing.T) {
	grpcPeer := func(ctx context.Context) context.Context {
		return peer.NewContext(ctx, &peer.Peer{Addr: &net.TCPAddr{IP: net.IPv4(10, 0, 0, 7), Port: 41000}})
	}
	md := func(kv ...string) context.Context {
		return metadata.NewIncomingContext(context.Background(), metadata.Pairs(kv...))
	}
	tests := []struct {
		name string
		ctx  context.Context
		want string // another case's name: the same key; "" a key of its own
	}{
		{"Basic", md("authorization", "Basic S0VZOnMzY3IzdD8="), ""},
		{"Basic unpadded", md("authorization", "basic S0VZOnMzY3IzdD8"), "Basic"},
		{"gRPC peer", grpcPeer(context.Background()), ""},
		{"gRPC peer, other port", peer.NewContext(context.Background(), &peer.Peer{Addr: &net.TCPAddr{IP: net.IPv4(10, 0, 0, 7), Port: 9}}), "gRPC peer"},
		{"gRPC peer claiming another address", grpcPeer(md("x-forwarded-for", "10.9.9.9")), "gRPC peer"},
		{"REST client", md("x-forwarded-for", "192.0.2.1, 10.0.0.7"), "gRPC peer"},
		{"REST client elsewhere", md("x-forwarded-for", "10.0.0.7, 10.0.0.8"), ""},
	}
	keys := map[string]string{}
	for _, tt := range tests {
		keys[tt.name] = credentialOrPeer(tt.ctx)
		if keys[tt.name] == "" {
			t.Errorf("%s: no key", tt.name)
		}
	}
	for _, tt := range tests {
		for _, other := range tests {
			same := keys[tt.name] == keys[other.name]
			want := tt.name == other.name || tt.want == other.name || other.want == tt.name ||
				(tt.want != "" && tt.want == other.want)
			if same != want {
				t.Errorf("%s and %s: same key %v, want %v", tt.name, other.name, same, want)
			}
		}
	}
}

// However many enter at once, a gate never lets more than its bounds in, and
// gives every place back.
func TestGateUnderContention(t *testing.T) {
	for _, perCaller := range []int{0, 3} {
		key := func(ctx context.Context) string { return ctx.Value(callerName{}).(string) }
		g := newGate(10, perCaller, key)
		var mu sync.Mutex
		in, most, mostPerCaller := 0, 0, map[string]int{}
		perNow := map[string]int{}
		var wg sync.WaitGroup
		for i := range 200 {
			caller := fmt.Sprint(i % 7)
			wg.Go(func() {
				ctx := context.WithValue(context.Background(), callerName{}, caller)
				leave, ok := g.enter(ctx)
				if !ok {
					return
				}
				mu.Lock()
				in++
				perNow[caller]++
				most = max(most, in)
				mostPerCaller[caller] = max(mostPerCaller[caller], perNow[caller])
				mu.Unlock()
				runtime.Gosched()
				mu.Lock()
				in--
				perNow[caller]--
				mu.Unlock()
				leave()
			})
		}
		wg.Wait()
		if most > 10 {
			t.Errorf("perCaller %d: %d in at once, want at most 10", perCaller, most)
		}
		for c, n := range mostPerCaller {
			if perCaller > 0 && n > perCaller {
				t.Errorf("caller %s: %d in at once, want at most %d", c, n, perCaller)
			}
		}
		if g.held() != 0 || len(g.byCaller) != 0 {
			t.Errorf("perCaller %d: %d places and %d callers still held", perCaller, g.held(), len(g.byCaller))
		}
	}
}

type callerName struct{}
