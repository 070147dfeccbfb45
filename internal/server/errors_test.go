package server

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// TestErrorHandler covers the rows of the README's error table that the sandbox
// cannot produce: the HTTP status of each gRPC code, and the headers taken from
// the status details.
func TestErrorHandler(t *testing.T) {
	withDetails := func(code codes.Code, details ...*errdetails.RetryInfo) error {
		st := status.New(code, "msg")
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
		wantRetryAfter string
	}{
		{"aborted (409)", withDetails(codes.Aborted), 409, ""},
		{"already exists (409 duplicate)", withDetails(codes.AlreadyExists), 409, ""},
		{"failed precondition (other 4xx)", withDetails(codes.FailedPrecondition), 400, ""},
		{"unimplemented (501)", withDetails(codes.Unimplemented), 501, ""},
		{"unavailable (502, 503, unreachable) with a retry hint", withDetails(codes.Unavailable, hint), 503, "2"},
		{"deadline exceeded (504, timeout)", withDetails(codes.DeadlineExceeded), 504, ""},
		{"internal (500, other 5xx)", withDetails(codes.Internal), 500, ""},
		{"a retry hint on another code is no Retry-After", withDetails(codes.Internal, hint), 500, ""},
		{"canceled", withDetails(codes.Canceled), 499, ""},
		{"resource exhausted with a retry hint", withDetails(codes.ResourceExhausted, hint), 429, "2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.err
			w := httptest.NewRecorder()
			r := httptest.NewRequest(http.MethodGet, "/x", nil)
			errorHandler(r.Context(), runtime.NewServeMux(), &runtime.JSONPb{}, w, r, err)
			if w.Code != tt.wantHTTP {
				t.Errorf("HTTP status = %d, want %d", w.Code, tt.wantHTTP)
			}
			if got := w.Header().Get("Retry-After"); got != tt.wantRetryAfter {
				t.Errorf("Retry-After = %q, want %q", got, tt.wantRetryAfter)
			}
		})
	}
}

func TestUnauthenticatedCarriesAValidChallenge(t *testing.T) {
	upstreamChallenge := `Basic error="invalid_key", error_description="The API Key is invalid"`
	fromUpstream, _ := status.New(codes.Unauthenticated, "Confluent Cloud: Authentication Required").
		WithDetails(&errdetails.ErrorInfo{Reason: "USER_UNAUTHENTICATED", Domain: "api.confluent.cloud",
			Metadata: map[string]string{"wwwAuthenticate": upstreamChallenge}})
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"the upstream's own challenge", fromUpstream.Err(), upstreamChallenge},
		{"no credential: the facade's challenge", status.Error(codes.Unauthenticated, "no credentials: ..."), defaultChallenge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			r := httptest.NewRequest(http.MethodGet, "/x", nil)
			errorHandler(r.Context(), runtime.NewServeMux(), &runtime.JSONPb{}, w, r, tt.err)
			if w.Code != http.StatusUnauthorized {
				t.Errorf("HTTP status = %d, want 401", w.Code)
			}
			if got := w.Header().Get("WWW-Authenticate"); got != tt.want {
				t.Errorf("WWW-Authenticate = %q, want %q", got, tt.want)
			}
			if !strings.Contains(w.Body.String(), "Unauthenticated") && !strings.Contains(w.Body.String(), `"code":16`) {
				t.Errorf("body = %s, want the status", w.Body.String())
			}
		})
	}
}

func TestOutgoingHeader(t *testing.T) {
	for key, want := range map[string]string{
		"x-request-id": "X-Request-Id", "x-ratelimit-limit": "X-Ratelimit-Limit",
		"x-ratelimit-remaining": "X-Ratelimit-Remaining", "x-ratelimit-reset": "X-Ratelimit-Reset",
		// Not forwarded: Retry-After comes from RetryInfo; the rest is the
		// transport's business.
		"retry-after": "", "content-type": "", "authorization": "", "grpc-status": "",
	} {
		got, ok := outgoingHeader(key)
		if got != want || ok != (want != "") {
			t.Errorf("outgoingHeader(%q) = %q, %v; want %q", key, got, ok, want)
		}
	}
}
