package server

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/acme/plugin-facade/internal/failure"
	"github.com/acme/plugin-facade/internal/sandbox"
	"github.com/acme/plugin-facade/internal/service"
	"github.com/acme/plugin-facade/internal/upstream"
	"github.com/acme/plugin-facade/internal/upstream/upstreamtest"
)

// documentedHeaders are the response headers the upstream's API pages
// document, which the gateway passes on as the upstream sent them.
var documentedHeaders = []string{"X-Request-Id", "X-Ratelimit-Limit", "X-Ratelimit-Remaining", "X-Ratelimit-Reset", "Retry-After", "Www-Authenticate"}

// replay is a scripted upstream that answers every request with a, as
// recorded.
func replay(t testing.TB, a restResponse) *upstreamtest.Server {
	h := http.Header{}
	for _, k := range append([]string{"Content-Type"}, documentedHeaders...) {
		if v, ok := a.header[k]; ok {
			h[k] = v
		}
	}
	return upstreamtest.Start(t, upstreamtest.Response{Status: a.status, Header: h, Body: string(a.body)})
}

// gatewayTo starts the facade in front of the upstream at url, with the
// sandbox's key as its own, no retries and no rate-limit guard: one request
// through the gateway is one upstream answer.
func gatewayTo(t testing.TB, url string, opts ...upstream.Option) *stack {
	t.Helper()
	uc, err := upstream.New(url, append([]upstream.Option{upstream.WithRateLimitGuard(false),
		upstream.WithRetry(upstream.RetryPolicy{MaxAttempts: 1})}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(uc.Close)
	return startServer(t, service.New(uc, service.WithDefaultCredentials(sandboxKey)), nil)
}

// normalJSON decodes a JSON document for comparison: numbers as written,
// strings that are RFC 3339 timestamps as the instant they name.
func normalJSON(t testing.TB, b []byte) any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, b)
	}
	if dec.More() {
		t.Fatalf("more than one JSON document: %s", b)
	}
	var walk func(v any) any
	walk = func(v any) any {
		switch v := v.(type) {
		case map[string]any:
			for k, e := range v {
				v[k] = walk(e)
			}
		case []any:
			for i, e := range v {
				v[i] = walk(e)
			}
		case string:
			if ts, err := time.Parse(time.RFC3339Nano, v); err == nil {
				return "instant " + ts.UTC().Format(time.RFC3339Nano)
			}
		}
		return v
	}
	return walk(v)
}

// assertSameJSON fails unless want and got are the same JSON document
// (timestamps compared as instants).
func assertSameJSON(t testing.TB, want, got []byte) {
	t.Helper()
	if diff := cmp.Diff(normalJSON(t, want), normalJSON(t, got)); diff != "" {
		t.Errorf("JSON differs (-direct +gateway):\n%s\ndirect:  %s\ngateway: %s", diff, want, got)
	}
}

// failureEnvelope is the upstream's Failure, every field it documents, no
// other.
type failureEnvelope struct {
	Errors []struct {
		ID     string `json:"id"`
		Status string `json:"status"`
		Code   string `json:"code"`
		Title  string `json:"title"`
		Detail string `json:"detail"`
		Source *struct {
			Pointer   string `json:"pointer"`
			Parameter string `json:"parameter"`
		} `json:"source"`
		ErrorCode *int32  `json:"error_code"`
		Message   *string `json:"message"`
	} `json:"errors"`
}

