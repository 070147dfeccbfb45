package sandbox_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/acme/plugin-facade/internal/sandbox"
)

const pluginPath = "/connect/v1/custom-connector-plugins/" + sandbox.PluginID

// client is a plain client that neither follows redirects nor keeps
// connections between tests.
func client() *http.Client {
	return &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{DisableKeepAlives: true},
	}
}

// assertFailure checks a Failure envelope: one error with a UUID id, the
// status as a string, and the given code.
func assertFailure(t *testing.T, body []byte, status, code string) {
	t.Helper()
	var f struct {
		Errors []struct{ ID, Status, Code, Title, Detail string }
	}
	if err := json.Unmarshal(body, &f); err != nil || len(f.Errors) != 1 {
		t.Fatalf("not a Failure with one error (%v): %s", err, body)
	}
	e := f.Errors[0]
	if !uuidRE.MatchString(e.ID) || e.Status != status || e.Code != code || e.Title == "" || e.Detail == "" {
		t.Errorf("error = %+v, want a UUID id, status %q, code %q, a title and a detail", e, status, code)
	}
}

func TestFaults(t *testing.T) {
	tests := []struct {
		fault       sandbox.Fault
		status      int
		contentType string
		header      map[string]string // "" means absent
		check       func(t *testing.T, body []byte)
	}{
		{
			fault:       sandbox.Fault{Kind: sandbox.FaultHTML502},
			status:      http.StatusBadGateway,
			contentType: "text/html",
			check: func(t *testing.T, body []byte) {
				if !strings.Contains(string(body), "<h1>502 Bad Gateway</h1>") {
					t.Errorf("body = %q, want an HTML 502 page", body)
				}
			},
		},
		{
			fault:  sandbox.Fault{Kind: sandbox.FaultEmpty500},
			status: http.StatusInternalServerError,
			header: map[string]string{"Content-Length": "0"},
			check: func(t *testing.T, body []byte) {
				if len(body) != 0 {
					t.Errorf("body = %q, want empty", body)
				}
			},
		},
		{
			fault:       sandbox.Fault{Kind: sandbox.FaultMalformed200},
			status:      http.StatusOK,
			contentType: "application/json",
			check: func(t *testing.T, body []byte) {
				var v any
				if err := json.Unmarshal(body, &v); err == nil || !strings.HasPrefix(string(body), "{") {
					t.Errorf("body = %q, want truncated JSON", body)
				}
			},
		},
		{
			fault:       sandbox.Fault{Kind: sandbox.FaultOversized, Size: 100_000},
			status:      http.StatusOK,
			contentType: "application/json",
			header:      map[string]string{"Content-Length": ""},
			check: func(t *testing.T, body []byte) {
				var p struct{ ID, Kind string }
				if len(body) != 100_000 || json.Unmarshal(body, &p) != nil || p.ID != sandbox.PluginID {
					t.Errorf("body of %d bytes (id %q), want a plugin of 100000 bytes", len(body), p.ID)
				}
			},
		},
		{
			fault:       sandbox.Fault{Kind: sandbox.Fault429, RetryAfter: 7},
			status:      http.StatusTooManyRequests,
			contentType: "application/json",
			header: map[string]string{"Retry-After": "7", "X-RateLimit-Limit": "1000",
				"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "7"},
			check: func(t *testing.T, body []byte) { assertFailure(t, body, "429", "too_many_requests") },
		},
		{
			fault:       sandbox.Fault{Kind: sandbox.Fault429},
			status:      http.StatusTooManyRequests,
			contentType: "application/json",
			header:      map[string]string{"Retry-After": "1", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "1"},
			check:       func(t *testing.T, body []byte) { assertFailure(t, body, "429", "too_many_requests") },
		},
		{
			fault:       sandbox.Fault{Kind: sandbox.Fault429NoRetryAfter, RetryAfter: 3},
			status:      http.StatusTooManyRequests,
			contentType: "application/json",
			header:      map[string]string{"Retry-After": "", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "3"},
			check:       func(t *testing.T, body []byte) { assertFailure(t, body, "429", "too_many_requests") },
		},
		{
			fault:       sandbox.Fault{Kind: sandbox.Fault503},
			status:      http.StatusServiceUnavailable,
			contentType: "application/json",
			header:      map[string]string{"Retry-After": ""},
			check:       func(t *testing.T, body []byte) { assertFailure(t, body, "503", "service_unavailable") },
		},
		{
			fault:       sandbox.Fault{Kind: sandbox.Fault503, RetryAfter: 2},
			status:      http.StatusServiceUnavailable,
			contentType: "application/json",
			header:      map[string]string{"Retry-After": "2"},
			check:       func(t *testing.T, body []byte) { assertFailure(t, body, "503", "service_unavailable") },
		},
	}
	s := start(t)
	for _, tt := range tests {
		t.Run(tt.fault.Kind.String(), func(t *testing.T) {
			s.Inject(tt.fault)
			// No credentials and a path that does not exist: a fault answers
			// whatever the request.
			resp, err := client().Get(s.URL() + "/no/such/path")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatalf("read body: %v", err)
			}
			if resp.StatusCode != tt.status {
				t.Errorf("status = %d, want %d", resp.StatusCode, tt.status)
			}
			if got := resp.Header.Get("Content-Type"); tt.contentType != "" && got != tt.contentType {
				t.Errorf("Content-Type = %q, want %q", got, tt.contentType)
			}
			if got := resp.Header.Get("X-Request-Id"); !uuidRE.MatchString(got) {
				t.Errorf("X-Request-Id = %q, want a UUID", got)
			}
			for k, want := range tt.header {
				if got := resp.Header.Get(k); got != want {
					t.Errorf("%s = %q, want %q", k, got, want)
				}
			}
			tt.check(t, body)
		})
	}
}

