package caller

import (
	"context"
	"crypto/x509"
	"net/netip"
	"strings"

	"google.golang.org/grpc/metadata"

	"github.com/acme/plugin-facade/internal/service"
)

// identify decides who the call of ctx comes from, from the strongest source
// present:
//
//  1. the verified mTLS client certificate (the server only has one when
//     --tls-client-ca is set, and then every client has one);
//  2. a JWT of the configured OIDC issuer, sent as "Authorization: Bearer";
//  3. the network: the connection's peer address, or, when that peer is a
//     trusted proxy, the nearest hop of Forwarded (else X-Forwarded-For) that
//     is not a trusted proxy.
//
// A token of the issuer is checked whatever else is present (an invalid one
// fails the call) and removed from the incoming metadata of the context
// returned, so that it never reaches the upstream: the service then uses its own key. Any other
// Authorization (Basic, or a bearer token that is not the issuer's) stays, to
// be forwarded as the caller's own Confluent credential.
//
// serviceKey reports whether the call is then to use the service's own key.
func (g *Guard) identify(ctx context.Context) (id Identity, _ context.Context, serviceKey bool, _ error) {
	var subject string
	auth := metadata.ValueFromIncomingContext(ctx, service.AuthorizationKey)
	if len(auth) == 1 && g.oidc != nil {
		if token, ok := bearer(auth[0]); ok && g.oidc.ours(token) {
			sub, err := g.oidc.verify(ctx, token)
			if err != nil {
				return Identity{}, ctx, false, errBadToken(err)
			}
			subject, auth = sub, nil
			md, _ := metadata.FromIncomingContext(ctx) // a copy
			md.Delete(service.AuthorizationKey)
			ctx = metadata.NewIncomingContext(ctx, md)
		}
	}
	serviceKey = g.hasKey && service.UsesServiceKey(auth)
	o := originOf(ctx)
	if o.tls != nil && len(o.tls.VerifiedChains) > 0 && len(o.tls.PeerCertificates) > 0 {
		if name := certificateName(o.tls.PeerCertificates[0]); name != "" {
			return Identity{Name: name, Source: SourceCertificate}, ctx, serviceKey, nil
		}
	}
	if subject != "" {
		return Identity{Name: "jwt:" + subject, Source: SourceToken}, ctx, serviceKey, nil
	}
	return g.networkIdentity(ctx, o), ctx, serviceKey, nil
}

// bearer returns the token of a "Bearer <token>" value (the scheme in any case).
func bearer(v string) (string, bool) {
	scheme, token, ok := strings.Cut(strings.TrimSpace(v), " ")
	if !ok || !strings.EqualFold(scheme, bearerScheme) {
		return "", false
	}
	return strings.TrimSpace(token), true
}

// certificateName is a client certificate's identity: its first URI SAN (a
// SPIFFE ID), else "dns:" and its first DNS SAN, else "cn:" and its subject
// common name.
func certificateName(c *x509.Certificate) string {
	switch {
	case len(c.URIs) > 0:
		return c.URIs[0].String()
	case len(c.DNSNames) > 0:
		return "dns:" + c.DNSNames[0]
	case c.Subject.CommonName != "":
		return "cn:" + c.Subject.CommonName
	}
	return ""
}

// networkIdentity is the caller's address: the peer's, unless the peer is a
// trusted proxy, in which case the forwarding chain is walked from the
// nearest hop back, past every trusted proxy, to the first address that is
// not one. A hop that names no address stops the walk at the proxy that
// reported it: the call then counts as that proxy's.
func (g *Guard) networkIdentity(ctx context.Context, o origin) Identity {
	addr, source := o.addr, SourcePeer
	if g.trusted(addr) {
		o.forwarding(ctx)
		hops := forwardedHops(o)
		for i := len(hops) - 1; i >= 0; i-- {
			if !hops[i].IsValid() {
				break
			}
			addr, source = hops[i], SourceForwarded
			if !g.trusted(addr) {
				break
			}
		}
	}
	if !addr.IsValid() {
		return Identity{Name: "ip:unknown", Source: SourcePeer}
	}
	return Identity{Name: "ip:" + addr.String(), Source: source}
}

// trusted reports whether addr is in a trusted proxy range.
func (g *Guard) trusted(addr netip.Addr) bool {
	if !addr.IsValid() {
		return false
	}
	for _, p := range g.proxies {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}
