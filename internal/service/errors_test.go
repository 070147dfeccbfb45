package service

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pluginv1 "github.com/acme/plugin-facade/gen/go/confluent/plugin/v1"
	"github.com/acme/plugin-facade/internal/failure"
	"github.com/acme/plugin-facade/internal/testutil"
	"github.com/acme/plugin-facade/internal/upstream"
	"github.com/acme/plugin-facade/internal/upstream/upstreamtest"
)

// wantStatus is what a caller must be able to read from a failed call.
type wantStatus struct {
	code             codes.Code
	msg              []string // substrings of the message, all required
	reason           string   // ErrorInfo.reason: every failure has exactly one ErrorInfo
	domain           string   // ErrorInfo.domain; "" means the upstream host, 127.0.0.1
	requestID        string   // RequestInfo.request_id; "" means no RequestInfo expected
	badRequestFields []string // BadRequest field violations, in order
	retryDelay       time.Duration
	quotaFailure     bool
	metadata         map[string]string // entries ErrorInfo.metadata must have
}

func assertStatus(t *testing.T, err error, want wantStatus) {
	t.Helper()
	st, ok := status.FromError(err)
	if !ok || err == nil {
		t.Fatalf("err = %v, want a status with code %s", err, want.code)
	}
	if st.Code() != want.code {
		t.Errorf("code = %s, want %s (message %q)", st.Code(), want.code, st.Message())
	}
	for _, m := range want.msg {
		if !strings.Contains(st.Message(), m) {
			t.Errorf("message %q does not contain %q", st.Message(), m)
		}
	}
	var (
		reason, requestID string
		fields            []string
		retry             time.Duration
		quota             bool
	)
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			if reason != "" {
				t.Errorf("more than one ErrorInfo")
			}
			reason = d.GetReason()
			for k, v := range want.metadata {
				if got := d.GetMetadata()[k]; got != v {
					t.Errorf("ErrorInfo.metadata[%q] = %q, want %q", k, got, v)
				}
			}
			if wantDomain := cmp.Or(want.domain, "127.0.0.1"); d.GetDomain() != wantDomain {
				t.Errorf("ErrorInfo.domain = %q, want %q", d.GetDomain(), wantDomain)
			}
		case *errdetails.RequestInfo:
			requestID = d.GetRequestId()
		case *errdetails.BadRequest:
			for _, v := range d.GetFieldViolations() {
				fields = append(fields, v.GetField())
				if v.GetDescription() == "" {
					t.Errorf("violation of %s has no description", v.GetField())
				}
			}
		case *errdetails.RetryInfo:
			retry = d.GetRetryDelay().AsDuration()
		case *errdetails.QuotaFailure:
			quota = true
		case error:
			t.Errorf("undecodable detail: %v", d)
		}
	}
	if reason == "" {
		t.Errorf("no ErrorInfo, want exactly one on every failure")
	}
	if reason != want.reason {
		t.Errorf("ErrorInfo.reason = %q, want %q", reason, want.reason)
	}
	if requestID != want.requestID {
		t.Errorf("RequestInfo.request_id = %q, want %q", requestID, want.requestID)
	}
	if strings.Join(fields, ",") != strings.Join(want.badRequestFields, ",") {
		t.Errorf("BadRequest fields = %v, want %v", fields, want.badRequestFields)
	}
	if !retryMatches(retry, want.retryDelay) {
		t.Errorf("RetryInfo.retry_delay = %v, want %v", retry, want.retryDelay)
	}
	if quota != want.quotaFailure {
		t.Errorf("QuotaFailure present = %v, want %v", quota, want.quotaFailure)
	}
}

func msg(s ...string) []string { return s }

