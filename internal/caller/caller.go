// Package caller decides who is calling the facade and what they may spend of
// it, once per call and the same for every protocol (gRPC, and REST through
// the gateway, which calls the service in process through the same
// interceptors):
//
//   - identity (identify.go): from the strongest source present, the mTLS
//     client certificate, a JWT of the configured OIDC issuer, or the network
//     address (the peer's, or through a trusted proxy the nearest untrusted
//     hop of Forwarded / X-Forwarded-For);
//   - policy (policy.go): an optional file of rules naming callers and what
//     they may read with the service's own key; once set, what it does not
//     allow is denied;
//   - fair share (share.go): no caller may spend more than its share of the
//     service's own key's rate-limit window.
//
// Guard (guard.go) is the one interceptor pair that applies all three.
package caller

import (
	"context"
	"log/slog"
)

// Source is where an identity comes from, strongest first.
type Source string

// The sources of an identity.
const (
	// SourceCertificate is the verified mTLS client certificate: its first
	// URI SAN (a SPIFFE ID, as is), else its first DNS SAN ("dns:<name>"),
	// else its subject common name ("cn:<name>").
	SourceCertificate Source = "certificate"
	// SourceToken is a JWT of the configured OIDC issuer: its subject
	// ("jwt:<sub>"; a Kubernetes service account reads
	// "jwt:system:serviceaccount:<namespace>:<name>").
	SourceToken Source = "token"
	// SourceForwarded is the nearest untrusted hop of Forwarded or
	// X-Forwarded-For of a request from a trusted proxy ("ip:<address>").
	SourceForwarded Source = "forwarded"
	// SourcePeer is the address of the connection ("ip:<address>").
	SourcePeer Source = "peer"
)

// Identity is who a call comes from. Name is what policy globs match and what
// logs and spans show; it never holds a token or a credential.
type Identity struct {
	Name   string
	Source Source
}

// Attrs is the identity as log attributes: caller and caller_source.
func (id Identity) Attrs() []slog.Attr {
	if id.Name == "" {
		return nil
	}
	return []slog.Attr{slog.String("caller", id.Name), slog.String("caller_source", string(id.Source))}
}

type identityKey struct{}

// FromContext returns the identity the Guard decided for the call of ctx,
// and whether it did.
func FromContext(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(identityKey{}).(Identity)
	return id, ok
}

func newContext(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, identityKey{}, id)
}
