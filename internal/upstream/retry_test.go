package upstream

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/acme/plugin-facade/internal/upstream/upstreamtest"
)

// fastRetry keeps backoffs short so that tests of the retry loop run quickly;
// upstream hints (Retry-After) are still honoured as given.
var fastRetry = RetryPolicy{MaxAttempts: 3, BaseDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond, MaxWait: 3 * time.Second}

// retries records the Retry hook's calls.
type retries struct {
	mu      sync.Mutex
	reasons []string
}

func (r *retries) hooks() Hooks {
	return Hooks{Retry: func(route, reason string) {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.reasons = append(r.reasons, reason)
	}}
}

func (r *retries) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.reasons, ",")
}

func answerFailure(status int, header http.Header) upstreamtest.Response {
	return upstreamtest.Response{Status: status, Header: header,
		Body: `{"errors":[{"status":"` + http.StatusText(status) + `","title":"` + http.StatusText(status) + `"}]}`}
}

var ok200 = upstreamtest.Response{Status: 200, Header: http.Header{"X-Request-Id": {"req-ok"}}, Body: minimal}

func TestRetryPolicy(t *testing.T) {
	tests := []struct {
		name         string
		script       []upstreamtest.Response
		wantErr      bool
		wantStatus   int    // Meta.StatusCode
		wantAttempts int    // Meta.Attempts and requests the upstream received
		wantRetries  string // reasons given to the Retry hook
		minElapsed   time.Duration
	}{
		{name: "success needs no retry", script: []upstreamtest.Response{ok200},
			wantStatus: 200, wantAttempts: 1},
		{name: "503 then success", script: []upstreamtest.Response{answerFailure(503, nil), ok200},
			wantStatus: 200, wantAttempts: 2, wantRetries: "503"},
		{name: "502 and 504 then success", script: []upstreamtest.Response{answerFailure(502, nil), answerFailure(504, nil), ok200},
			wantStatus: 200, wantAttempts: 3, wantRetries: "502,504"},
		{name: "429 with Retry-After is waited for", script: []upstreamtest.Response{
			answerFailure(429, http.Header{"Retry-After": {"1"}}), ok200},
			wantStatus: 200, wantAttempts: 2, wantRetries: "429", minElapsed: time.Second},
		{name: "429 without Retry-After waits for the rate-limit reset", script: []upstreamtest.Response{
			answerFailure(429, http.Header{"X-Ratelimit-Reset": {"1"}}), ok200},
			wantStatus: 200, wantAttempts: 2, wantRetries: "429", minElapsed: time.Second},
		{name: "attempts are bounded; the last answer is returned", script: []upstreamtest.Response{answerFailure(503, nil)},
			wantErr: true, wantStatus: 503, wantAttempts: 3, wantRetries: "503,503"},
		{name: "a Retry-After beyond the longest wait is returned at once", script: []upstreamtest.Response{
			answerFailure(429, http.Header{"Retry-After": {"60"}})},
			wantErr: true, wantStatus: 429, wantAttempts: 1},
		{name: "500 is not retried", script: []upstreamtest.Response{answerFailure(500, nil), ok200},
			wantErr: true, wantStatus: 500, wantAttempts: 1},
		{name: "501 is not retried", script: []upstreamtest.Response{answerFailure(501, nil), ok200},
			wantErr: true, wantStatus: 501, wantAttempts: 1},
		{name: "400 is not retried", script: []upstreamtest.Response{answerFailure(400, nil), ok200},
			wantErr: true, wantStatus: 400, wantAttempts: 1},
		{name: "401 is not retried", script: []upstreamtest.Response{answerFailure(401, nil), ok200},
			wantErr: true, wantStatus: 401, wantAttempts: 1},
		{name: "403 is not retried", script: []upstreamtest.Response{answerFailure(403, nil), ok200},
			wantErr: true, wantStatus: 403, wantAttempts: 1},
		{name: "404 is not retried", script: []upstreamtest.Response{answerFailure(404, nil), ok200},
			wantErr: true, wantStatus: 404, wantAttempts: 1},
		{name: "409 is not retried", script: []upstreamtest.Response{answerFailure(409, nil), ok200},
			wantErr: true, wantStatus: 409, wantAttempts: 1},
		{name: "an undecodable 200 is not retried", script: []upstreamtest.Response{{Status: 200, Body: "{"}, ok200},
			wantErr: true, wantStatus: 200, wantAttempts: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := upstreamtest.StartScript(t, tt.script...)
			var r retries
			c := newClient(t, up.URL, WithRetry(fastRetry), WithHooks(r.hooks()), WithRateLimitGuard(false))
			start := time.Now()
			_, meta, err := c.GetConnectorPlugin(t.Context(), testAuth, "ccp-1")
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error: %v", err, tt.wantErr)
			}
			if meta.StatusCode != tt.wantStatus || meta.Attempts != tt.wantAttempts || up.Count() != tt.wantAttempts {
				t.Errorf("status %d after %d attempts (%d requests), want %d after %d",
					meta.StatusCode, meta.Attempts, up.Count(), tt.wantStatus, tt.wantAttempts)
			}
			if got := r.String(); got != tt.wantRetries {
				t.Errorf("retries = %q, want %q", got, tt.wantRetries)
			}
			if elapsed := time.Since(start); elapsed < tt.minElapsed {
				t.Errorf("took %v, want at least %v (the upstream's hint)", elapsed, tt.minElapsed)
			}
			var e *Error
			if tt.wantErr && tt.wantStatus != 200 && (!errors.As(err, &e) || e.StatusCode != tt.wantStatus || meta.LastError != e) {
				t.Errorf("err = %v, want the last answer (%d) as *Error and as Meta.LastError", err, tt.wantStatus)
			}
		})
	}
}