// TestUpstreamFailures reads like the mapping table of docs/errors.md: what the
// upstream answers, and what a gRPC caller gets.
func TestUpstreamFailures(t *testing.T) {
	rid := http.Header{"X-Request-Id": {"req-1"}}
	tests := []struct {
		name   string
		status int
		header http.Header
		body   string
		want   wantStatus
	}{
		{"400 documented example", 400, rid, readExample(t, "failure_400.json"), wantStatus{
			code: codes.InvalidArgument, reason: "INVALID_FILTER", requestID: "req-1", badRequestFields: []string{"num_doors"},
			msg:      msg("Invalid Filter: The 'delorean' resource can't be filtered by 'num_doors'", "HTTP 400", "request id req-1"),
			metadata: map[string]string{"httpStatus": "400", "errorIds": "ed42afdc-f0d5-4c0d-b428-9fc6ed6e279d", "codes": "invalid_filter"},
		}},
		{"400 with several errors loses none", 400, rid, `{"errors":[
			{"id":"e1","status":"400","code":"invalid_input","title":"Invalid","detail":"environment is malformed","source":{"parameter":"environment"}},
			{"id":"e2","status":"400","code":"invalid_spec","title":"Bad Spec","detail":"no such version","source":{"pointer":"/spec/version"}},
			{"id":"e3","status":"400","title":"Also wrong"}]}`, wantStatus{
			code: codes.InvalidArgument, reason: "INVALID_INPUT", requestID: "req-1", badRequestFields: []string{"environment", "/spec/version"},
			msg:      msg("Invalid: environment is malformed; Bad Spec: no such version; Also wrong", "HTTP 400"),
			metadata: map[string]string{"httpStatus": "400", "errorIds": "e1,e2,e3", "codes": "invalid_input,invalid_spec", "errorCount": "3"},
		}},
		{"401 documented example", 401, rid, readExample(t, "failure_401.json"), wantStatus{
			code: codes.Unauthenticated, reason: "USER_UNAUTHENTICATED", requestID: "req-1",
			msg: msg("Authentication Required: Valid authentication credentials must be provided"),
		}},
		{"403 documented example", 403, rid, readExample(t, "failure_403.json"), wantStatus{
			code: codes.PermissionDenied, reason: "USER_UNAUTHORIZED", requestID: "req-1",
			msg: msg("User Access Unauthorized: The user 'mcfly' is not allowed"),
		}},
		{"404 documented example", 404, rid, readExample(t, "failure_404.json"), wantStatus{
			code: codes.NotFound, reason: "NOT_FOUND", requestID: "req-1", msg: msg("Not Found", "HTTP 404"),
		}},
		{"409 conflict", 409, nil, `{"errors":[{"status":"409","code":"conflict","title":"Conflict","detail":"being modified"}]}`, wantStatus{
			code: codes.Aborted, reason: "CONFLICT", msg: msg("Conflict: being modified"),
		}},
		{"409 duplicate", 409, nil, `{"errors":[{"status":"409","code":"duplicate_resource","title":"Duplicate"}]}`, wantStatus{
			code: codes.AlreadyExists, reason: "DUPLICATE_RESOURCE", msg: msg("Duplicate"),
		}},
		{"429 with headers only, as documented", 429,
			http.Header{"X-Request-Id": {"req-9"}, "Retry-After": {"30"}, "X-Ratelimit-Limit": {"80"}, "X-Ratelimit-Remaining": {"0"}, "X-Ratelimit-Reset": {"30"}}, "",
			wantStatus{code: codes.ResourceExhausted, reason: "TOO_MANY_REQUESTS", requestID: "req-9", retryDelay: 30 * time.Second, quotaFailure: true,
				msg: msg("Too Many Requests", "HTTP 429")}},
		{"500 documented example", 500, rid, readExample(t, "failure_500.json"), wantStatus{
			code: codes.Internal, reason: "OUT_OF_GAS", requestID: "req-1", msg: msg("DeLorean Out Of Gas: The DeLorean has run out of gas"),
		}},
		{"501", 501, nil, `{"errors":[{"status":"501","title":"Not Implemented"}]}`, wantStatus{
			code: codes.Unimplemented, reason: "NOT_IMPLEMENTED", msg: msg("Not Implemented"),
		}},
		{"502 from a proxy, not JSON", 502, nil, "<html><head><title>502</title></head><body><h1>Bad Gateway</h1>\x00\x1b[31m</body></html>", wantStatus{
			code: codes.Unavailable, reason: "BAD_GATEWAY", retryDelay: aBackoff,
			msg: msg("Bad Gateway, with a body that is not a Confluent Cloud error: 502 Bad Gateway [31m (HTTP 502)"),
		}},
		{"500 with an empty body", 500, rid, "", wantStatus{
			code: codes.Internal, reason: "INTERNAL_SERVER_ERROR", requestID: "req-1",
			msg: msg("Internal Server Error, with an empty body (HTTP 500, request id req-1)"),
		}},
		{"503 with the window exhausted: its reset is the hint", 503, http.Header{"X-Ratelimit-Remaining": {"0"}, "X-Ratelimit-Reset": {"7"}}, "", wantStatus{
			code: codes.Unavailable, reason: "SERVICE_UNAVAILABLE", retryDelay: 7 * time.Second, msg: msg("Service Unavailable"),
		}},
		{"503 with requests remaining: the reset is no hint, the backoff is", 503,
			http.Header{"X-Ratelimit-Limit": {"80"}, "X-Ratelimit-Remaining": {"79"}, "X-Ratelimit-Reset": {"42"}}, "", wantStatus{
				code: codes.Unavailable, reason: "SERVICE_UNAVAILABLE", retryDelay: aBackoff, msg: msg("Service Unavailable"),
			}},
		{"503 without any hint", 503, nil, "", wantStatus{
			code: codes.Unavailable, reason: "SERVICE_UNAVAILABLE", retryDelay: aBackoff, msg: msg("Service Unavailable"),
		}},
		{"503 with a retry hint", 503, http.Header{"Retry-After": {"5"}}, `{"errors":[{"status":"503","code":"maintenance","title":"Down for maintenance"}]}`, wantStatus{
			code: codes.Unavailable, reason: "MAINTENANCE", retryDelay: 5 * time.Second, msg: msg("Down for maintenance"),
		}},
		{"504", 504, nil, "", wantStatus{code: codes.DeadlineExceeded, reason: "GATEWAY_TIMEOUT", retryDelay: aBackoff, msg: msg("Gateway Timeout")}},
		{"other 4xx: 418", 418, nil, `{"errors":[{"title":"Teapot"}]}`, wantStatus{
			code: codes.FailedPrecondition, reason: "I_M_A_TEAPOT", msg: msg("Teapot"),
		}},
		{"other 4xx: 422 with a pointer", 422, nil, `{"errors":[{"code":"invalid_spec","title":"Invalid","detail":"bad version","source":{"pointer":"/spec/version"}}]}`, wantStatus{
			code: codes.FailedPrecondition, reason: "INVALID_SPEC", badRequestFields: []string{"/spec/version"}, msg: msg("Invalid: bad version"),
		}},
		{"other 5xx: 507", 507, nil, "", wantStatus{code: codes.Internal, reason: "INSUFFICIENT_STORAGE", msg: msg("Insufficient Storage")}},
		{"302 redirect, not followed", 302, http.Header{"Location": {"https://elsewhere.example/login"}}, "", wantStatus{
			code: codes.Unknown, reason: "FOUND", msg: msg("Found", "HTTP 302"),
		}},
		{"2xx that is not the resource", 200, rid, "<html>login</html>", wantStatus{
			code: codes.Internal, reason: failure.ReasonUndecodable, requestID: "req-1", msg: msg("cannot read"),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, client := startFake(t, upstreamtest.Response{Status: tt.status, Header: tt.header, Body: tt.body}, WithDefaultCredentials(defaultKey))
			_, err := client.GetConnectorPlugin(t.Context(), &pluginv1.GetConnectorPluginRequest{Id: "ccp-12345"})
			assertStatus(t, err, tt.want)
			if strings.Contains(err.Error(), "service-secret") || strings.Contains(err.Error(), "U0VSVklDRUtFWTpzZXJ2aWNlLXNlY3JldA") {
				t.Errorf("status leaks the credential: %v", err)
			}
		})
	}
}

