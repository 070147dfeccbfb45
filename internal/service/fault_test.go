package service

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pluginv1 "github.com/acme/plugin-facade/gen/go/confluent/plugin/v1"
	"github.com/acme/plugin-facade/internal/failure"
	"github.com/acme/plugin-facade/internal/sandbox"
	"github.com/acme/plugin-facade/internal/testutil"
	"github.com/acme/plugin-facade/internal/upstream"
	"github.com/acme/plugin-facade/internal/upstream/upstreamtest"
)

// TestFaults plays the misbehaviours of a real upstream (and of the proxies in
// front of it) through the simulator, against the service with its production
// retry policy and rate-limit guard. Each call must end with the specified
// code within its deadline, having sent the upstream the specified number of
// requests; TestMain checks that no goroutine outlives the tests.
func TestFaults(t *testing.T) {
	slow := 10 * time.Second // longer than any deadline below
	tests := []struct {
		name     string
		faults   []sandbox.Fault
		deadline time.Duration
		wantCode codes.Code
		wantMsg  string
		// wantSent is the number of requests the simulator receives.
		wantSent int64
		// wantRetry is the RetryInfo delay the caller gets; 0 for none.
		wantRetry  time.Duration
		minElapsed time.Duration // the upstream's hint was honoured
		maxElapsed time.Duration // 0: the deadline
	}{
		{name: "slow headers: the deadline ends the call", faults: []sandbox.Fault{{Kind: sandbox.FaultSlowHeaders, Delay: slow}},
			deadline: time.Second, wantCode: codes.DeadlineExceeded, wantSent: 1},
		{name: "slow body: the deadline ends the call", faults: []sandbox.Fault{{Kind: sandbox.FaultSlowBody, Delay: slow}},
			deadline: time.Second, wantCode: codes.DeadlineExceeded, wantSent: 1},
		{name: "connection reset, then success", faults: []sandbox.Fault{{Kind: sandbox.FaultReset}},
			deadline: 5 * time.Second, wantCode: codes.OK, wantSent: 2},
		{name: "connection reset every time", faults: []sandbox.Fault{{Kind: sandbox.FaultReset}, {Kind: sandbox.FaultReset}, {Kind: sandbox.FaultReset}},
			deadline: 5 * time.Second, wantCode: codes.Unavailable, wantMsg: "unreachable, try again later: connection reset by peer (3 attempts)",
			wantSent: 3, wantRetry: aBackoff},
		{name: "HTML 502 from a proxy, then success", faults: []sandbox.Fault{{Kind: sandbox.FaultHTML502}},
			deadline: 5 * time.Second, wantCode: codes.OK, wantSent: 2},
		{name: "HTML 502 every time", faults: []sandbox.Fault{{Kind: sandbox.FaultHTML502}, {Kind: sandbox.FaultHTML502}, {Kind: sandbox.FaultHTML502}},
			deadline: 5 * time.Second, wantCode: codes.Unavailable, wantMsg: "Bad Gateway, with a body that is not a Confluent Cloud error",
			wantSent: 3, wantRetry: aBackoff},
		{name: "empty 500 is not retried", faults: []sandbox.Fault{{Kind: sandbox.FaultEmpty500}},
			deadline: 5 * time.Second, wantCode: codes.Internal, wantMsg: "Internal Server Error, with an empty body (HTTP 500", wantSent: 1},
		{name: "malformed 200 is not retried", faults: []sandbox.Fault{{Kind: sandbox.FaultMalformed200}},
			deadline: 5 * time.Second, wantCode: codes.Internal, wantMsg: "a body this service cannot read", wantSent: 1},
		{name: "oversized body", faults: []sandbox.Fault{{Kind: sandbox.FaultOversized, Size: 8 << 20}},
			deadline: 5 * time.Second, wantCode: codes.Internal, wantMsg: "a body larger than this service accepts", wantSent: 1},
		{name: "429 with Retry-After, then success", faults: []sandbox.Fault{{Kind: sandbox.Fault429, RetryAfter: 1}},
			deadline: 5 * time.Second, wantCode: codes.OK, wantSent: 2, minElapsed: time.Second},
		{name: "429 without Retry-After waits for the window reset, then success", faults: []sandbox.Fault{{Kind: sandbox.Fault429NoRetryAfter, RetryAfter: 1}},
			deadline: 5 * time.Second, wantCode: codes.OK, wantSent: 2, minElapsed: time.Second},
		{name: "transient 503, then success", faults: []sandbox.Fault{{Kind: sandbox.Fault503}},
			deadline: 5 * time.Second, wantCode: codes.OK, wantSent: 2},
		{name: "deadline shorter than Retry-After: the 429 at once", faults: []sandbox.Fault{{Kind: sandbox.Fault429, RetryAfter: 5}},
			deadline: time.Second, wantCode: codes.ResourceExhausted, wantMsg: "HTTP 429", wantSent: 1,
			wantRetry: 5 * time.Second, maxElapsed: 500 * time.Millisecond},
		{name: "deadline shorter than a 503's Retry-After: the 503 at once", faults: []sandbox.Fault{{Kind: sandbox.Fault503, RetryAfter: 5}},
			deadline: time.Second, wantCode: codes.Unavailable, wantMsg: "HTTP 503", wantSent: 1,
			wantRetry: 5 * time.Second, maxElapsed: 500 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			sb := testutil.StartSandbox(t)
			sb.Inject(tt.faults...)
			client := startSandboxService(t, sb.URL())

			ctx, cancel := context.WithTimeout(t.Context(), tt.deadline)
			defer cancel()
			start := time.Now()
			_, err := client.GetConnectorPlugin(ctx, &pluginv1.GetConnectorPluginRequest{Id: sandbox.PluginID})
			elapsed := time.Since(start)

			st := status.Convert(err)
			if st.Code() != tt.wantCode || !strings.Contains(st.Message(), tt.wantMsg) {
				t.Errorf("got %s %q, want %s containing %q", st.Code(), st.Message(), tt.wantCode, tt.wantMsg)
			}
			if n := sb.Requests(); n != tt.wantSent {
				t.Errorf("the simulator received %d requests, want %d", n, tt.wantSent)
			}
			maxElapsed := tt.maxElapsed
			if maxElapsed == 0 {
				maxElapsed = tt.deadline + 500*time.Millisecond // the scheduler's slack on a busy machine
			}
			if elapsed > maxElapsed || elapsed < tt.minElapsed {
				t.Errorf("took %v, want between %v and %v", elapsed, tt.minElapsed, maxElapsed)
			}
			var retry time.Duration
			for _, d := range st.Details() {
				if ri, ok := d.(*errdetails.RetryInfo); ok {
					retry = ri.GetRetryDelay().AsDuration()
				}
			}
			if !retryMatches(retry, tt.wantRetry) {
				t.Errorf("RetryInfo = %v, want %v", retry, tt.wantRetry)
			}
		})
	}
}