// TestRetryNeverWaitsPastTheDeadline: a wait that does not fit in what is left
// of the caller's deadline is not started; the call ends at once with the
// upstream's answer and its hint.
func TestRetryNeverWaitsPastTheDeadline(t *testing.T) {
	up := upstreamtest.Start(t, answerFailure(429, http.Header{"Retry-After": {"2"}, "X-Request-Id": {"req-429"}}))
	c := newClient(t, up.URL, WithRetry(fastRetry), WithRateLimitGuard(false))
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	start := time.Now()
	_, meta, err := c.GetConnectorPlugin(ctx, testAuth, "ccp-1")
	var e *Error
	if !errors.As(err, &e) || e.StatusCode != 429 || e.RetryAfter != 2*time.Second || e.RequestID != "req-429" {
		t.Fatalf("err = %v, want the 429 with its Retry-After and request id", err)
	}
	if elapsed := time.Since(start); elapsed > 500*time.Millisecond {
		t.Errorf("took %v, want an answer at once, not a wait into the deadline", elapsed)
	}
	if meta.Attempts != 1 || up.Count() != 1 {
		t.Errorf("%d attempts, %d requests; want 1", meta.Attempts, up.Count())
	}
}

func TestRetryStopsWhenTheCallerCancels(t *testing.T) {
	up := upstreamtest.Start(t, answerFailure(503, http.Header{"Retry-After": {"2"}}))
	c := newClient(t, up.URL, WithRetry(fastRetry), WithRateLimitGuard(false))
	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	_, meta, err := c.GetConnectorPlugin(ctx, testAuth, "ccp-1")
	var te *TransportError
	if !errors.As(err, &te) || !te.Canceled() {
		t.Fatalf("err = %v, want a cancellation", err)
	}
	if time.Since(start) > time.Second {
		t.Errorf("the wait went on after the cancellation")
	}
	if meta.LastError == nil || meta.LastError.StatusCode != 503 {
		t.Errorf("Meta.LastError = %v, want the 503 answered before the wait", meta.LastError)
	}
}

