package service

import (
	"context"
	"fmt"

	"google.golang.org/grpc/metadata"

	"github.com/acme/plugin-facade/internal/failure"
	"github.com/acme/plugin-facade/internal/upstream"
)

// authorizationKey is the metadata key of the caller's credential. The REST
// gateway forwards the HTTP Authorization header under the same key.
const authorizationKey = "authorization"

// AuthorizationKey is the incoming metadata key of a caller's credential.
const AuthorizationKey = authorizationKey

// UsesServiceKey reports whether a call whose incoming metadata holds the
// values authorization under AuthorizationKey is to use the service's own
// key: it sends no credential of its own.
func UsesServiceKey(authorization []string) bool { return len(authorization) == 0 }

// credentials picks what to send upstream: the caller's own credential when it
// sent one, the service's default otherwise. A credential never appears in the
// errors returned here.
func (s *Service) credentials(ctx context.Context) (upstream.Authorization, error) {
	// Only the key's values: FromIncomingContext would copy all the metadata.
	switch vals := metadata.ValueFromIncomingContext(ctx, authorizationKey); {
	case UsesServiceKey(vals):
		if s.defaultAuth.IsZero() {
			return upstream.Authorization{}, failure.Refused(failure.ReasonNoCredentials,
				"no credentials: send authorization metadata (Basic <base64 key:secret> or Bearer <token>); "+
					"this service has no Cloud API key of its own configured")
		}
		return s.defaultAuth, nil
	case len(vals) == 1:
		a, err := upstream.ParseAuthorization(vals[0])
		if err != nil {
			return upstream.Authorization{}, failure.Refused(failure.ReasonBadCredentials,
				"invalid authorization metadata: "+err.Error())
		}
		return a, nil
	default:
		return upstream.Authorization{}, failure.Refused(failure.ReasonBadCredentials,
			fmt.Sprintf("invalid authorization metadata: got %d values, send exactly one", len(vals)))
	}
}
