package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/acme/plugin-facade/internal/upstream/upstreamtest"
)

var testAuth = BasicAuth("KEY", "s3cr3t")

// minimal is the smallest body the client takes as a resource.
const minimal = `{"id":"x","kind":"K"}`

// startUpstream starts a scripted upstream answering every request alike, and
// a client of it that makes one exchange per call (no retries, no rate-limit
// guard), so that each answer can be examined on its own.
func startUpstream(t *testing.T, status int, header http.Header, body string) (*upstreamtest.Server, *Client) {
	t.Helper()
	up := upstreamtest.Start(t, upstreamtest.Response{Status: status, Header: header, Body: body})
	return up, newClient(t, up.URL+"/base/", WithRetry(RetryPolicy{MaxAttempts: 1}), WithRateLimitGuard(false))
}

// newClient returns a client of baseURL whose idle connections are closed when
// the test ends.
func newClient(t *testing.T, baseURL string, opts ...Option) *Client {
	t.Helper()
	c, err := New(baseURL, append([]Option{WithUserAgent("plugin-facade/test")}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func readTestdata(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestRequestShape(t *testing.T) {
	tests := []struct {
		name      string
		call      func(context.Context, *Client) error
		wantPath  string // escaped, as sent on the wire
		wantQuery string
	}{
		{
			name: "plugin version",
			call: func(ctx context.Context, c *Client) error {
				_, _, err := c.GetPluginVersion(ctx, testAuth, "ccp-12345", "ver-12345", "env-00000")
				return err
			},
			wantPath:  "/base/ccpm/v1/plugins/ccp-12345/versions/ver-12345",
			wantQuery: "environment=env-00000",
		},
		{
			name: "plugin version with characters that would change the URL",
			call: func(ctx context.Context, c *Client) error {
				_, _, err := c.GetPluginVersion(ctx, testAuth, "a/../b", "v?x=1#f", "env&admin=true")
				return err
			},
			wantPath:  "/base/ccpm/v1/plugins/a%2F..%2Fb/versions/v%3Fx=1%23f",
			wantQuery: "environment=env%26admin%3Dtrue",
		},
		{
			name: "connector plugin",
			call: func(ctx context.Context, c *Client) error {
				_, _, err := c.GetConnectorPlugin(ctx, testAuth, "ccp-12345")
				return err
			},
			wantPath: "/base/connect/v1/custom-connector-plugins/ccp-12345",
		},
		{
			name: "connector plugin with a space and a percent sign",
			call: func(ctx context.Context, c *Client) error {
				_, _, err := c.GetConnectorPlugin(ctx, testAuth, "a b%2F")
				return err
			},
			wantPath: "/base/connect/v1/custom-connector-plugins/a%20b%252F",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec, c := startUpstream(t, 200, nil, minimal)
			if err := tt.call(t.Context(), c); err != nil {
				t.Fatal(err)
			}
			req := rec.Last(t)
			if req.Method != http.MethodGet {
				t.Errorf("method = %s, want GET", req.Method)
			}
			if got := req.URL.EscapedPath(); got != tt.wantPath {
				t.Errorf("path = %s, want %s", got, tt.wantPath)
			}
			if got := req.URL.RawQuery; got != tt.wantQuery {
				t.Errorf("query = %q, want %q", got, tt.wantQuery)
			}
			for h, want := range map[string]string{
				"Accept":        "application/json",
				"User-Agent":    "plugin-facade/test",
				"Authorization": "Basic S0VZOnMzY3IzdA==",
			} {
				if got := req.Header.Get(h); got != want {
					t.Errorf("%s = %q, want %q", h, got, want)
				}
			}
		})
	}
}

func TestBearerIsForwardedAsIs(t *testing.T) {
	rec, c := startUpstream(t, 200, nil, minimal)
	auth, err := ParseAuthorization("bearer eyJhbGciOi.J9.sig-_")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.GetConnectorPlugin(t.Context(), auth, "ccp-1"); err != nil {
		t.Fatal(err)
	}
	if got, want := rec.Last(t).Header.Get("Authorization"), "Bearer eyJhbGciOi.J9.sig-_"; got != want {
		t.Errorf("Authorization = %q, want %q", got, want)
	}
}

func TestNoCredentialsNeverCallsUpstream(t *testing.T) {
	rec, c := startUpstream(t, 200, nil, minimal)
	if _, _, err := c.GetConnectorPlugin(t.Context(), Authorization{}, "ccp-1"); err == nil {
		t.Fatal("want an error without credentials")
	}
	if n := rec.Count(); n != 0 {
		t.Fatalf("upstream received %d requests, want 0", n)
	}
}

func TestDecodePluginVersionExample(t *testing.T) {
	_, c := startUpstream(t, 200, nil, readTestdata(t, "plugin_version.json"))
	v, _, err := c.GetPluginVersion(t.Context(), testAuth, "ccp-12345", "ver-12345", "env-00000")
	if err != nil {
		t.Fatal(err)
	}
	created := time.Date(2006, 1, 2, 22, 4, 5, 0, time.UTC)
	checks := []struct {
		field     string
		got, want any
	}{
		{"api_version", v.APIVersion, "ccpm/v1"},
		{"kind", v.Kind, "CustomConnectPluginVersion"},
		{"id", v.ID, "ver-12345"},
		{"metadata.self", v.Metadata.Self, "https://api.confluent.cloud/ccpm/v1/plugins/ccp-12345/versions/ver-12345?environment=env-abc123"},
		{"metadata.created_at", v.Metadata.CreatedAt.UTC(), created},
		{"metadata.deleted_at", v.Metadata.DeletedAt.UTC(), created},
		{"spec.version", v.Spec.Version, "1.2.3"},
		{"spec.sensitive_config_properties", strings.Join(v.Spec.SensitiveConfigProperties, ","), "passwords,keys,tokens"},
		{"spec.content_format", *v.Spec.ContentFormat, "ZIP"},
		{"spec.connector_classes[0].class_name", v.Spec.ConnectorClasses[0].ClassName, "io.confluent.kafka.connect.datagen.DatagenConnector"},
		{"spec.connector_classes[0].type", *v.Spec.ConnectorClasses[0].Type, "SOURCE"},
		{"spec.upload_source.location", *v.Spec.UploadSource.Location, "PRESIGNED_URL_LOCATION"},
		{"spec.environment.id", v.Spec.Environment.ID, "env-00000"},
		{"spec.environment.related", v.Spec.Environment.Related, "https://api.confluent.cloud/v2/environments/env-00000"},
		{"status.phase", *v.Status.Phase, "PROCESSING"},
		{"status.error_message", *v.Status.ErrorMessage, "Version creation failed due to invalid plugin archive."},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.field, c.got, c.want)
		}
	}
}

func TestDecodeIsTolerant(t *testing.T) {
	// Only the required fields, plus fields this version has never heard of.
	body := `{"api_version":"connect/v1","kind":"CustomConnectorPlugin","id":"ccp-1",
		"display_name":"x","connector_class":"a.B","connector_type":"SOURCE",
		"upload_source":{"location":"PRESIGNED_URL_LOCATION","upload_id":""},
		"brand_new_field":{"nested":[1,2,3]},"cloud":"MARS"}`
	_, c := startUpstream(t, 200, nil, body)
	p, _, err := c.GetConnectorPlugin(t.Context(), testAuth, "ccp-1")
	if err != nil {
		t.Fatal(err)
	}
	if p.Metadata != nil || p.Description != nil || p.DocumentationLink != nil || p.RuntimeLanguage != nil || p.ContentFormat != nil {
		t.Errorf("absent optional fields must stay nil: %+v", p)
	}
	if p.Cloud == nil || *p.Cloud != "MARS" {
		t.Errorf("cloud = %v, want the unknown value MARS kept", p.Cloud)
	}
	if p.UploadSource.UploadID == nil || *p.UploadSource.UploadID != "" {
		t.Errorf("upload_id = %v, want present and empty", p.UploadSource.UploadID)
	}
}

func TestFailures(t *testing.T) {
	tests := []struct {
		name   string
		status int
		header http.Header
		body   string

		wantItems      int
		wantCode       string
		wantSummary    string
		wantRequestID  string
		wantRetryAfter time.Duration
		wantRateLimit  RateLimit
		wantAuth       string
	}{
		{
			name: "400 documented example", status: 400,
			header:      http.Header{"X-Request-Id": {"req-400"}},
			body:        readTestdata(t, "failure_400.json"),
			wantItems:   1,
			wantCode:    "invalid_filter",
			wantSummary: "Invalid Filter: The 'delorean' resource can't be filtered by 'num_doors'", wantRequestID: "req-400",
			wantRateLimit: RateLimit{-1, -1, -1},
		},
		{
			name: "401 documented example with its challenge", status: 401,
			header: http.Header{"X-Request-Id": {"req-401"},
				"Www-Authenticate": {`Basic error="invalid_key", error_description="The API Key is invalid"`}},
			body:          readTestdata(t, "failure_401.json"),
			wantItems:     1,
			wantCode:      "user_unauthenticated",
			wantSummary:   "Authentication Required: Valid authentication credentials must be provided",
			wantRequestID: "req-401",
			wantRateLimit: RateLimit{-1, -1, -1},
			wantAuth:      `Basic error="invalid_key", error_description="The API Key is invalid"`,
		},
		{
			name: "404 documented example has a title only", status: 404,
			body:      readTestdata(t, "failure_404.json"),
			wantItems: 1, wantSummary: "Not Found", wantRateLimit: RateLimit{-1, -1, -1},
		},
		{
			name: "429 without a body: the later of Retry-After and the reset", status: 429,
			header: http.Header{"X-Request-Id": {"req-429"}, "Retry-After": {"7"},
				"X-Ratelimit-Limit": {"100"}, "X-Ratelimit-Remaining": {"0"}, "X-Ratelimit-Reset": {"9"}},
			wantSummary: "", wantRequestID: "req-429", wantRetryAfter: 9 * time.Second,
			wantRateLimit: RateLimit{100, 0, 9 * time.Second},
		},
		{
			name: "503 with the window exhausted falls back to the relative reset", status: 503,
			header:         http.Header{"X-Ratelimit-Remaining": {"0"}, "X-Ratelimit-Reset": {"4"}},
			wantRetryAfter: 4 * time.Second,
			wantRateLimit:  RateLimit{-1, 0, 4 * time.Second},
		},
		{
			// Confluent Cloud sends X-RateLimit-* on every answer: a reset
			// with requests remaining says nothing about this failure.
			name: "503 with requests remaining: the reset is no hint", status: 503,
			header:        http.Header{"X-Ratelimit-Limit": {"80"}, "X-Ratelimit-Remaining": {"79"}, "X-Ratelimit-Reset": {"42"}},
			wantRateLimit: RateLimit{80, 79, 42 * time.Second},
		},
		{
			name: "429 without Retry-After falls back to the relative reset", status: 429,
			header:         http.Header{"X-Ratelimit-Reset": {"12"}},
			body:           `{"errors":[{"status":"429","code":"too_many_requests","title":"Too Many Requests"}]}`,
			wantItems:      1,
			wantCode:       "too_many_requests",
			wantSummary:    "Too Many Requests",
			wantRetryAfter: 12 * time.Second,
			wantRateLimit:  RateLimit{-1, -1, 12 * time.Second},
		},
		{
			name: "500 documented example", status: 500,
			body:          readTestdata(t, "failure_500.json"),
			wantItems:     1,
			wantCode:      "out_of_gas",
			wantSummary:   "DeLorean Out Of Gas: The DeLorean has run out of gas, but Doc Brown will fill 'er up for you asap",
			wantRateLimit: RateLimit{-1, -1, -1},
		},
		{
			name: "several items keep their order", status: 400,
			body:      `{"errors":[{"title":"First","detail":"one"},{"code":"c2","title":"Second"}]}`,
			wantItems: 2, wantCode: "c2", wantSummary: "First: one; Second", wantRateLimit: RateLimit{-1, -1, -1},
		},
		{
			name: "message is used when title and detail are missing", status: 400,
			body:      `{"errors":[{"error_code":40001,"message":"bad thing"}]}`,
			wantItems: 1, wantSummary: "bad thing", wantRateLimit: RateLimit{-1, -1, -1},
		},
		{
			name: "502 from a proxy with an HTML page", status: 502,
			body:        "<html>\n<body>  Bad   Gateway </body></html>",
			wantSummary: "Bad Gateway", wantRateLimit: RateLimit{-1, -1, -1},
		},
		{
			name: "garbage rate-limit headers are ignored", status: 503,
			header:      http.Header{"X-Ratelimit-Limit": {"lots"}, "Retry-After": {"Wed, 21 Oct 2015 07:28:00 GMT"}},
			body:        `{"errors":[]}`,
			wantSummary: `{"errors":[]}`, wantRateLimit: RateLimit{-1, -1, -1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, c := startUpstream(t, tt.status, tt.header, tt.body)
			_, _, err := c.GetConnectorPlugin(t.Context(), testAuth, "ccp-1")
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("err = %v (%T), want *Error", err, err)
			}
			if e.StatusCode != tt.status {
				t.Errorf("StatusCode = %d, want %d", e.StatusCode, tt.status)
			}
			if len(e.Items) != tt.wantItems {
				t.Errorf("len(Items) = %d, want %d", len(e.Items), tt.wantItems)
			}
			if got := e.Code(); got != tt.wantCode {
				t.Errorf("Code() = %q, want %q", got, tt.wantCode)
			}
			if got := e.Summary(); got != tt.wantSummary {
				t.Errorf("Summary() = %q, want %q", got, tt.wantSummary)
			}
			if e.RequestID != tt.wantRequestID {
				t.Errorf("RequestID = %q, want %q", e.RequestID, tt.wantRequestID)
			}
			if e.RetryAfter != tt.wantRetryAfter {
				t.Errorf("RetryAfter = %v, want %v", e.RetryAfter, tt.wantRetryAfter)
			}
			if e.RateLimit != tt.wantRateLimit {
				t.Errorf("RateLimit = %+v, want %+v", e.RateLimit, tt.wantRateLimit)
			}
			if e.Authenticate != tt.wantAuth {
				t.Errorf("Authenticate = %q, want %q", e.Authenticate, tt.wantAuth)
			}
			if strings.Contains(err.Error(), "s3cr3t") || strings.Contains(err.Error(), "S0VZOnMzY3IzdA") {
				t.Errorf("error message leaks the credential: %s", err)
			}
		})
	}
}