func TestConnectionFailuresAreRetried(t *testing.T) {
	t.Run("refused", func(t *testing.T) {
		srv := httptest.NewServer(http.NotFoundHandler())
		url := srv.URL
		srv.Close()
		var r retries
		c := newClient(t, url, WithRetry(fastRetry), WithHooks(r.hooks()))
		_, meta, err := c.GetConnectorPlugin(t.Context(), testAuth, "ccp-1")
		var te *TransportError
		if !errors.As(err, &te) || meta.Attempts != 3 || r.String() != "connection,connection" {
			t.Fatalf("err = %v after %d attempts, retries %q; want a TransportError after 3 attempts", err, meta.Attempts, r.String())
		}
	})
	t.Run("reset before an answer, then success", func(t *testing.T) {
		var n atomic.Int32
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if n.Add(1) == 1 {
				reset(t, w)
				return
			}
			_, _ = w.Write([]byte(minimal))
		}))
		defer srv.Close()
		var r retries
		c := newClient(t, srv.URL, WithRetry(fastRetry), WithHooks(r.hooks()))
		_, meta, err := c.GetConnectorPlugin(t.Context(), testAuth, "ccp-1")
		if err != nil || meta.Attempts != 2 || r.String() != "connection" {
			t.Fatalf("err = %v after %d attempts, retries %q; want success after a retry", err, meta.Attempts, r.String())
		}
	})
	t.Run("a slow upstream is not retried: the deadline ends it", func(t *testing.T) {
		up := upstreamtest.Start(t, upstreamtest.Response{Status: 200, Body: minimal, Delay: 5 * time.Second})
		c := newClient(t, up.URL, WithRetry(fastRetry))
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		defer cancel()
		_, meta, err := c.GetConnectorPlugin(ctx, testAuth, "ccp-1")
		var te *TransportError
		if !errors.As(err, &te) || !te.DeadlineExceeded() || meta.Attempts != 1 {
			t.Fatalf("err = %v after %d attempts, want the deadline after 1", err, meta.Attempts)
		}
	})
}

// reset closes the connection of w with a TCP RST, without answering.
func reset(t *testing.T, w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		t.Error(err)
		return
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	conn.Close()
}

func TestBackoffIsJitteredAndCapped(t *testing.T) {
	c := newClient(t, "https://api.confluent.cloud", WithRetry(RetryPolicy{BaseDelay: 100 * time.Millisecond, MaxDelay: time.Second}))
	for n, want := range map[int]time.Duration{1: 100 * time.Millisecond, 2: 200 * time.Millisecond, 3: 400 * time.Millisecond, 5: time.Second, 30: time.Second} {
		seen := map[time.Duration]bool{}
		for range 200 {
			d := c.backoff(n)
			if d < want/2 || d > want {
				t.Fatalf("backoff(%d) = %v, want within [%v, %v]", n, d, want/2, want)
			}
			seen[d] = true
		}
		if len(seen) < 10 {
			t.Errorf("backoff(%d) took only %d distinct values in 200 draws: no jitter", n, len(seen))
		}
	}
}

// TestOversizedBodyIsNotRead: past the cap, the client stops reading and drops
// the connection, so a huge answer costs neither memory nor time.
func TestOversizedBodyIsNotRead(t *testing.T) {
	const limit = 64 << 10
	var written atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(200)
		chunk := []byte(`{"id":"` + strings.Repeat("x", 32<<10) + `",`)
		for i := 0; i < 4096; i++ { // up to 128 MiB, if the client kept reading
			n, err := w.Write(chunk)
			written.Add(int64(n))
			if err != nil {
				return
			}
		}
	}))
	defer srv.Close()
	c := newClient(t, srv.URL, WithMaxBodyBytes(limit))
	_, _, err := c.GetConnectorPlugin(t.Context(), testAuth, "ccp-1")
	if !errors.Is(err, ErrBodyTooLarge) {
		t.Fatalf("err = %v, want ErrBodyTooLarge", err)
	}
	srv.CloseClientConnections()
	// The server keeps writing into socket buffers for a while; what matters
	// is that it is nowhere near the whole body.
	if w := written.Load(); w > 32<<20 {
		t.Errorf("the server wrote %d bytes before the client hung up", w)
	}
	t.Run("announced by Content-Length, not read at all", func(t *testing.T) {
		_, c := startUpstream(t, 200, nil, `{"id":"`+strings.Repeat("x", limit)+`","kind":"K"}`)
		c.maxBody = limit
		if _, _, err := c.GetConnectorPlugin(t.Context(), testAuth, "ccp-1"); !errors.Is(err, ErrBodyTooLarge) {
			t.Fatalf("err = %v, want ErrBodyTooLarge", err)
		}
	})
	t.Run("an oversized error answer keeps its status and headers", func(t *testing.T) {
		_, c := startUpstream(t, 503, http.Header{"X-Request-Id": {"req-big"}}, strings.Repeat("x", limit+1))
		c.maxBody = limit
		_, _, err := c.GetConnectorPlugin(t.Context(), testAuth, "ccp-1")
		var e *Error
		if !errors.As(err, &e) || e.StatusCode != 503 || e.RequestID != "req-big" || !strings.Contains(e.Excerpt, "size limit") {
			t.Fatalf("err = %#v, want the 503 with its request id and a note that the body was not read", err)
		}
	})
}

