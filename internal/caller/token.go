package caller

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
)

// maxTokenBytes bounds the bearer tokens the facade reads as its own: a
// Kubernetes projected service-account token is about 1 KiB. A longer bearer
// is not the facade's and is forwarded as the caller's credential (the REST
// server's header limit bounds it).
const maxTokenBytes = 16 << 10

// discoveryTimeout bounds the issuer's discovery at start-up, and each JWKS
// fetch after it.
const discoveryTimeout = 10 * time.Second

// OIDC is a configured OIDC issuer whose JWTs identify callers to the facade.
// Its keys (JWKS) are fetched through the issuer's discovery document, cached,
// and fetched again when a token names a key id the cache does not hold, so a
// rotation is picked up at its first token (go-oidc's RemoteKeySet).
type OIDC struct {
	issuer, audience string
	verifier         *oidc.IDTokenVerifier
}

// NewOIDC discovers issuer (its /.well-known/openid-configuration) through
// client (nil: a client of its own) and returns a verifier of its tokens for
// audience. It fails when discovery does.
func NewOIDC(ctx context.Context, issuer, audience string, client *http.Client) (*OIDC, error) {
	if issuer == "" || audience == "" {
		return nil, errors.New("an OIDC issuer needs both an issuer URL and an audience")
	}
	if client == nil {
		client = &http.Client{Timeout: discoveryTimeout}
	}
	dctx, cancel := context.WithTimeout(oidc.ClientContext(ctx, client), discoveryTimeout)
	defer cancel()
	p, err := oidc.NewProvider(dctx, issuer)
	if err != nil {
		return nil, fmt.Errorf("discovering the OIDC issuer %s: %w", issuer, err)
	}
	// The provider keeps the client (not dctx) for its later JWKS fetches.
	return &OIDC{issuer: issuer, audience: audience,
		verifier: p.Verifier(&oidc.Config{ClientID: audience})}, nil
}

// claims are the unverified claims that say whether a JWT is meant for the
// facade.
type claims struct {
	Issuer   string   `json:"iss"`
	Audience audience `json:"aud"`
}

// audience is a JWT's aud: one string or a list of them.
type audience []string

func (a *audience) UnmarshalJSON(b []byte) error {
	var one string
	if json.Unmarshal(b, &one) == nil {
		*a = audience{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return err
	}
	*a = many
	return nil
}

// ours reports whether the bearer token is the facade's own rather than the
// caller's Confluent credential: a JWT whose (not yet verified) issuer is the
// configured one, or whose audience names the configured audience. Such a
// token is verified in full and never forwarded; any other bearer token (an
// opaque one, a JWT of another issuer for another audience) is forwarded to
// Confluent Cloud as the caller's own credential.
func (o *OIDC) ours(token string) bool {
	if o == nil || len(token) > maxTokenBytes {
		return false
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return false
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return false
	}
	var c claims
	if json.Unmarshal(payload, &c) != nil {
		return false
	}
	return c.Issuer == o.issuer || slices.Contains(c.Audience, o.audience)
}

// verify checks a token of the facade (signature against the issuer's keys,
// issuer, audience, expiry, not-before) and returns its subject. Its error
// says what is wrong in words of its own, never the token's.
func (o *OIDC) verify(ctx context.Context, token string) (string, error) {
	t, err := o.verifier.Verify(ctx, token)
	if err != nil {
		return "", tokenProblem(err)
	}
	if t.Subject == "" {
		return "", errors.New("the token has no subject")
	}
	return t.Subject, nil
}

// tokenProblem names what go-oidc found wrong with a token, without its
// message: that may quote the token's claims.
func tokenProblem(err error) error {
	var expired *oidc.TokenExpiredError
	msg := err.Error()
	switch {
	case errors.As(err, &expired):
		return errors.New("the token has expired")
	case strings.Contains(msg, "before the nbf"):
		return errors.New("the token is not valid yet (nbf)")
	case strings.Contains(msg, "different provider"):
		return errors.New("the token's issuer is not the configured one")
	case strings.Contains(msg, "expected audience"):
		return errors.New("the token's audience does not name this service")
	case strings.Contains(msg, "malformed jwt"), strings.Contains(msg, "not signed"), strings.Contains(msg, "multiple signatures"):
		return errors.New("the token is not a JWT signed with an algorithm the issuer uses")
	case strings.Contains(msg, "verify signature"):
		return errors.New("the token's signature does not verify against the issuer's keys")
	default:
		return errors.New("the token is not valid")
	}
}
