package server

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/acme/plugin-facade/internal/failure"
)

// TestErrorHandler covers the rows of the error table of docs/errors.md that neither
// the sandbox nor a scripted upstream can produce: failures of the facade
// itself, each a Failure envelope with the HTTP status of its gRPC code, a
// code naming it, and the headers taken from the status details.
func TestErrorHandler(t *testing.T) {
	withDetails := func(code codes.Code, msg string, details ...*errdetails.RetryInfo) error {
		st := status.New(code, msg)
		for _, d := range details {
			st, _ = st.WithDetails(d)
		}
		return st.Err()
	}
	hint := &errdetails.RetryInfo{RetryDelay: durationpb.New(1500 * time.Millisecond)}
	tests := []struct {
		name           string
		err            error
		wantHTTP       int
		wantCode       string
		wantRetryAfter string
		wantChallenge  string
	}{
		{"shutting down", errShuttingDown, 503, "unavailable", "", ""},
		{"no credentials", failure.Refused(failure.ReasonNoCredentials, "no credentials"), 401, "no_credentials", "", failure.DefaultChallenge},
		{"a panic", failure.Facade(failure.ReasonInternal, "internal error"), 500, "internal", "", ""},
		{"an unparsable query", failure.Facade(failure.ReasonInvalidArgument, "bad duration"), 400, "invalid_argument", "", ""},
		{"unavailable with a retry hint", withDetails(codes.Unavailable, "msg", hint), 503, "unavailable", "2", ""},
		{"a retry hint on another code is no Retry-After", withDetails(codes.Internal, "msg", hint), 500, "internal", "", ""},
		{"a status built elsewhere", withDetails(codes.Internal, "internal error"), 500, "internal", "", ""},
		{"canceled", withDetails(codes.Canceled, "msg"), 499, "canceled", "", ""},
		{"resource exhausted with a retry hint", withDetails(codes.ResourceExhausted, "msg", hint), 429, "resource_exhausted", "2", ""},
		{"unauthenticated: the facade's challenge", withDetails(codes.Unauthenticated, "no credentials: ..."), 401, "unauthenticated", "", failure.DefaultChallenge},
		{"an invalid argument built elsewhere", withDetails(codes.InvalidArgument, "bad duration"), 400, "invalid_argument", "", ""},
		{"a status error the gateway wraps", &runtime.HTTPStatusError{HTTPStatus: 405, Err: withDetails(codes.Unimplemented, "GET")}, 405, "method_not_allowed", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			r := httptest.NewRequest(http.MethodGet, "/x", nil)
			errorHandler(r.Context(), runtime.NewServeMux(), &runtime.JSONPb{}, w, r, tt.err)
			assertEnvelope(t, restResponse{w.Code, w.Header(), w.Body.Bytes()}, tt.wantHTTP, tt.wantCode)
			if got := w.Header().Get("Retry-After"); got != tt.wantRetryAfter {
				t.Errorf("Retry-After = %q, want %q", got, tt.wantRetryAfter)
			}
			if got := w.Header().Get("WWW-Authenticate"); got != tt.wantChallenge {
				t.Errorf("WWW-Authenticate = %q, want %q", got, tt.wantChallenge)
			}
		})
	}
}

func TestOutgoingHeader(t *testing.T) {
	for key, want := range map[string]string{
		"x-request-id": "X-Request-Id", "x-ratelimit-limit": "X-Ratelimit-Limit",
		"x-ratelimit-remaining": "X-Ratelimit-Remaining", "x-ratelimit-reset": "X-Ratelimit-Reset",
		// Not forwarded: Retry-After is the failure's; the rest is the
		// transport's business.
		"retry-after": "", "content-type": "", "authorization": "", "grpc-status": "",
	} {
		got, ok := outgoingHeader(key)
		if got != want || ok != (want != "") {
			t.Errorf("outgoingHeader(%q) = %q, %v; want %q", key, got, ok, want)
		}
	}
}