func TestFailureSourceIsKept(t *testing.T) {
	_, c := startUpstream(t, 400, nil, readTestdata(t, "failure_400.json"))
	_, _, err := c.GetConnectorPlugin(t.Context(), testAuth, "ccp-1")
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("err = %v, want *Error", err)
	}
	it := e.Items[0]
	if it.ID != "ed42afdc-f0d5-4c0d-b428-9fc6ed6e279d" || it.Status != "400" || it.Source == nil || it.Source.Parameter != "num_doors" {
		t.Errorf("item = %+v, want id, status and source.parameter of the example", it)
	}
}

func TestUndecodableSuccess(t *testing.T) {
	for _, body := range []string{"", "null", "{}", `{"kind":"K"}`, "not json", `{"id": 42}`, `{"id":"ccp-1","kind":""}`, `{"metadata":{"created_at":"yesterday"}}`, `[]`, `{"id":"ccp-1","kind":"K"`} {
		for _, read := range []struct {
			name string
			opts []ReadOption
		}{{"typed", nil}, {"as sent", []ReadOption{AsSent()}}} {
			t.Run(fmt.Sprintf("%q %s", body, read.name), func(t *testing.T) {
				_, c := startUpstream(t, 200, http.Header{"X-Request-Id": {"req-1"}}, body)
				_, _, err := c.GetConnectorPlugin(t.Context(), testAuth, "ccp-1", read.opts...)
				var e *DecodeError
				if !errors.As(err, &e) {
					t.Fatalf("err = %v (%T), want *DecodeError", err, err)
				}
				if e.RequestID != "req-1" || e.StatusCode != 200 {
					t.Errorf("DecodeError = %+v, want request id req-1 and status 200", e)
				}
			})
		}
	}
}