// aBackoff, as a wanted retry delay, stands for the client's backoff: a
// temporary failure without a hint of the upstream's own gets the wait the
// client would have made before its next attempt. It is jittered, so only
// its bounds are checked here; the upstream package checks its exact value.
const aBackoff time.Duration = -1

// retryMatches reports whether a RetryInfo delay is the one wanted.
func retryMatches(got, want time.Duration) bool {
	if want == aBackoff {
		p := upstream.DefaultRetryPolicy
		return got >= p.BaseDelay/2 && got <= p.MaxDelay
	}
	return got == want
}

// TestUnresolvableUpstream: a host the resolver does not know is as
// unreachable as one that refuses the connection, and as temporary: the
// caller gets a retry hint (defect 5 of issue 15: it got none).
func TestUnresolvableUpstream(t *testing.T) {
	// What net.Dialer returns when the name does not resolve.
	noSuchHost := &net.OpError{Op: "dial", Net: "tcp",
		Err: &net.DNSError{Err: "no such host", Name: "api.confluent.invalid", Server: "10.1.2.3:53", IsNotFound: true}}
	uc, err := upstream.New("https://api.confluent.invalid", upstream.WithRetry(upstream.RetryPolicy{MaxAttempts: 1}),
		upstream.WithRateLimitGuard(false), upstream.WithTransport(func(http.RoundTripper) http.RoundTripper {
			return roundTripFunc(func(*http.Request) (*http.Response, error) { return nil, noSuchHost })
		}))
	if err != nil {
		t.Fatal(err)
	}
	client := startServiceOf(t, uc, WithDefaultCredentials(defaultKey))
	_, err = client.GetConnectorPlugin(t.Context(), &pluginv1.GetConnectorPluginRequest{Id: "ccp-12345"})
	st := status.Convert(err)
	if st.Code() != codes.Unavailable || !strings.Contains(st.Message(), "no such host") || strings.Contains(st.Message(), "10.1.2.3") {
		t.Errorf("got %s %q, want UNAVAILABLE naming only the root cause", st.Code(), st.Message())
	}
	var retry time.Duration
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			retry = ri.GetRetryDelay().AsDuration()
		}
	}
	if !retryMatches(retry, aBackoff) {
		t.Errorf("RetryInfo = %v, want a backoff, as for a refused connection", retry)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestUpstreamUnreachable(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	client := startService(t, url, WithDefaultCredentials(defaultKey))
	_, err := client.GetConnectorPlugin(t.Context(), &pluginv1.GetConnectorPluginRequest{Id: "ccp-12345"})
	assertStatus(t, err, wantStatus{code: codes.Unavailable, reason: failure.ReasonUnreachable, retryDelay: aBackoff,
		msg: msg("Confluent Cloud is unreachable", "connection refused")})
	if strings.Contains(err.Error(), "127.0.0.1") {
		t.Errorf("message names the upstream's address: %v", err)
	}
}

// TestDeadlinesReachTheUpstream checks that the upstream call ends with the
// caller's deadline or cancellation, or the service's own upstream timeout,
// rather than running on after the caller is gone.
func TestDeadlinesReachTheUpstream(t *testing.T) {
	slow := upstreamtest.Response{Status: 200, Body: `{"id":"x","kind":"K"}`, Delay: 10 * time.Second}
	req := &pluginv1.GetConnectorPluginRequest{Id: "ccp-12345"}
	tests := []struct {
		name     string
		opts     []Option
		ctx      func(context.Context) (context.Context, context.CancelFunc)
		wantCode codes.Code
	}{
		{
			name: "the caller's deadline",
			ctx: func(ctx context.Context) (context.Context, context.CancelFunc) {
				return context.WithTimeout(ctx, 100*time.Millisecond)
			},
			wantCode: codes.DeadlineExceeded,
		},
		{
			name: "the caller's cancellation",
			ctx: func(ctx context.Context) (context.Context, context.CancelFunc) {
				ctx, cancel := context.WithCancel(ctx)
				time.AfterFunc(100*time.Millisecond, cancel)
				return ctx, cancel
			},
			wantCode: codes.Canceled,
		},
		{
			name:     "the service's upstream timeout",
			opts:     []Option{WithUpstreamTimeout(100 * time.Millisecond)},
			ctx:      func(ctx context.Context) (context.Context, context.CancelFunc) { return context.WithCancel(ctx) },
			wantCode: codes.DeadlineExceeded,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up, client := startFake(t, slow, append([]Option{WithDefaultCredentials(defaultKey)}, tt.opts...)...)
			ctx, cancel := tt.ctx(t.Context())
			defer cancel()
			_, err := client.GetConnectorPlugin(ctx, req)
			if status.Code(err) != tt.wantCode {
				t.Errorf("err = %v, want %s", err, tt.wantCode)
			}
			if !up.Abandoned(2 * time.Second) {
				t.Error("the upstream call went on after the caller's deadline or cancellation")
			}
		})
	}
}

