package upstream

import (
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/acme/plugin-facade/internal/upstream/upstreamtest"
)

func TestRateLimitGuard(t *testing.T) {
	exhausted := http.Header{"X-Ratelimit-Limit": {"100"}, "X-Ratelimit-Remaining": {"0"}, "X-Ratelimit-Reset": {"30"}}
	tests := []struct {
		name      string
		first     upstreamtest.Response
		guardOn   bool
		sameCreds bool
		wantSent  int  // requests the upstream received for the two calls
		throttled bool // whether the second call is answered by the guard
	}{
		{name: "remaining 0 holds the next call back", guardOn: true, sameCreds: true,
			first: upstreamtest.Response{Status: 200, Header: exhausted, Body: minimal}, wantSent: 1, throttled: true},
		{name: "a 429 holds the next call back", guardOn: true, sameCreds: true,
			first: answerFailure(429, http.Header{"Retry-After": {"30"}}), wantSent: 1, throttled: true},
		{name: "other credentials have their own window", guardOn: true, sameCreds: false,
			first: upstreamtest.Response{Status: 200, Header: exhausted, Body: minimal}, wantSent: 2},
		{name: "remaining above 0 lets calls through", guardOn: true, sameCreds: true,
			first:    upstreamtest.Response{Status: 200, Header: http.Header{"X-Ratelimit-Remaining": {"1"}, "X-Ratelimit-Reset": {"30"}}, Body: minimal},
			wantSent: 2},
		{name: "without rate-limit headers nothing is held back", guardOn: true, sameCreds: true,
			first: upstreamtest.Response{Status: 200, Body: minimal}, wantSent: 2},
		// A refused credential's answer says nothing of its window: the
		// next call hears the upstream's own 401 or 403 again, not a 429.
		{name: "a 401 with remaining 0 holds nothing back", guardOn: true, sameCreds: true,
			first: answerFailure(401, exhausted), wantSent: 2},
		{name: "a 403 with remaining 0 holds nothing back", guardOn: true, sameCreds: true,
			first: answerFailure(403, exhausted), wantSent: 2},
		{name: "a 404 with remaining 0 holds the next call back", guardOn: true, sameCreds: true,
			first: answerFailure(404, exhausted), wantSent: 1, throttled: true},
		{name: "the guard can be turned off", guardOn: false, sameCreds: true,
			first: upstreamtest.Response{Status: 200, Header: exhausted, Body: minimal}, wantSent: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := upstreamtest.StartScript(t, tt.first, upstreamtest.Response{Status: 200, Body: minimal})
			c := newClient(t, up.URL, WithRetry(RetryPolicy{MaxAttempts: 1}), WithRateLimitGuard(tt.guardOn))
			_, _, _ = c.GetConnectorPlugin(t.Context(), testAuth, "ccp-1")
			second := testAuth
			if !tt.sameCreds {
				second = BasicAuth("OTHER", "s3cr3t")
			}
			_, meta, err := c.GetConnectorPlugin(t.Context(), second, "ccp-1")
			var th *ThrottledError
			if got := errors.As(err, &th); got != tt.throttled {
				t.Fatalf("second call: err = %v, want throttled: %v", err, tt.throttled)
			}
			if up.Count() != tt.wantSent {
				t.Errorf("upstream received %d requests, want %d", up.Count(), tt.wantSent)
			}
			if tt.throttled {
				if th.RetryAfter <= 25*time.Second || th.RetryAfter > 30*time.Second {
					t.Errorf("RetryAfter = %v, want the 30s the upstream announced, less the time gone by", th.RetryAfter)
				}
				if meta.Attempts != 0 {
					t.Errorf("Meta.Attempts = %d, want 0 for a call that was not sent", meta.Attempts)
				}
			}
		})
	}
}

func TestRateLimitGuardWindowEnds(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	clock := func() time.Time { return now }
	g := &guard{store: newMemoryGuardStore(clock), now: clock}
	k := credentialID(testAuth)
	ctx := t.Context()
	g.observe(ctx, k, 200, RateLimit{Limit: 10, Remaining: 0, Reset: 5 * time.Second}, 0)
	if th := g.check(ctx, k); th == nil || th.RetryAfter != 5*time.Second || th.RateLimit.Limit != 10 {
		t.Fatalf("check = %+v, want throttled for 5s with the limit of 10", th)
	}
	now = now.Add(5 * time.Second)
	if th := g.check(ctx, k); th != nil {
		t.Fatalf("check after the reset = %+v, want nil", th)
	}
	g.observe(ctx, k, 429, RateLimit{-1, -1, -1}, 0)
	if th := g.check(ctx, k); th == nil || th.RetryAfter != time.Second {
		t.Fatalf("check after a 429 without hints = %+v, want throttled for 1s", th)
	}
}