// TestRefusedConnections: nothing listens; every attempt is refused, and the
// caller gets UNAVAILABLE with a retry hint after the bounded attempts.
func TestRefusedConnections(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	client := startSandboxService(t, url)
	_, err := client.GetConnectorPlugin(t.Context(), &pluginv1.GetConnectorPluginRequest{Id: sandbox.PluginID})
	assertStatus(t, err, wantStatus{code: codes.Unavailable, reason: failure.ReasonUnreachable, retryDelay: aBackoff,
		msg: msg("connection refused (3 attempts)")})
}

// TestEarlierAnswerSurvivesTheDeadline: a 503 then a slow attempt cut by the
// deadline; the caller still learns what the upstream said, and its request id.
func TestEarlierAnswerSurvivesTheDeadline(t *testing.T) {
	sb := testutil.StartSandbox(t)
	sb.Inject(sandbox.Fault{Kind: sandbox.Fault503}, sandbox.Fault{Kind: sandbox.FaultSlowHeaders, Delay: 10 * time.Second})
	client := startSandboxService(t, sb.URL())
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	_, err := client.GetConnectorPlugin(ctx, &pluginv1.GetConnectorPluginRequest{Id: sandbox.PluginID})
	st := status.Convert(err)
	if st.Code() != codes.DeadlineExceeded || !strings.Contains(st.Message(), "before that it answered: Confluent Cloud: Service Unavailable") {
		t.Fatalf("got %s %q, want DEADLINE_EXCEEDED saying what the upstream answered before", st.Code(), st.Message())
	}
	var requestID string
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RequestInfo); ok {
			requestID = ri.GetRequestId()
		}
	}
	if requestID == "" || !strings.Contains(st.Message(), requestID) {
		t.Errorf("RequestInfo = %q, want the 503's request id, also in the message %q", requestID, st.Message())
	}
	assertStatus(t, err, wantStatus{code: codes.DeadlineExceeded, reason: failure.ReasonTimeout, requestID: requestID,
		metadata: map[string]string{"httpStatus": "503", "lastReason": "SERVICE_UNAVAILABLE", "attempts": "2"}})
}