// A resource whose field holds a value of a type this version does not
// expect is still the resource: a read of it as sent (the REST face) passes
// it on, a typed read cannot decode it. Either read may fetch it first; the
// other reads it from the cache, with the same outcome.
func TestFieldOfAnotherTypeFailsOnlyTheTypedRead(t *testing.T) {
	const body = `{"id":"ccp-1","kind":"CustomConnectorPlugin","display_name":{"en":"Sink"}}`
	typed := func(c *Client) error {
		_, _, err := c.GetConnectorPlugin(t.Context(), testAuth, "ccp-1")
		var e *DecodeError
		if !errors.As(err, &e) || e.StatusCode != 200 {
			return fmt.Errorf("typed read: err = %v, want a DecodeError of the 200", err)
		}
		return nil
	}
	asSent := func(c *Client) error {
		p, _, err := c.GetConnectorPlugin(t.Context(), testAuth, "ccp-1", AsSent())
		if err != nil || string(p.Raw) != body || p.DisplayName != "" {
			return fmt.Errorf("read as sent: %+v, %v; want the body as sent and no field", p, err)
		}
		return nil
	}
	for _, tt := range []struct {
		name   string
		first  func(*Client) error
		second func(*Client) error
	}{
		{"as sent, then typed", asSent, typed},
		{"typed, then as sent", typed, asSent},
	} {
		t.Run(tt.name, func(t *testing.T) {
			up := upstreamtest.Start(t, upstreamtest.Response{Status: 200, Body: body})
			c := newClient(t, up.URL+"/base/", WithRetry(RetryPolicy{MaxAttempts: 1}), WithRateLimitGuard(false), WithCache(time.Minute, 8))
			for _, read := range []func(*Client) error{tt.first, tt.second, tt.first} {
				if err := read(c); err != nil {
					t.Error(err)
				}
			}
			if n := up.Count(); n != 1 {
				t.Errorf("the upstream got %d requests, want 1 (then the cache)", n)
			}
		})
	}
}

