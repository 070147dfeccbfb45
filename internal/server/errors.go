package server

import (
	"context"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/acme/plugin-facade/internal/service"
)

// defaultChallenge is the WWW-Authenticate challenge of a 401 the upstream did
// not answer itself (no credential, or a malformed one): both schemes the
// service forwards.
const defaultChallenge = `Basic realm="Confluent Cloud", Bearer realm="Confluent Cloud"`

// errorHandler is the gateway's default error handler (the status as JSON, the
// HTTP status from the gRPC code, the response metadata as headers, see
// outgoingHeader), plus the headers an HTTP client looks for: on a 429 or 503 a
// Retry-After from the status's RetryInfo, and on a 401 a valid
// WWW-Authenticate challenge (the upstream's own, from ErrorInfo) in place of
// the status message the default puts there.
func errorHandler(ctx context.Context, mux *runtime.ServeMux, m runtime.Marshaler, w http.ResponseWriter, r *http.Request, err error) {
	if st, ok := status.FromError(err); ok {
		challenge := defaultChallenge
		for _, d := range st.Details() {
			switch d := d.(type) {
			case *errdetails.ErrorInfo:
				if c := d.GetMetadata()["wwwAuthenticate"]; c != "" {
					challenge = c
				}
			case *errdetails.RetryInfo:
				secs := d.GetRetryDelay().AsDuration().Seconds()
				if secs > 0 && (st.Code() == codes.ResourceExhausted || st.Code() == codes.Unavailable) {
					w.Header().Set("Retry-After", strconv.Itoa(int(secs+0.999)))
				}
			}
		}
		if st.Code() == codes.Unauthenticated {
			w = &challengeWriter{ResponseWriter: w, challenge: challenge}
		}
	}
	runtime.DefaultHTTPErrorHandler(ctx, mux, m, w, r, err)
}

// challengeWriter sets WWW-Authenticate as the status line is written, after
// the default handler has set it to the status message.
type challengeWriter struct {
	http.ResponseWriter
	challenge string
}

func (w *challengeWriter) WriteHeader(code int) {
	w.Header().Set("WWW-Authenticate", w.challenge)
	w.ResponseWriter.WriteHeader(code)
}

// outgoingHeader passes the response metadata the service sets (the upstream's
// X-Request-Id and X-RateLimit-* headers) to REST callers under their plain
// names, on success and failure alike. Other metadata is not forwarded: the
// gateway's default would add it with a Grpc-Metadata- prefix. Retry-After is
// left to errorHandler, which derives it from the status's RetryInfo.
func outgoingHeader(key string) (string, bool) {
	key = strings.ToLower(key)
	if key != service.MDRetryAfter && slices.Contains(service.ResponseHeaders, key) {
		return http.CanonicalHeaderKey(key), true
	}
	return "", false
}