// assertEnvelope fails unless a is a well-formed Failure envelope of the
// facade's: the HTTP status in every error, the code, a title and detail.
// It returns the envelope.
func assertEnvelope(t testing.TB, a restResponse, wantStatus int, wantCode string) failureEnvelope {
	t.Helper()
	var f failureEnvelope
	dec := json.NewDecoder(bytes.NewReader(a.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil || len(f.Errors) == 0 {
		t.Fatalf("%d %s: not a Failure envelope (%v)", a.status, a.body, err)
	}
	if a.status != wantStatus || a.header.Get("Content-Type") != "application/json" {
		t.Errorf("%d %s, want %d application/json", a.status, a.header.Get("Content-Type"), wantStatus)
	}
	for _, e := range f.Errors {
		if e.Status != strconv.Itoa(wantStatus) || e.Code != wantCode || e.Title == "" || e.Detail == "" {
			t.Errorf("error %+v, want status %q, code %q, a title and a detail", e, strconv.Itoa(wantStatus), wantCode)
		}
	}
	return f
}

func readExample(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile("../upstream/testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestRESTConformsToTheUpstream reads one upstream answer directly and
// through the gateway, for every sandbox resource and error scenario and the
// API pages' error examples: the status, the body (JSON-equal, timestamps as
// instants) and the documented headers are the same. Answers the facade
// cannot pass on (a body that is not JSON, or a 2xx that is not the resource)
// keep their status where it is an error, and get a well-formed envelope.
func TestRESTConformsToTheUpstream(t *testing.T) {
	sb := startSandbox(t)
	auth := "Basic " + "U0FOREJPWEtFWTpzYW5kYm94LXNlY3JldA==" // SANDBOXKEY:sandbox-secret
	version := func(plugin, id, env string) string {
		return "/ccpm/v1/plugins/" + plugin + "/versions/" + id + "?environment=" + env
	}
	plugin := func(id string) string { return "/connect/v1/custom-connector-plugins/" + id }
	tests := []struct {
		name  string
		path  string
		auth  string
		fault *sandbox.Fault // played by the sandbox for the direct read
		// canned is an answer of the API pages the sandbox does not give.
		canned *upstreamtest.Response
		// wantStatus and wantCode, when set, are the facade's own answer
		// (not JSON-equal to the upstream's); wantStatus 0 means the same
		// status and body as direct.
		wantStatus int
		wantCode   string
	}{
		{name: "plugin with every field", path: plugin(sandbox.PluginID), auth: auth},
		{name: "SINK plugin", path: plugin(sandbox.FailedPluginID), auth: auth},
		{name: "plugin with unknown enum values", path: plugin(sandbox.UnknownEnumsPluginID), auth: auth},
		{name: "minimal plugin", path: plugin(sandbox.MinimalPluginID), auth: auth},
		{name: "version with every field", path: version(sandbox.PluginID, sandbox.VersionID, sandbox.Environment), auth: auth},
		{name: "deleted version", path: version(sandbox.PluginID, sandbox.DeletedVersionID, sandbox.Environment), auth: auth},
		{name: "failed version", path: version(sandbox.FailedPluginID, sandbox.FailedVersionID, sandbox.Environment), auth: auth},
		{name: "version with unknown enum values", path: version(sandbox.UnknownEnumsPluginID, sandbox.UnknownEnumsVersionID, sandbox.Environment), auth: auth},
		{name: "minimal version", path: version(sandbox.MinimalPluginID, sandbox.MinimalVersionID, sandbox.Environment), auth: auth},
		{name: "processing version", path: version(sandbox.PluginID, sandbox.ProcessingVersionID, sandbox.Environment), auth: auth},

		{name: "401 with a challenge", path: plugin(sandbox.PluginID), auth: "Bearer not-the-token"},
		{name: "403", path: version(sandbox.PluginID, sandbox.VersionID, sandbox.ForbiddenEnvironment), auth: auth},
		{name: "404 plugin", path: plugin("ccp-00000"), auth: auth},
		{name: "404 version", path: version(sandbox.PluginID, "ver-00000", sandbox.Environment), auth: auth},
		{name: "429 with Retry-After", path: plugin(sandbox.PluginID), auth: auth, fault: &sandbox.Fault{Kind: sandbox.Fault429, RetryAfter: 7}},
		{name: "429 without Retry-After", path: plugin(sandbox.PluginID), auth: auth, fault: &sandbox.Fault{Kind: sandbox.Fault429NoRetryAfter, RetryAfter: 7}},
		{name: "503", path: plugin(sandbox.PluginID), auth: auth, fault: &sandbox.Fault{Kind: sandbox.Fault503, RetryAfter: 5}},
		{name: "HTML 502", path: plugin(sandbox.PluginID), auth: auth, fault: &sandbox.Fault{Kind: sandbox.FaultHTML502},
			wantStatus: http.StatusBadGateway, wantCode: "bad_gateway"},
		{name: "empty 500", path: plugin(sandbox.PluginID), auth: auth, fault: &sandbox.Fault{Kind: sandbox.FaultEmpty500},
			wantStatus: http.StatusInternalServerError, wantCode: "internal_server_error"},
		{name: "oversized 200", path: plugin(sandbox.PluginID), auth: auth, fault: &sandbox.Fault{Kind: sandbox.FaultOversized, Size: 2 << 20},
			wantStatus: http.StatusBadGateway, wantCode: "upstream_response_too_large"},
		{name: "malformed 200", path: plugin(sandbox.PluginID), auth: auth, fault: &sandbox.Fault{Kind: sandbox.FaultMalformed200},
			wantStatus: http.StatusBadGateway, wantCode: "upstream_response_undecodable"},

		{name: "400 of the API page", path: plugin(sandbox.PluginID), canned: &upstreamtest.Response{Status: 400, Body: readExample(t, "failure_400.json")}},
		{name: "multi-error 400", path: plugin(sandbox.PluginID), canned: &upstreamtest.Response{Status: 400, Body: `{"errors":[
			{"id":"e-1","status":"400","code":"invalid_filter","title":"Invalid Filter","detail":"can't filter by 'num_doors'","source":{"parameter":"num_doors"}},
			{"id":"e-2","status":"400","code":"invalid_value","title":"Invalid Value","detail":"Déjà \"vu\" \u2028 😀","source":{"pointer":"/spec/display_name"}},
			{"status":"400","error_code":40002,"message":null}]}`}},
		{name: "409", path: plugin(sandbox.PluginID), canned: &upstreamtest.Response{Status: 409, Header: http.Header{"X-Request-Id": {"req-409"}},
			Body: `{"errors":[{"id":"e-409","status":"409","code":"resource_conflict","title":"Conflict","detail":"The plugin is being updated."}]}`}},
		{name: "500 of the API page", path: plugin(sandbox.PluginID), canned: &upstreamtest.Response{Status: 500, Body: readExample(t, "failure_500.json")}},
		{name: "oversized 404", path: plugin(sandbox.PluginID), canned: &upstreamtest.Response{Status: 404,
			Body: `{"errors":[{"status":"404","title":"` + strings.Repeat("x", 2<<20) + `"}]}`},
			wantStatus: http.StatusNotFound, wantCode: "not_found"},
		{name: "a 502 with an envelope stays a 502", path: plugin(sandbox.PluginID), canned: &upstreamtest.Response{Status: 502,
			Body: `{"errors":[{"status":"502","code":"bad_gateway","title":"Bad Gateway"}]}`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var direct restResponse
			if tt.canned != nil {
				direct = fetch(t, upstreamtest.Start(t, *tt.canned).URL+tt.path)
			} else {
				if tt.fault != nil {
					sb.Inject(*tt.fault)
				}
				direct = fetch(t, sb.URL()+tt.path, "Authorization", tt.auth)
			}
			gw := gatewayTo(t, replay(t, direct).URL)
			got := fetch(t, gw.httpURL+tt.path)

			if tt.wantStatus != 0 {
				assertEnvelope(t, got, tt.wantStatus, tt.wantCode)
				assertDescribed(t, tt.path, got, nil)
				if got.header.Get("X-Request-Id") != direct.header.Get("X-Request-Id") {
					t.Errorf("X-Request-Id %q, want the upstream's %q", got.header.Get("X-Request-Id"), direct.header.Get("X-Request-Id"))
				}
				return
			}
			if got.status != direct.status {
				t.Errorf("status %d, want the upstream's %d: %s", got.status, direct.status, got.body)
			}
			assertSameJSON(t, direct.body, got.body)
			assertDescribed(t, tt.path, got, &direct)
			for _, k := range documentedHeaders {
				if g, d := got.header.Values(k), direct.header.Values(k); !cmp.Equal(g, d) {
					t.Errorf("%s: %q, want the upstream's %q", k, g, d)
				}
			}
			if ct := got.header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
		})
	}
}

// TestRESTErrorIsTheLastAnswerAfterRetries: when the retries are spent, the
// envelope is the last answer's, with its headers.
func TestRESTErrorIsTheLastAnswerAfterRetries(t *testing.T) {
	first := `{"errors":[{"id":"first","status":"503","title":"Service Unavailable"}]}`
	last := `{"errors":[{"id":"last","status":"503","title":"Service Unavailable","detail":"still"}]}`
	up := upstreamtest.StartScript(t,
		upstreamtest.Response{Status: 503, Header: http.Header{"X-Request-Id": {"req-1"}}, Body: first},
		upstreamtest.Response{Status: 503, Header: http.Header{"X-Request-Id": {"req-2"}, "Retry-After": {"0"}}, Body: last})
	gw := gatewayTo(t, up.URL, upstream.WithRetry(upstream.RetryPolicy{MaxAttempts: 2, BaseDelay: time.Millisecond}))
	got := fetch(t, gw.httpURL+"/connect/v1/custom-connector-plugins/ccp-1")
	if got.status != 503 || got.header.Get("X-Request-Id") != "req-2" || got.header.Get("Retry-After") != "0" || up.Count() != 2 {
		t.Errorf("%d, X-Request-Id %q, Retry-After %q after %d requests; want the second answer's 503, req-2, 0",
			got.status, got.header.Get("X-Request-Id"), got.header.Get("Retry-After"), up.Count())
	}
	assertSameJSON(t, []byte(last), got.body)
}

// TestRESTFacadeFailures: failures that begin in the facade are Failure
// envelopes with the documented status, code and headers.
func TestRESTFacadeFailures(t *testing.T) {
	withKey := startStack(t, []service.Option{service.WithDefaultCredentials(sandboxKey)}, sandbox.WithRateLimit(1, time.Minute))
	noKey := startStack(t, nil)
	refused, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadURL := "http://" + refused.Addr().String()
	refused.Close() // nothing listens there any more: connections are refused
	unreachable := gatewayTo(t, deadURL)
	slow := upstreamtest.Start(t, upstreamtest.Response{Status: 200, Delay: 5 * time.Second})
	uc, err := upstream.New(slow.URL)
	if err != nil {
		t.Fatal(err)
	}
	timeout := startServer(t, service.New(uc, service.WithDefaultCredentials(sandboxKey), service.WithUpstreamTimeout(100*time.Millisecond)), nil)

	// The one request the sandbox allows a minute; the next reaches the
	// sandbox's 429, and the one after is the guard's.
	if a := fetch(t, withKey.httpURL+"/connect/v1/custom-connector-plugins/"+sandbox.PluginID); a.status != 200 {
		t.Fatalf("the first call: %d %s", a.status, a.body)
	}
	if a := fetch(t, withKey.httpURL+"/connect/v1/custom-connector-plugins/"+sandbox.PluginID); a.status != 429 {
		t.Fatalf("the second call: %d %s, want the sandbox's 429", a.status, a.body)
	}

	tests := []struct {
		name       string
		url        string
		auth       string
		wantStatus int
		wantCode   string
		wantParams []string // source.parameter of each error
		wantHeader map[string]string
	}{
		{"invalid id", withKey.httpURL + "/connect/v1/custom-connector-plugins/ccp%2012345", "", 400, "invalid_identifier", []string{"id"}, nil},
		{"missing environment", withKey.httpURL + "/ccpm/v1/plugins/ccp-1/versions/ver-1", "", 400, "invalid_identifier", []string{"environment"}, nil},
		{"two invalid fields", withKey.httpURL + "/ccpm/v1/plugins/ccp%201/versions/ver%201?environment=env-1", "", 400, "invalid_identifier", []string{"plugin_id", "id"}, nil},
		{"no credentials", noKey.httpURL + "/connect/v1/custom-connector-plugins/ccp-1", "", 401, "no_credentials", nil,
			map[string]string{"WWW-Authenticate": failure.DefaultChallenge}},
		{"malformed credentials", noKey.httpURL + "/connect/v1/custom-connector-plugins/ccp-1", "Digest abc", 401, "invalid_credentials", nil,
			map[string]string{"WWW-Authenticate": failure.DefaultChallenge}},
		{"the rate-limit guard", withKey.httpURL + "/connect/v1/custom-connector-plugins/" + sandbox.PluginID, "", 429, "rate_limit_exhausted", nil,
			map[string]string{"X-RateLimit-Remaining": "0"}},
		{"unreachable", unreachable.httpURL + "/connect/v1/custom-connector-plugins/ccp-1", "", 503, "upstream_unreachable", nil,
			map[string]string{"Retry-After": "1"}},
		{"timeout", timeout.httpURL + "/connect/v1/custom-connector-plugins/ccp-1", "", 504, "upstream_timeout", nil, nil},
		{"unknown route", withKey.httpURL + "/connect/v1/connectors", "", 404, "not_found", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := withKey.sandbox.Requests()
			a := fetch(t, tt.url, "Authorization", tt.auth)
			f := assertEnvelope(t, a, tt.wantStatus, tt.wantCode)
			var params []string
			for _, e := range f.Errors {
				if e.Source != nil {
					params = append(params, e.Source.Parameter)
				}
			}
			if !cmp.Equal(params, tt.wantParams) {
				t.Errorf("source.parameter %q, want %q", params, tt.wantParams)
			}
			for k, v := range tt.wantHeader {
				if got := a.header.Get(k); got != v {
					t.Errorf("%s %q, want %q", k, got, v)
				}
			}
			if tt.wantStatus == 429 && a.header.Get("Retry-After") == "" {
				t.Error("a 429 without Retry-After")
			}
			if n := withKey.sandbox.Requests() - before; n != 0 {
				t.Errorf("the sandbox received %d requests, want none", n)
			}
			if path := tt.url[strings.Index(tt.url[len("http://"):], "/")+len("http://"):]; tt.wantCode != "not_found" {
				assertDescribed(t, path, a, nil)
			}
		})
	}
	t.Run("method not allowed", func(t *testing.T) {
		resp, err := http.Post(withKey.httpURL+"/connect/v1/custom-connector-plugins/ccp-1", "application/json", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		assertEnvelope(t, restResponse{resp.StatusCode, resp.Header, body}, 405, "method_not_allowed")
	})
}