// A read as sent gives the resource's JSON alone; a typed read of the same
// answer, from the cache, has every field.
func TestReadAsSentThenTyped(t *testing.T) {
	body := readTestdata(t, "connector_plugin.json")
	up := upstreamtest.Start(t, upstreamtest.Response{Status: 200, Body: body})
	c := newClient(t, up.URL+"/base/", WithRetry(RetryPolicy{MaxAttempts: 1}), WithRateLimitGuard(false), WithCache(time.Minute, 8))
	raw, _, err := c.GetConnectorPlugin(t.Context(), testAuth, "ccp-1", AsSent())
	if err != nil || string(raw.Raw) != body || raw.ID != "" {
		t.Fatalf("as sent: %+v, %v; want the JSON alone", raw, err)
	}
	p, meta, err := c.GetConnectorPlugin(t.Context(), testAuth, "ccp-1")
	if err != nil || !meta.Cached {
		t.Fatalf("typed: %v (cached %v), want a cache hit", err, meta.Cached)
	}
	var want ConnectorPlugin
	if err := json.Unmarshal([]byte(body), &want); err != nil {
		t.Fatal(err)
	}
	want.Raw = []byte(body)
	if !reflect.DeepEqual(*p, want) {
		t.Errorf("typed read from the cache = %+v, want %+v", *p, want)
	}
}