// TestTransportFailures maps failures with no HTTP answer. Only the call's own
// context decides DEADLINE_EXCEEDED and CANCELLED; a network-level timeout (a
// dial or DNS lookup) is an unreachable upstream, even though its error also
// satisfies errors.Is(err, context.DeadlineExceeded).
func TestTransportFailures(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Addr: &net.TCPAddr{IP: net.ParseIP("10.1.2.3"), Port: 443},
		Err: &os.SyscallError{Syscall: "connect", Err: syscall.ECONNREFUSED}}
	// A real dial that times out, as the transport's dialer produces it
	// (loopback only: the deadline passes before any packet is sent anyway).
	_, dialTimeout := (&net.Dialer{Timeout: time.Nanosecond}).Dial("tcp", "127.0.0.1:9")
	if dialTimeout == nil || !errors.Is(dialTimeout, context.DeadlineExceeded) {
		t.Fatalf("want a dial timeout that is also context.DeadlineExceeded, got %v", dialTimeout)
	}
	dns := &net.DNSError{Err: "no such host", Name: "api.confluent.cloud", Server: "10.1.2.3:53", IsNotFound: true}
	tests := []struct {
		name       string
		err        error
		contextErr error
		wantCode   codes.Code
		wantMsg    string
	}{
		{"connection refused", refused, nil, codes.Unavailable, "unreachable, try again later: connection refused"},
		{"dial timeout", dialTimeout, nil, codes.Unavailable, "unreachable, try again later: i/o timeout"},
		{"DNS failure", dns, nil, codes.Unavailable, "unreachable, try again later: no such host"},
		{"TLS handshake timeout", errors.New("net/http: TLS handshake timeout"), nil, codes.Unavailable, "TLS handshake timeout"},
		{"the caller's deadline", context.DeadlineExceeded, context.DeadlineExceeded, codes.DeadlineExceeded, "before the deadline"},
		{"the caller's cancellation", context.Canceled, context.Canceled, codes.Canceled, "canceled"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := status.Convert(failure.FromUpstream(&upstream.TransportError{Method: "GET", Path: "/x", Err: tt.err, ContextErr: tt.contextErr}, "api.confluent.cloud", upstream.Meta{}))
			if st.Code() != tt.wantCode || !strings.Contains(st.Message(), tt.wantMsg) {
				t.Errorf("got %s %q, want %s containing %q", st.Code(), st.Message(), tt.wantCode, tt.wantMsg)
			}
			if strings.Contains(st.Message(), "10.1.2.3") || strings.Contains(st.Message(), "127.0.0.1") {
				t.Errorf("message names an internal address: %q", st.Message())
			}
		})
	}
}

