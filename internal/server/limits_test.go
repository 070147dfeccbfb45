package server

import (
	"context"
	"net"
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