// TestRateLimitGuardDoesNotHideTheUpstream: within a call, the guard's memory
// of a 429 sets how long the retry waits; it never replaces the upstream's own
// answer, whose words and request id the caller keeps.
func TestRateLimitGuardDoesNotHideTheUpstream(t *testing.T) {
	ok := upstreamtest.Response{Status: 200, Body: `{"id":"ccp-1","kind":"CustomConnectorPlugin"}`}
	tooMany := func(h http.Header) upstreamtest.Response {
		h.Set("X-Request-Id", "req-429")
		return upstreamtest.Response{Status: 429, Header: h,
			Body: `{"errors":[{"status":"429","code":"too_many_requests","title":"Too Many Requests"}]}`}
	}
	tests := []struct {
		name       string
		first      upstreamtest.Response
		deadline   time.Duration
		wantCode   codes.Code
		wantRetry  time.Duration
		minElapsed time.Duration
		maxElapsed time.Duration
	}{
		{name: "a 429 without any hint is retried after the guard's second", first: tooMany(http.Header{}),
			deadline: 5 * time.Second, wantCode: codes.OK, minElapsed: time.Second, maxElapsed: 3 * time.Second},
		{name: "a reset later than Retry-After is waited for", first: tooMany(http.Header{"Retry-After": {"1"}, "X-Ratelimit-Remaining": {"0"}, "X-Ratelimit-Reset": {"2"}}),
			deadline: 5 * time.Second, wantCode: codes.OK, minElapsed: 2 * time.Second, maxElapsed: 4 * time.Second},
		{name: "when that wait does not fit, the upstream's 429 at once", first: tooMany(http.Header{"Retry-After": {"1"}, "X-Ratelimit-Remaining": {"0"}, "X-Ratelimit-Reset": {"3"}}),
			deadline: 2 * time.Second, wantCode: codes.ResourceExhausted, wantRetry: 3 * time.Second, maxElapsed: 500 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			up := upstreamtest.StartScript(t, tt.first, ok)
			uc, err := upstream.New(up.URL)
			if err != nil {
				t.Fatal(err)
			}
			client := startServiceOf(t, uc, WithDefaultCredentials(defaultKey))
			ctx, cancel := context.WithTimeout(t.Context(), tt.deadline)
			defer cancel()
			start := time.Now()
			_, err = client.GetConnectorPlugin(ctx, &pluginv1.GetConnectorPluginRequest{Id: "ccp-1"})
			elapsed := time.Since(start)
			if status.Code(err) != tt.wantCode || elapsed < tt.minElapsed || elapsed > tt.maxElapsed {
				t.Fatalf("%v after %v, want %s within [%v, %v]", err, elapsed, tt.wantCode, tt.minElapsed, tt.maxElapsed)
			}
			if tt.wantCode != codes.OK {
				assertStatus(t, err, wantStatus{code: tt.wantCode, reason: "TOO_MANY_REQUESTS", requestID: "req-429",
					retryDelay: tt.wantRetry, quotaFailure: true, msg: msg("Too Many Requests (HTTP 429, request id req-429)")})
			}
		})
	}
}

// startSandboxService runs the service as production does: the default retry
// policy and rate-limit guard, the sandbox's key; opts come on top.
func startSandboxService(t *testing.T, url string, opts ...Option) pluginv1.PluginServiceClient {
	t.Helper()
	uc, err := upstream.New(url)
	if err != nil {
		t.Fatal(err)
	}
	return startServiceOf(t, uc, append([]Option{WithDefaultCredentials(sandboxAuth)}, opts...)...)
}
