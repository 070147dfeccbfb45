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
	"github.com/acme/plugin-facade/internal/upstream"
)

// defaultChallenge is the WWW-Authenticate challenge of a 401 the upstream did
// not answer itself (no credential, or a malformed one): both schemes the
// service forwards.
const defaultChallenge = `Basic realm="Confluent Cloud", Bearer realm="Confluent Cloud"`

// errorHandler is the gateway's default error handler (the status as JSON, the
// HTTP status from the gRPC code, the response metadata as headers, see
// outgoingHeader), plus the headers an HTTP client looks for (errorHeaders).
func errorHandler(ctx context.Context, mux *runtime.ServeMux, m runtime.Marshaler, w http.ResponseWriter, r *http.Request, err error) {
	if st, ok := status.FromError(err); ok {
		w = &errorHeaderWriter{ResponseWriter: w, st: st}
	}
	runtime.DefaultHTTPErrorHandler(ctx, mux, m, w, r, err)
}

// errorHeaders sets the headers of a failed call that an HTTP client looks
// for: on a 429 or 503 a Retry-After from the status's RetryInfo, and on a 401
// a valid WWW-Authenticate challenge (the upstream's own, from ErrorInfo, or
// the facade's) in place of the status message the gateway puts there.
func errorHeaders(h http.Header, st *status.Status) {
	challenge := defaultChallenge
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			if c := d.GetMetadata()[service.ErrorInfoWWWAuthenticate]; c != "" {
				challenge = c
			}
		case *errdetails.RetryInfo:
			delay := d.GetRetryDelay().AsDuration()
			if delay > 0 && (st.Code() == codes.ResourceExhausted || st.Code() == codes.Unavailable) {
				h.Set("Retry-After", strconv.Itoa(upstream.Seconds(delay)))
			}
		}
	}
	if st.Code() == codes.Unauthenticated {
		h.Set("WWW-Authenticate", challenge)
	}
}

// errorHeaderWriter sets errorHeaders as the status line is written, after
// the gateway has set its own headers. Its status is set before the first
// write: by errorHandler, or for a stream that fails before its first message
// by streamErrorHandler.
type errorHeaderWriter struct {
	http.ResponseWriter
	st *status.Status
}

func (w *errorHeaderWriter) WriteHeader(code int) {
	if w.st != nil {
		errorHeaders(w.Header(), w.st)
	}
	w.ResponseWriter.WriteHeader(code)
}

// Flush and Unwrap keep the writer usable for streams.
func (w *errorHeaderWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *errorHeaderWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

type errorHeaderWriterKey struct{}

// withStreamErrorHeaders gives streaming routes the headers errorHandler gives
// unary ones: the gateway ends a stream that fails before its first message
// through its stream error handler, which sees the status but not the
// response; streamErrorHandler finds the writer through the request's context.
func withStreamErrorHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ew := &errorHeaderWriter{ResponseWriter: w}
		h.ServeHTTP(ew, r.WithContext(context.WithValue(r.Context(), errorHeaderWriterKey{}, ew)))
	})
}

// streamErrorHandler is the gateway's stream error handler: the default's
// status, noted for withStreamErrorHeaders.
func streamErrorHandler(ctx context.Context, err error) *status.Status {
	st := status.Convert(err)
	if ew, ok := ctx.Value(errorHeaderWriterKey{}).(*errorHeaderWriter); ok {
		ew.st = st
	}
	return st
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