// TestUnreachableIsLoggedWhole checks that what the status leaves out (the
// address that refused) still reaches the operator's log.
func TestUnreachableIsLoggedWhole(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	addr := srv.Listener.Addr().String()
	srv.Close()
	var logs testutil.Buffer
	client := startService(t, "http://"+addr, WithDefaultCredentials(defaultKey),
		WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	_, err := client.GetConnectorPlugin(t.Context(), &pluginv1.GetConnectorPluginRequest{Id: "ccp-12345"})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("err = %v, want Unavailable", err)
	}
	if got := logs.String(); !strings.Contains(got, "upstream unreachable") || !strings.Contains(got, addr) {
		t.Errorf("log = %q, want the unreachable upstream and its address %s", got, addr)
	}
}

// TestNoAnswerKeepsTheEarlierAnswer: a call that ends without an answer of its
// own, after the upstream had answered an earlier attempt, keeps that answer's
// status, reason, request id and (longer) retry hint.
func TestNoAnswerKeepsTheEarlierAnswer(t *testing.T) {
	earlier := &upstream.Error{StatusCode: 429, RequestID: "req-early", RetryAfter: 5 * time.Second,
		Items:     []upstream.ErrorItem{{Code: "too_many_requests", Title: "Too Many Requests"}},
		RateLimit: upstream.RateLimit{Limit: -1, Remaining: -1, Reset: -1}}
	meta := upstream.Meta{Attempts: 3, LastError: earlier}
	reset := &upstream.TransportError{Method: "GET", Path: "/x", Err: syscall.ECONNRESET}
	deadline := &upstream.TransportError{Method: "GET", Path: "/x", Err: context.DeadlineExceeded, ContextErr: context.DeadlineExceeded}

	assertStatus(t, failure.FromUpstream(reset, "127.0.0.1", meta), wantStatus{code: codes.Unavailable, reason: failure.ReasonUnreachable,
		requestID: "req-early", retryDelay: 5 * time.Second,
		msg:      msg("connection reset by peer (3 attempts); before that it answered: Confluent Cloud: Too Many Requests (HTTP 429, request id req-early)"),
		metadata: map[string]string{"httpStatus": "429", "lastReason": "TOO_MANY_REQUESTS", "attempts": "3"}})
	assertStatus(t, failure.FromUpstream(deadline, "127.0.0.1", meta), wantStatus{code: codes.DeadlineExceeded, reason: failure.ReasonTimeout,
		requestID: "req-early", msg: msg("did not answer before the deadline; before that it answered"),
		metadata: map[string]string{"httpStatus": "429"}})
	assertStatus(t, failure.FromUpstream(deadline, "127.0.0.1", upstream.Meta{Attempts: 1}), wantStatus{code: codes.DeadlineExceeded,
		reason: failure.ReasonTimeout, metadata: map[string]string{"attempts": "1"}})
}