func TestOversizedBody(t *testing.T) {
	body := `{"display_name":"` + strings.Repeat("x", DefaultMaxBodyBytes) + `"}`
	_, c := startUpstream(t, 200, nil, body)
	_, _, err := c.GetConnectorPlugin(t.Context(), testAuth, "ccp-1")
	var e *DecodeError
	if !errors.As(err, &e) || !strings.Contains(err.Error(), "exceeds") {
		t.Fatalf("err = %v, want a DecodeError saying the body is too large", err)
	}
}

func TestTransportErrors(t *testing.T) {
	t.Run("connection refused", func(t *testing.T) {
		srv := httptest.NewServer(http.NotFoundHandler())
		url := srv.URL
		srv.Close()
		c, err := New(url)
		if err != nil {
			t.Fatal(err)
		}
		_, _, err = c.GetConnectorPlugin(t.Context(), testAuth, "ccp-1")
		var te *TransportError
		if !errors.As(err, &te) || te.DeadlineExceeded() {
			t.Fatalf("err = %v, want a TransportError that is not a deadline", err)
		}
	})
	t.Run("the caller's deadline governs the request", func(t *testing.T) {
		release := make(chan struct{})
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}))
		defer srv.Close()
		defer close(release)
		c, err := New(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
		defer cancel()
		_, _, err = c.GetConnectorPlugin(ctx, testAuth, "ccp-1")
		var te *TransportError
		if !errors.As(err, &te) || !te.DeadlineExceeded() || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want a TransportError wrapping context.DeadlineExceeded", err)
		}
	})
	t.Run("cancellation", func(t *testing.T) {
		_, c := startUpstream(t, 200, nil, minimal)
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		_, _, err := c.GetConnectorPlugin(ctx, testAuth, "ccp-1")
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
	})
}