func TestFaultReset(t *testing.T) {
	s := start(t)
	s.Inject(sandbox.Fault{Kind: sandbox.FaultReset})
	_, err := client().Get(s.URL() + pluginPath)
	if !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, io.EOF) {
		t.Fatalf("err = %v, want a connection reset", err)
	}
	if got := s.Requests(); got != 1 {
		t.Errorf("Requests() = %d, want 1", got)
	}
}

func TestFaultSlowHeaders(t *testing.T) {
	s := start(t)
	s.Inject(sandbox.Fault{Kind: sandbox.FaultSlowHeaders, Delay: 100 * time.Millisecond})
	started := time.Now()
	resp, body := do(t, s.URL(), http.MethodGet, pluginPath, basicAuth)
	if elapsed := time.Since(started); elapsed < 100*time.Millisecond {
		t.Errorf("answered after %v, want at least the delay", elapsed)
	}
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"id":"`+sandbox.PluginID+`"`) {
		t.Errorf("got %d %s, want the normal answer", resp.StatusCode, body)
	}
	assertCommonHeaders(t, resp)
}

func TestFaultSlowHeadersEndsWithTheRequest(t *testing.T) {
	s := start(t)
	s.Inject(sandbox.Fault{Kind: sandbox.FaultSlowHeaders, Delay: time.Hour})
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.URL()+pluginPath, nil)
	if _, err := client().Do(req); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want the deadline", err)
	}
	// Close (from start's cleanup) waits for the handler: it must have
	// returned with the request rather than after an hour.
}

func TestFaultSlowBody(t *testing.T) {
	s := start(t)
	s.Inject(sandbox.Fault{Kind: sandbox.FaultSlowBody, Delay: 150 * time.Millisecond})
	req, _ := http.NewRequest(http.MethodGet, s.URL()+pluginPath, nil)
	req.Header.Set("Authorization", basicAuth)
	started := time.Now()
	resp, err := client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	headersAfter := time.Since(started)
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	bodyAfter := time.Since(started)
	// Only lower bounds: on a loaded machine anything can be late.
	if bodyAfter-headersAfter < 150*time.Millisecond && bodyAfter < 150*time.Millisecond {
		t.Errorf("headers after %v, body after %v: want the body at least 150ms after the headers", headersAfter, bodyAfter)
	}
	if resp.StatusCode != http.StatusOK || resp.ContentLength != int64(len(body)) {
		t.Errorf("status %d, Content-Length %d, body %d bytes: want 200 and the full body", resp.StatusCode, resp.ContentLength, len(body))
	}
	var p struct{ ID string }
	if err := json.Unmarshal(body, &p); err != nil || p.ID != sandbox.PluginID {
		t.Errorf("body = %s, want the plugin (%v)", body, err)
	}
	assertCommonHeaders(t, resp)
}

func TestInjectedFaultsComeInOrderThenNormalAnswers(t *testing.T) {
	s := start(t)
	s.Inject(sandbox.Fault{Kind: sandbox.Fault503}, sandbox.Fault{Kind: sandbox.FaultEmpty500})
	var got []int
	for range 3 {
		resp, _ := do(t, s.URL(), http.MethodGet, pluginPath, basicAuth)
		got = append(got, resp.StatusCode)
	}
	if want := []int{503, 500, 200}; !slices.Equal(got, want) {
		t.Errorf("statuses = %v, want %v", got, want)
	}
	if n := s.Requests(); n != 3 {
		t.Errorf("Requests() = %d, want 3", n)
	}
}

func TestInjectRejectsUnknownKinds(t *testing.T) {
	s := sandbox.New()
	defer func() {
		if recover() == nil {
			t.Error("Inject(Fault{}) did not panic")
		}
	}()
	s.Inject(sandbox.Fault{})
}

func TestFaultRateIsDeterministic(t *testing.T) {
	statuses := func() []int {
		s := start(t, sandbox.WithFaultRate(0.3, 42, sandbox.Fault503, sandbox.FaultHTML502))
		var got []int
		for range 50 {
			resp, _ := do(t, s.URL(), http.MethodGet, pluginPath, basicAuth)
			got = append(got, resp.StatusCode)
		}
		return got
	}
	first, second := statuses(), statuses()
	if !slices.Equal(first, second) {
		t.Errorf("same seed, different faults:\n%v\n%v", first, second)
	}
	count := map[int]int{}
	for _, c := range first {
		count[c]++
	}
	if count[200] == 0 || count[503]+count[502] == 0 || count[200]+count[502]+count[503] != 50 {
		t.Errorf("statuses = %v, want 200s with some 502s and 503s", count)
	}
}

func TestFaultRateDefaultKindsAreNotSlow(t *testing.T) {
	s := start(t, sandbox.WithFaultRate(1, 7))
	for range 30 {
		req, _ := http.NewRequest(http.MethodGet, s.URL()+pluginPath, nil)
		req.Header.Set("Authorization", basicAuth)
		resp, err := client().Do(req)
		if err != nil {
			continue // FaultReset
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK && json.Valid(body) && len(body) < 1<<20 {
			t.Errorf("a normal answer at fault rate 1: %s", body)
		}
	}
}
