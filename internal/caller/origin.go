package caller

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"net/netip"
	"strings"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
)

// origin is what a call's transport says of where it comes from: the
// connection's address, its TLS state, and the forwarding headers a proxy on
// the way may have set. The gRPC server gives them through the peer and the
// metadata; a REST call gets them from HTTPOrigin, because the gateway calls
// the service in process, with no peer of its own.
type origin struct {
	addr netip.Addr // the zero Addr when unknown
	tls  *tls.ConnectionState
	// Forwarded (RFC 7239) and X-Forwarded-For values, in order; for a gRPC
	// call read from the metadata only when needed (fromMD).
	forwarded, xff []string
	fromMD         bool
}

// Metadata keys and headers of the forwarding chain.
const (
	headerForwarded    = "Forwarded"
	headerXFF          = "X-Forwarded-For"
	mdForwarded        = "forwarded"
	mdXFF              = "x-forwarded-for"
	bearerScheme       = "bearer"
	maxForwardingHops  = 32 // hops read from the forwarding headers, nearest first; the rest are ignored
	maxForwardedValues = 8  // header lines of each forwarding header read
)

type originKey struct{}

// HTTPOrigin records the HTTP request's client address, TLS state and
// forwarding headers for the Guard, which the REST gateway's in-process calls
// would otherwise not have. Wrap the gateway's handler with it.
func HTTPOrigin(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(w, r.WithContext(WithHTTPOrigin(r.Context(), r)))
	})
}

// WithHTTPOrigin is ctx with what HTTPOrigin records of r, for a handler
// that makes the request's context itself.
func WithHTTPOrigin(ctx context.Context, r *http.Request) context.Context {
	// The header names are canonical: r.Header.Values's, without
	// canonicalising them for every request.
	o := origin{addr: addrOf(r.RemoteAddr), tls: r.TLS,
		forwarded: r.Header[headerForwarded], xff: r.Header[headerXFF]}
	return context.WithValue(ctx, originKey{}, &o)
}

// originOf returns the origin of the call of ctx: the one HTTPOrigin
// recorded, else the gRPC peer's and metadata's.
func originOf(ctx context.Context) origin {
	if o, ok := ctx.Value(originKey{}).(*origin); ok {
		return *o
	}
	o := origin{fromMD: true}
	if p, ok := peer.FromContext(ctx); ok {
		switch a := p.Addr.(type) {
		case *net.TCPAddr:
			o.addr = a.AddrPort().Addr().Unmap().WithZone("")
		case nil:
		default:
			o.addr = addrOf(a.String())
		}
		if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok {
			o.tls = &ti.State
		}
	}
	return o
}

// forwarding fills in a gRPC call's forwarding headers from its metadata.
func (o *origin) forwarding(ctx context.Context) {
	if o.fromMD {
		o.forwarded = metadata.ValueFromIncomingContext(ctx, mdForwarded)
		o.xff = metadata.ValueFromIncomingContext(ctx, mdXFF)
	}
}

// addrOf parses "host:port" or a bare address; the zero Addr when it cannot.
func addrOf(s string) netip.Addr {
	if host, _, err := net.SplitHostPort(s); err == nil {
		s = host
	}
	a, err := netip.ParseAddr(strings.Trim(s, "[]"))
	if err != nil {
		return netip.Addr{}
	}
	return a.Unmap().WithZone("")
}

// forwardedHops returns the client addresses of the forwarding chain, farthest
// first, as the Forwarded header's for= parameters say, or without it
// X-Forwarded-For's. A hop that names no address (RFC 7239's "unknown" or an
// obfuscated "_name") is the zero Addr. Only the nearest maxForwardingHops
// are kept: farther ones are never needed, as the nearest untrusted hop is
// the one that counts.
func forwardedHops(o origin) []netip.Addr {
	var hops []netip.Addr
	if len(o.forwarded) > 0 {
		for _, line := range o.forwarded[max(0, len(o.forwarded)-maxForwardedValues):] {
			for _, elem := range strings.Split(line, ",") {
				hops = append(hops, forwardedFor(elem))
			}
		}
	} else {
		for _, line := range o.xff[max(0, len(o.xff)-maxForwardedValues):] {
			for _, h := range strings.Split(line, ",") {
				hops = append(hops, addrOf(strings.TrimSpace(h)))
			}
		}
	}
	return hops[max(0, len(hops)-maxForwardingHops):]
}

// forwardedFor is the for= node of one Forwarded element
// ("for=192.0.2.60;proto=http", `for="[2001:db8::17]:4711"`).
func forwardedFor(elem string) netip.Addr {
	for _, pair := range strings.Split(elem, ";") {
		k, v, ok := strings.Cut(strings.TrimSpace(pair), "=")
		if ok && strings.EqualFold(k, "for") {
			return addrOf(strings.Trim(v, `"`))
		}
	}
	return netip.Addr{}
}