func TestNewRejectsBadBaseURLs(t *testing.T) {
	for _, u := range []string{"", "api.confluent.cloud", "ftp://host", "https://", "https://key:secret@api.confluent.cloud",
		"https://secret@api.confluent.cloud", "ftp://key:secret@host", "https://host/?x=1", "https://host/#f", "://bad"} {
		c, err := New(u)
		if err == nil {
			t.Errorf("New(%q) = %v, want an error", u, c)
			continue
		}
		if strings.Contains(err.Error(), "secret") {
			t.Errorf("New(%q) error leaks the secret: %v", u, err)
		}
	}
}

// TestReadBody: the body is read whole up to the limit plus one byte, whether
// or not its length is announced, and whether or not the announcement is
// right.
func TestReadBody(t *testing.T) {
	const limit = 8
	tests := []struct {
		body   string
		length int64
		want   string
	}{
		{"", 0, ""},
		{"", -1, ""},
		{"12345", 5, "12345"},
		{"12345", -1, "12345"},
		{"12345", 2, "12345"}, // an understatement still reads it all
		{"12345", 8, "12345"},
		{"123456789abc", -1, "123456789"}, // over the limit: limit+1 bytes
		{"123456789abc", 3, "123456789"},
		{strings.Repeat("x", 600), -1, strings.Repeat("x", limit+1)},
	}
	for _, tt := range tests {
		got, err := readBody(iotest.OneByteReader(strings.NewReader(tt.body)), tt.length, limit)
		if err != nil || string(got) != tt.want {
			t.Errorf("readBody(%q, length %d) = %q, %v; want %q", tt.body, tt.length, got, err, tt.want)
		}
	}
	big := strings.Repeat("y", 3000)
	if got, err := readBody(strings.NewReader(big), -1, 1<<20); err != nil || string(got) != big {
		t.Errorf("readBody of 3000 bytes, length unknown = %d bytes, %v", len(got), err)
	}
	if _, err := readBody(iotest.ErrReader(errors.New("reset")), 10, limit); err == nil {
		t.Error("readBody hid a read error")
	}
}

// TestHeaderTextIsPrintableASCII: header values the upstream sends go on in
// messages, metadata and status details, which need valid, printable text.
func TestHeaderTextIsPrintableASCII(t *testing.T) {
	_, c := startUpstream(t, 404, http.Header{"X-Request-Id": {"req-\xe9t\xe9"}, "Www-Authenticate": {"Basic realm=\"\xff\""}}, "")
	_, meta, err := c.GetConnectorPlugin(t.Context(), testAuth, "ccp-1")
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("err = %v", err)
	}
	if e.RequestID != "req-?t?" || meta.RequestID != "req-?t?" || e.Authenticate != `Basic realm="?"` {
		t.Errorf("RequestID %q / %q, Authenticate %q: want printable ASCII", e.RequestID, meta.RequestID, e.Authenticate)
	}
}

// TestExcerptOfAProxyPage: what a person reads of an HTML error page is its
// words, not its markup, styles or scripts, even when they come first and are
// long.
func TestExcerptOfAProxyPage(t *testing.T) {
	page := "<!DOCTYPE html><html><head><title>502 Bad Gateway</title><style>" +
		strings.Repeat("body{margin:0;padding:0;font-family:Arial} ", 200) +
		"</style><script>var x = '<b>not this</b>';</script></head><body><h1>Bad Gateway</h1>" +
		"<p>The upstream server returned an invalid response. &amp; that&#39;s all.</p><!-- ray id 1234 --></body></html>"
	got := excerpt([]byte(page))
	want := "502 Bad Gateway Bad Gateway The upstream server returned an invalid response. & that's all."
	if got != want {
		t.Errorf("excerpt = %q, want %q", got, want)
	}
	if got := excerpt([]byte("<html><style>" + strings.Repeat("x{}", 100))); got != "" {
		t.Errorf("excerpt of a page cut inside its style = %q, want nothing", got)
	}
}