func TestPlainHTTPOnlyOnLoopback(t *testing.T) {
	for _, u := range []string{"http://127.0.0.1:8080", "http://localhost", "http://[::1]:1", "http://127.9.9.9", "https://api.confluent.cloud"} {
		if _, err := New(u); err != nil {
			t.Errorf("New(%q) = %v, want it accepted", u, err)
		}
	}
	for _, u := range []string{"http://api.confluent.cloud", "http://10.0.0.1", "http://localhost.example.com"} {
		if _, err := New(u); err == nil || !strings.Contains(err.Error(), "plain HTTP") {
			t.Errorf("New(%q) = %v, want a refusal of plain HTTP", u, err)
		}
		if _, err := New(u, WithInsecure(true)); err != nil {
			t.Errorf("New(%q, WithInsecure(true)) = %v, want it accepted", u, err)
		}
	}
}

// rateLimitHeaders are the X-RateLimit-* headers Confluent Cloud sends on every
// answer, here with requests remaining in the window.
var rateLimitHeaders = http.Header{"X-Ratelimit-Limit": {"80"}, "X-Ratelimit-Remaining": {"79"}, "X-Ratelimit-Reset": {"42"}}

// TestWindowResetIsNoHintWhileRequestsRemain: a transient 503 whose headers
// describe a window with requests left is retried after the backoff, not
// held to the window's reset (which, longer than MaxWait, would end the call
// at once); and a 503 that is not retried hints the backoff.
func TestWindowResetIsNoHintWhileRequestsRemain(t *testing.T) {
	policy := RetryPolicy{MaxAttempts: 3, BaseDelay: 10 * time.Millisecond, MaxWait: 10 * time.Second}
	t.Run("a transient 503 then 200 is OK after 2 requests", func(t *testing.T) {
		up := upstreamtest.StartScript(t, answerFailure(503, rateLimitHeaders), ok200)
		c := newClient(t, up.URL, WithRetry(policy))
		_, meta, err := c.GetConnectorPlugin(t.Context(), testAuth, "ccp-1")
		if err != nil || up.Count() != 2 || meta.Attempts != 2 {
			t.Fatalf("err %v after %d requests (Attempts %d), want OK after 2", err, up.Count(), meta.Attempts)
		}
	})
	t.Run("a 503 that is not retried hints the backoff, not the reset", func(t *testing.T) {
		up := upstreamtest.Start(t, answerFailure(503, rateLimitHeaders))
		c := newClient(t, up.URL, WithRetry(policy))
		c.jitter = func(n int64) int64 { return n - 1 } // the whole backoff, no less
		_, _, err := c.GetConnectorPlugin(t.Context(), testAuth, "ccp-1")
		hint, ok := RetryHint(err)
		// Third answer: the backoff has doubled twice from 10ms.
		if want := 40 * time.Millisecond; !ok || hint != want || up.Count() != 3 {
			t.Errorf("RetryHint = %v, %v after %d requests; want %v (the backoff) after 3", hint, ok, up.Count(), want)
		}
	})
	t.Run("a 503 with the window exhausted hints the reset", func(t *testing.T) {
		up := upstreamtest.Start(t, answerFailure(503, http.Header{"X-Ratelimit-Remaining": {"0"}, "X-Ratelimit-Reset": {"42"}}))
		c := newClient(t, up.URL, WithRetry(policy))
		_, _, err := c.GetConnectorPlugin(t.Context(), testAuth, "ccp-1")
		if hint, ok := RetryHint(err); !ok || hint != 42*time.Second || up.Count() != 1 {
			t.Errorf("RetryHint = %v, %v after %d requests; want 42s after 1", hint, ok, up.Count())
		}
	})
}
