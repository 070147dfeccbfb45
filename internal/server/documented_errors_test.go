package server

import (
	"net/http"
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	pluginv1 "github.com/acme/plugin-facade/gen/go/confluent/plugin/v1"
	"github.com/acme/plugin-facade/internal/service"
	"github.com/acme/plugin-facade/internal/upstream"
	"github.com/acme/plugin-facade/internal/upstream/upstreamtest"
)

// TestDocumentedErrorsReachBothProtocols plays every error response of the API
// pages (the examples in upstream/testdata, and the 429 documented with headers
// only) and checks what a gRPC caller and a REST caller each receive: the code
// or HTTP status, the upstream's words, its request id, and the retry hint.
func TestDocumentedErrorsReachBothProtocols(t *testing.T) {
	tests := []struct {
		httpStatus int
		header     http.Header
		body       string
		wantCode   codes.Code
		wantHTTP   int
		wantWords  string
		wantReason string
		wantRetry  string // REST Retry-After; "" for none
	}{
		{400, nil, readExample(t, "failure_400.json"), codes.InvalidArgument, 400, "Invalid Filter: The 'delorean' resource can't be filtered by 'num_doors'", "INVALID_FILTER", ""},
		{401, nil, readExample(t, "failure_401.json"), codes.Unauthenticated, 401, "Authentication Required: Valid authentication credentials must be provided", "USER_UNAUTHENTICATED", ""},
		{403, nil, readExample(t, "failure_403.json"), codes.PermissionDenied, 403, "User Access Unauthorized: The user 'mcfly' is not allowed", "USER_UNAUTHORIZED", ""},
		{404, nil, readExample(t, "failure_404.json"), codes.NotFound, 404, "Not Found", "NOT_FOUND", ""},
		{429, http.Header{"Retry-After": {"30"}, "X-Ratelimit-Limit": {"80"}, "X-Ratelimit-Remaining": {"0"}, "X-Ratelimit-Reset": {"30"}},
			"", codes.ResourceExhausted, 429, "Too Many Requests", "TOO_MANY_REQUESTS", "30"},
		{500, nil, readExample(t, "failure_500.json"), codes.Internal, 500, "DeLorean Out Of Gas: The DeLorean has run out of gas", "OUT_OF_GAS", ""},
	}
	for _, tt := range tests {
		t.Run(http.StatusText(tt.httpStatus), func(t *testing.T) {
			header := http.Header{"X-Request-Id": {"req-doc"}}
			for k, v := range tt.header {
				header[k] = v
			}
			up := upstreamtest.Start(t, upstreamtest.Response{Status: tt.httpStatus, Header: header, Body: tt.body})
			// The guard off, so that the REST call after the gRPC one also
			// reaches the upstream rather than the guard's memory of the 429.
			uc, err := upstream.New(up.URL, upstream.WithRateLimitGuard(false))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(uc.Close)
			s := startServer(t, service.New(uc, service.WithDefaultCredentials(sandboxKey)), nil)

			var md metadata.MD
			_, err = s.client.GetConnectorPlugin(t.Context(), &pluginv1.GetConnectorPluginRequest{Id: "ccp-12345"}, grpc.Header(&md))
			st := status.Convert(err)
			if st.Code() != tt.wantCode || !strings.Contains(st.Message(), tt.wantWords) || !strings.Contains(st.Message(), "req-doc") {
				t.Errorf("gRPC: %s %q, want %s with the upstream's words and request id", st.Code(), st.Message(), tt.wantCode)
			}
			if got := md.Get("x-request-id"); len(got) != 1 || got[0] != "req-doc" {
				t.Errorf("gRPC x-request-id = %v", got)
			}
			var reason, requestID string
			for _, d := range st.Details() {
				switch d := d.(type) {
				case *errdetails.ErrorInfo:
					reason = d.GetReason()
				case *errdetails.RequestInfo:
					requestID = d.GetRequestId()
				}
			}
			if reason != tt.wantReason || requestID != "req-doc" {
				t.Errorf("gRPC details: reason %q, request id %q; want %q, req-doc", reason, requestID, tt.wantReason)
			}

			// REST: the upstream's own answer, envelope and headers as sent.
			r := s.get(t, "/connect/v1/custom-connector-plugins/ccp-12345")
			if r.status != tt.wantHTTP || r.header.Get("X-Request-Id") != "req-doc" || r.header.Get("Retry-After") != tt.wantRetry {
				t.Errorf("REST: %d, X-Request-Id %q, Retry-After %q; want %d, req-doc, %q",
					r.status, r.header.Get("X-Request-Id"), r.header.Get("Retry-After"), tt.wantHTTP, tt.wantRetry)
			}
			if tt.body == "" { // the 429 documented with headers only gets an envelope of the facade's
				assertEnvelope(t, restResponse{r.status, r.header, r.body}, tt.wantHTTP, strings.ToLower(tt.wantReason))
				return
			}
			assertSameJSON(t, []byte(tt.body), r.body)
		})
	}
}
