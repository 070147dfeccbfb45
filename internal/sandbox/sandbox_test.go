package sandbox_test

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/acme/plugin-facade/internal/sandbox"
)

var (
	basicAuth  = "Basic " + base64.StdEncoding.EncodeToString([]byte(sandbox.APIKey+":"+sandbox.APISecret))
	bearerAuth = "Bearer " + sandbox.BearerToken
	uuidRE     = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
)

const org = "5e2b8f3a-91c4-4d7e-b6a0-3f1d2c9e8b47"

// fakeClock is a manually advanced clock for WithClock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func start(t *testing.T, opts ...sandbox.Option) *sandbox.Server {
	t.Helper()
	s, err := sandbox.Start(opts...)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// do sends one request over loopback and returns the response with its body
// read. path is appended verbatim to the base URL, so escapes survive.
func do(t *testing.T, base, method, path, authorization string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, base+path, nil)
	if err != nil {
		t.Fatalf("NewRequest(%s %s): %v", method, path, err)
	}
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	client := &http.Client{
		Timeout:       5 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return resp, body
}

// assertJSON compares two JSON documents semantically: same keys, same values,
// nothing extra, nothing missing.
func assertJSON(t *testing.T, got []byte, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("response is not JSON: %v\n%s", err, got)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("bad expectation: %v\n%s", err, want)
	}
	if !reflect.DeepEqual(g, w) {
		gi, _ := json.MarshalIndent(g, "", "  ")
		wi, _ := json.MarshalIndent(w, "", "  ")
		t.Errorf("body mismatch\ngot:  %s\nwant: %s", gi, wi)
	}
}

func assertCommonHeaders(t *testing.T, resp *http.Response) {
	t.Helper()
	if got := resp.Header.Get("Content-Type"); got != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", got)
	}
	if got := resp.Header.Get("X-Request-Id"); !uuidRE.MatchString(got) {
		t.Errorf("X-Request-Id = %q, want a UUID", got)
	}
}

func TestGetPluginVersion(t *testing.T) {
	s := start(t)
	base := s.URL()
	tests := []golden{
		{
			name: "READY version, every field populated",
			path: "/ccpm/v1/plugins/ccp-12345/versions/ver-12345?environment=env-00000",
			want: `{
				"api_version": "ccpm/v1",
				"kind": "CustomConnectPluginVersion",
				"id": "ver-12345",
				"metadata": {
					"self": "BASE/ccpm/v1/plugins/ccp-12345/versions/ver-12345?environment=env-00000",
					"resource_name": "crn://confluent.cloud/organization=ORG/environment=env-00000/custom-connect-plugin=ccp-12345/version=ver-12345",
					"created_at": "2024-06-11T13:58:02Z",
					"updated_at": "2024-06-11T14:01:19Z"
				},
				"spec": {
					"version": "0.6.5",
					"sensitive_config_properties": ["passwords", "keys", "tokens"],
					"documentation_link": "https://github.com/confluentinc/kafka-connect-datagen",
					"content_format": "ZIP",
					"connector_classes": [{"class_name": "io.confluent.kafka.connect.datagen.DatagenConnector", "type": "SOURCE"}],
					"upload_source": {"location": "PRESIGNED_URL_LOCATION", "upload_id": ""},
					"environment": {
						"id": "env-00000",
						"environment": "env-00000",
						"related": "BASE/v2/environments/env-00000",
						"resource_name": "crn://confluent.cloud/organization=ORG/environment=env-00000"
					}
				},
				"status": {"phase": "READY"}
			}`,
		},
		{
			name: "deleted version carries deleted_at",
			path: "/ccpm/v1/plugins/ccp-12345/versions/ver-12344?environment=env-00000",
			want: `{
				"api_version": "ccpm/v1",
				"kind": "CustomConnectPluginVersion",
				"id": "ver-12344",
				"metadata": {
					"self": "BASE/ccpm/v1/plugins/ccp-12345/versions/ver-12344?environment=env-00000",
					"resource_name": "crn://confluent.cloud/organization=ORG/environment=env-00000/custom-connect-plugin=ccp-12345/version=ver-12344",
					"created_at": "2024-03-04T09:15:00Z",
					"updated_at": "2024-06-11T14:02:37Z",
					"deleted_at": "2024-06-11T14:02:37Z"
				},
				"spec": {
					"version": "0.6.4",
					"sensitive_config_properties": ["passwords", "keys", "tokens"],
					"documentation_link": "https://github.com/confluentinc/kafka-connect-datagen",
					"content_format": "ZIP",
					"connector_classes": [{"class_name": "io.confluent.kafka.connect.datagen.DatagenConnector", "type": "SOURCE"}],
					"upload_source": {"location": "PRESIGNED_URL_LOCATION", "upload_id": ""},
					"environment": {
						"id": "env-00000",
						"environment": "env-00000",
						"related": "BASE/v2/environments/env-00000",
						"resource_name": "crn://confluent.cloud/organization=ORG/environment=env-00000"
					}
				},
				"status": {"phase": "READY"}
			}`,
		},
		{
			name: "FAILED version with error_message",
			path: "/ccpm/v1/plugins/ccp-23456/versions/ver-23456?environment=env-00000",
			want: `{
				"api_version": "ccpm/v1",
				"kind": "CustomConnectPluginVersion",
				"id": "ver-23456",
				"metadata": {
					"self": "BASE/ccpm/v1/plugins/ccp-23456/versions/ver-23456?environment=env-00000",
					"resource_name": "crn://confluent.cloud/organization=ORG/environment=env-00000/custom-connect-plugin=ccp-23456/version=ver-23456",
					"created_at": "2024-09-03T08:01:44Z",
					"updated_at": "2024-09-03T08:05:00Z"
				},
				"spec": {
					"version": "1.4.0-rc.2",
					"sensitive_config_properties": ["webhook.auth.token", "webhook.tls.key.password"],
					"documentation_link": "https://github.com/acme/webhook-sink-connector",
					"content_format": "JAR",
					"connector_classes": [{"class_name": "com.acme.connect.webhook.WebhookSinkConnector", "type": "SINK"}],
					"upload_source": {"location": "PRESIGNED_URL_LOCATION", "upload_id": ""},
					"environment": {
						"id": "env-00000",
						"environment": "env-00000",
						"related": "BASE/v2/environments/env-00000",
						"resource_name": "crn://confluent.cloud/organization=ORG/environment=env-00000"
					}
				},
				"status": {
					"phase": "FAILED",
					"error_message": "Version creation failed due to invalid plugin archive: no connector class found in the archive."
				}
			}`,
		},
		{
			name: "enum values the specification does not list",
			path: "/ccpm/v1/plugins/ccp-34567/versions/ver-34567?environment=env-00000",
			want: `{
				"api_version": "ccpm/v1",
				"kind": "CustomConnectPluginVersion",
				"id": "ver-34567",
				"metadata": {
					"self": "BASE/ccpm/v1/plugins/ccp-34567/versions/ver-34567?environment=env-00000",
					"resource_name": "crn://confluent.cloud/organization=ORG/environment=env-00000/custom-connect-plugin=ccp-34567/version=ver-34567",
					"created_at": "2025-01-21T07:29:03Z",
					"updated_at": "2025-01-21T07:30:45Z"
				},
				"spec": {
					"version": "0.1.0-alpha.1",
					"sensitive_config_properties": ["reshape.license.key"],
					"documentation_link": "https://github.com/acme/record-reshaper",
					"content_format": "TAR",
					"connector_classes": [{"class_name": "dev.acme.transform.Reshape", "type": "TRANSFORM"}],
					"upload_source": {"location": "GIT_REPOSITORY_LOCATION", "upload_id": ""},
					"environment": {
						"id": "env-00000",
						"environment": "env-00000",
						"related": "BASE/v2/environments/env-00000",
						"resource_name": "crn://confluent.cloud/organization=ORG/environment=env-00000"
					}
				},
				"status": {"phase": "VALIDATING"}
			}`,
		},
		{
			name: "only required fields",
			path: "/ccpm/v1/plugins/ccp-45678/versions/ver-45678?environment=env-00000",
			want: `{
				"api_version": "ccpm/v1",
				"kind": "CustomConnectPluginVersion",
				"id": "ver-45678",
				"spec": {
					"version": "1.0.0",
					"connector_classes": [{"class_name": "com.acme.connect.minimal.MinimalSourceConnector", "type": "SOURCE"}],
					"upload_source": {"location": "PRESIGNED_URL_LOCATION", "upload_id": ""},
					"environment": {
						"id": "env-00000",
						"related": "BASE/v2/environments/env-00000",
						"resource_name": "crn://confluent.cloud/organization=ORG/environment=env-00000"
					}
				},
				"status": {"phase": "PROCESSING"}
			}`,
		},
	}
	assertGolden(t, base, tests)
}

// golden is a seeded resource and the JSON the sandbox must answer for it, with
// BASE and ORG standing for the server's URL and the organization id.
type golden struct {
	name string
	path string
	want string
}

// assertGolden reads every case with both accepted credentials.
func assertGolden(t *testing.T, base string, tests []golden) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, auth := range []string{basicAuth, bearerAuth} {
				resp, body := do(t, base, http.MethodGet, tt.path, auth)
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("status = %d, want 200; body %s", resp.StatusCode, body)
				}
				assertCommonHeaders(t, resp)
				want := strings.NewReplacer("BASE", base, "ORG", org).Replace(tt.want)
				assertJSON(t, body, want)
			}
		})
	}
}

func TestGetConnectorPlugin(t *testing.T) {
	s := start(t)
	base := s.URL()
	tests := []golden{
		{
			name: "SOURCE, ZIP, AWS, JAVA, every field populated",
			path: "/connect/v1/custom-connector-plugins/ccp-12345",
			want: `{
				"api_version": "connect/v1",
				"kind": "CustomConnectorPlugin",
				"id": "ccp-12345",
				"metadata": {
					"self": "BASE/connect/v1/custom-connector-plugins/ccp-12345",
					"resource_name": "crn://confluent.cloud/organization=ORG/custom-connector-plugin=ccp-12345",
					"created_at": "2024-03-04T09:15:00Z",
					"updated_at": "2024-06-11T14:02:37Z"
				},
				"display_name": "Datagen Source",
				"content_format": "ZIP",
				"description": "Generates mock records for development and testing, seeded by the sandbox.",
				"documentation_link": "https://github.com/confluentinc/kafka-connect-datagen",
				"connector_class": "io.confluent.kafka.connect.datagen.DatagenConnector",
				"connector_type": "SOURCE",
				"cloud": "AWS",
				"sensitive_config_properties": ["passwords", "keys", "tokens"],
				"upload_source": {"location": "PRESIGNED_URL_LOCATION", "upload_id": ""},
				"runtime_language": "JAVA"
			}`,
		},
		{
			name: "SINK, JAR, GCP, PYTHON",
			path: "/connect/v1/custom-connector-plugins/ccp-23456",
			want: `{
				"api_version": "connect/v1",
				"kind": "CustomConnectorPlugin",
				"id": "ccp-23456",
				"metadata": {
					"self": "BASE/connect/v1/custom-connector-plugins/ccp-23456",
					"resource_name": "crn://confluent.cloud/organization=ORG/custom-connector-plugin=ccp-23456",
					"created_at": "2024-09-02T16:40:12Z",
					"updated_at": "2024-09-03T08:05:00Z"
				},
				"display_name": "Webhook Sink",
				"content_format": "JAR",
				"description": "Posts Kafka records to an HTTP endpoint, built on the Python connector runtime.",
				"documentation_link": "https://github.com/acme/webhook-sink-connector",
				"connector_class": "com.acme.connect.webhook.WebhookSinkConnector",
				"connector_type": "SINK",
				"cloud": "GCP",
				"sensitive_config_properties": ["webhook.auth.token", "webhook.tls.key.password"],
				"upload_source": {"location": "PRESIGNED_URL_LOCATION", "upload_id": ""},
				"runtime_language": "PYTHON"
			}`,
		},
		{
			name: "enum values the specification does not list",
			path: "/connect/v1/custom-connector-plugins/ccp-34567",
			want: `{
				"api_version": "connect/v1",
				"kind": "CustomConnectorPlugin",
				"id": "ccp-34567",
				"metadata": {
					"self": "BASE/connect/v1/custom-connector-plugins/ccp-34567",
					"resource_name": "crn://confluent.cloud/organization=ORG/custom-connector-plugin=ccp-34567",
					"created_at": "2025-01-20T11:00:00Z",
					"updated_at": "2025-01-21T07:30:45Z"
				},
				"display_name": "Record Reshaper",
				"content_format": "TAR",
				"description": "Reshapes records in flight; carries enum values the upstream does not document yet.",
				"documentation_link": "https://github.com/acme/record-reshaper",
				"connector_class": "dev.acme.transform.Reshape",
				"connector_type": "TRANSFORM",
				"cloud": "ORACLE",
				"sensitive_config_properties": ["reshape.license.key"],
				"upload_source": {"location": "GIT_REPOSITORY_LOCATION", "upload_id": ""},
				"runtime_language": "RUST"
			}`,
		},
		{
			name: "only required fields",
			path: "/connect/v1/custom-connector-plugins/ccp-45678",
			want: `{
				"api_version": "connect/v1",
				"kind": "CustomConnectorPlugin",
				"id": "ccp-45678",
				"display_name": "Minimal Source",
				"connector_class": "com.acme.connect.minimal.MinimalSourceConnector",
				"connector_type": "SOURCE",
				"upload_source": {"location": "PRESIGNED_URL_LOCATION", "upload_id": ""}
			}`,
		},
		{
			name: "percent-encoded characters in the id are decoded",
			path: "/connect/v1/custom-connector-plugins/ccp%2D45678",
			want: `{
				"api_version": "connect/v1",
				"kind": "CustomConnectorPlugin",
				"id": "ccp-45678",
				"display_name": "Minimal Source",
				"connector_class": "com.acme.connect.minimal.MinimalSourceConnector",
				"connector_type": "SOURCE",
				"upload_source": {"location": "PRESIGNED_URL_LOCATION", "upload_id": ""}
			}`,
		},
	}
	assertGolden(t, base, tests)
}

// TestSelfLinksFollowable checks that a self link leads back to the resource.
func TestSelfLinksFollowable(t *testing.T) {
	s := start(t)
	for _, path := range []string{
		"/ccpm/v1/plugins/" + sandbox.PluginID + "/versions/" + sandbox.VersionID + "?environment=" + sandbox.Environment,
		"/connect/v1/custom-connector-plugins/" + sandbox.PluginID,
	} {
		_, body := do(t, s.URL(), http.MethodGet, path, basicAuth)
		var first struct {
			Metadata struct {
				Self string `json:"self"`
			} `json:"metadata"`
		}
		if err := json.Unmarshal(body, &first); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(first.Metadata.Self, s.URL()+"/") {
			t.Fatalf("self = %q, want it under %s", first.Metadata.Self, s.URL())
		}
		resp, again := do(t, "", http.MethodGet, first.Metadata.Self, basicAuth)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET self: status %d", resp.StatusCode)
		}
		assertJSON(t, again, string(body))
	}
}

// TestHandlerUsesRequestHost exercises New as a plain http.Handler: links
// are built from whatever host the client addressed.
func TestHandlerUsesRequestHost(t *testing.T) {
	h := sandbox.New()
	req := httptest.NewRequest(http.MethodGet, "http://sandbox.test:8080/connect/v1/custom-connector-plugins/"+sandbox.PluginID, nil)
	req.Header.Set("Authorization", bearerAuth)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Fatalf("status = %d, want 200", rec.Code)
	}
	if want := `"self":"http://sandbox.test:8080/connect/v1/custom-connector-plugins/ccp-12345"`; !strings.Contains(rec.Body.String(), want) {
		t.Errorf("body %s does not contain %s", rec.Body, want)
	}
	if h.Requests() != 1 {
		t.Errorf("Requests() = %d, want 1", h.Requests())
	}
}

func TestFailures(t *testing.T) {
	s := start(t)
	wrongSecret := "Basic " + base64.StdEncoding.EncodeToString([]byte(sandbox.APIKey+":wrong-secret-123"))
	const unauthenticated = `{"status": "401", "code": "user_unauthenticated", "title": "Authentication Required", "detail": "Valid authentication credentials must be provided"}`
	const routeNotFound = `{"status": "404", "title": "Not Found", "detail": "The requested resource does not exist."}`
	const version = "/ccpm/v1/plugins/ccp-12345/versions/ver-12345"
	const plugin = "/connect/v1/custom-connector-plugins/ccp-12345"
	tests := []struct {
		name        string
		method      string
		path        string
		auth        string
		wantStatus  int
		wantHeaders map[string]string
		want        string // the single error without its random id; "" for HEAD
	}{
		// 401: authentication is checked before anything else.
		{"no credentials", "GET", plugin, "", 401, map[string]string{"WWW-Authenticate": `Basic error="invalid_key", error_description="The API Key is invalid"`}, unauthenticated},
		{"wrong secret", "GET", plugin, wrongSecret, 401, map[string]string{"WWW-Authenticate": `Basic error="invalid_key", error_description="The API Key is invalid"`}, unauthenticated},
		{"wrong key", "GET", plugin, "Basic " + base64.StdEncoding.EncodeToString([]byte("OTHERKEY:"+sandbox.APISecret)), 401, nil, unauthenticated},
		{"key with different case", "GET", plugin, "Basic " + base64.StdEncoding.EncodeToString([]byte("sandboxkey:"+sandbox.APISecret)), 401, nil, unauthenticated},
		{"malformed basic", "GET", plugin, "Basic not-base64!!", 401, nil, unauthenticated},
		{"basic without colon", "GET", plugin, "Basic " + base64.StdEncoding.EncodeToString([]byte(sandbox.APIKey)), 401, nil, unauthenticated},
		{"wrong bearer token", "GET", plugin, "Bearer wrong-token-456", 401, nil, unauthenticated},
		{"bearer carrying the API secret", "GET", plugin, "Bearer " + sandbox.APISecret, 401, nil, unauthenticated},
		{"empty bearer", "GET", plugin, "Bearer", 401, nil, unauthenticated},
		{"unknown scheme", "GET", plugin, "Token " + sandbox.BearerToken, 401, nil, unauthenticated},
		{"bare token", "GET", plugin, sandbox.BearerToken, 401, nil, unauthenticated},
		{"unauthenticated unknown route", "GET", "/nowhere", "", 401, nil, unauthenticated},
		{"unauthenticated wrong method", "POST", plugin, "", 401, nil, unauthenticated},

		// 400
		{"missing environment", "GET", version, basicAuth, 400, nil,
			`{"status": "400", "code": "invalid_input", "title": "Bad Request", "detail": "The query parameter 'environment' is required.", "source": {"parameter": "environment"}}`},
		{"empty environment", "GET", version + "?environment=", basicAuth, 400, nil,
			`{"status": "400", "code": "invalid_input", "title": "Bad Request", "detail": "The query parameter 'environment' is required.", "source": {"parameter": "environment"}}`},

		// 403
		{"forbidden environment", "GET", version + "?environment=env-forbidden", basicAuth, 403, nil,
			`{"status": "403", "code": "user_unauthorized", "title": "User Access Unauthorized", "detail": "The credentials are not allowed to access the 'custom-connect-plugin-version' resource in environment 'env-forbidden'."}`},
		{"forbidden environment, unknown version", "GET", "/ccpm/v1/plugins/ccp-1/versions/ver-1?environment=env-forbidden", bearerAuth, 403, nil,
			`{"status": "403", "code": "user_unauthorized", "title": "User Access Unauthorized", "detail": "The credentials are not allowed to access the 'custom-connect-plugin-version' resource in environment 'env-forbidden'."}`},

		// 404 on the version route
		{"unknown version", "GET", "/ccpm/v1/plugins/ccp-12345/versions/ver-99999?environment=env-00000", basicAuth, 404, nil,
			`{"status": "404", "title": "Not Found", "detail": "Custom connect plugin version 'ver-99999' of plugin 'ccp-12345' was not found in environment 'env-00000'."}`},
		{"version of another plugin", "GET", "/ccpm/v1/plugins/ccp-23456/versions/ver-12345?environment=env-00000", basicAuth, 404, nil,
			`{"status": "404", "title": "Not Found", "detail": "Custom connect plugin version 'ver-12345' of plugin 'ccp-23456' was not found in environment 'env-00000'."}`},
		{"version in another environment", "GET", version + "?environment=env-11111", basicAuth, 404, nil,
			`{"status": "404", "title": "Not Found", "detail": "Custom connect plugin 'ccp-12345' was not found in environment 'env-11111'."}`},
		{"unknown plugin", "GET", "/ccpm/v1/plugins/ccp-99999/versions/ver-12345?environment=env-00000", basicAuth, 404, nil,
			`{"status": "404", "title": "Not Found", "detail": "Custom connect plugin 'ccp-99999' was not found in environment 'env-00000'."}`},
		{"escaped slash in version id", "GET", "/ccpm/v1/plugins/ccp-12345/versions/ver-12345%2Fx?environment=env-00000", basicAuth, 404, nil,
			`{"status": "404", "title": "Not Found", "detail": "Custom connect plugin version 'ver-12345/x' of plugin 'ccp-12345' was not found in environment 'env-00000'."}`},
		{"escaped slashes hiding the version route", "GET", "/ccpm/v1/plugins/ccp-12345%2Fversions%2Fver-12345?environment=env-00000", basicAuth, 404, nil, routeNotFound},
		{"versions collection", "GET", "/ccpm/v1/plugins/ccp-12345/versions?environment=env-00000", basicAuth, 404, nil, routeNotFound},
		{"versions collection with slash", "GET", "/ccpm/v1/plugins/ccp-12345/versions/?environment=env-00000", basicAuth, 404, nil, routeNotFound},

		// 404 on the plugin route
		{"unknown connector plugin", "GET", "/connect/v1/custom-connector-plugins/ccp-99999", basicAuth, 404, nil,
			`{"status": "404", "title": "Not Found", "detail": "Custom connector plugin 'ccp-99999' was not found."}`},
		{"escaped slash in plugin id", "GET", "/connect/v1/custom-connector-plugins/ccp-12345%2Fversions", basicAuth, 404, nil,
			`{"status": "404", "title": "Not Found", "detail": "Custom connector plugin 'ccp-12345/versions' was not found."}`},
		{"trailing slash", "GET", plugin + "/", basicAuth, 404, nil, routeNotFound},
		{"plugin collection", "GET", "/connect/v1/custom-connector-plugins", basicAuth, 404, nil, routeNotFound},
		{"plugin collection with slash", "GET", "/connect/v1/custom-connector-plugins/", basicAuth, 404, nil, routeNotFound},
		{"dot-dot segment", "GET", "/connect/v1/custom-connector-plugins/../custom-connector-plugins/ccp-12345", basicAuth, 404, nil, routeNotFound},
		{"double slash", "GET", "/connect/v1//custom-connector-plugins/ccp-12345", basicAuth, 404, nil, routeNotFound},

		// 404 elsewhere
		{"root", "GET", "/", basicAuth, 404, nil, routeNotFound},
		{"environment link", "GET", "/v2/environments/env-00000", bearerAuth, 404, nil, routeNotFound},
		{"unknown route, other method", "POST", "/nowhere", basicAuth, 404, nil, routeNotFound},

		// 405
		{"POST version", "POST", version + "?environment=env-00000", basicAuth, 405, map[string]string{"Allow": "GET"},
			`{"status": "405", "code": "method_not_allowed", "title": "Method Not Allowed", "detail": "The method POST is not allowed on this resource; use GET."}`},
		{"DELETE plugin", "DELETE", plugin, bearerAuth, 405, map[string]string{"Allow": "GET"},
			`{"status": "405", "code": "method_not_allowed", "title": "Method Not Allowed", "detail": "The method DELETE is not allowed on this resource; use GET."}`},
		{"PATCH unknown plugin", "PATCH", "/connect/v1/custom-connector-plugins/ccp-99999", basicAuth, 405, map[string]string{"Allow": "GET"},
			`{"status": "405", "code": "method_not_allowed", "title": "Method Not Allowed", "detail": "The method PATCH is not allowed on this resource; use GET."}`},
		{"HEAD plugin", "HEAD", plugin, basicAuth, 405, map[string]string{"Allow": "GET"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := do(t, s.URL(), tt.method, tt.path, tt.auth)
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status = %d, want %d; body %s", resp.StatusCode, tt.wantStatus, body)
			}
			assertCommonHeaders(t, resp)
			for k, v := range tt.wantHeaders {
				if got := resp.Header.Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
			if tt.wantStatus == 401 && resp.Header.Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
			if tt.wantStatus != 401 && resp.Header.Get("WWW-Authenticate") != "" {
				t.Errorf("unexpected WWW-Authenticate on %d", tt.wantStatus)
			}
			if tt.auth != "" && tt.wantStatus == 401 {
				assertNotEchoed(t, resp, body, tt.auth)
			}
			if tt.want == "" {
				return
			}
			var f struct {
				Errors []map[string]any `json:"errors"`
			}
			if err := json.Unmarshal(body, &f); err != nil {
				t.Fatalf("not a Failure: %v\n%s", err, body)
			}
			if len(f.Errors) != 1 {
				t.Fatalf("got %d errors, want 1: %s", len(f.Errors), body)
			}
			id, _ := f.Errors[0]["id"].(string)
			if !uuidRE.MatchString(id) {
				t.Errorf("error id = %q, want a UUID", id)
			}
			delete(f.Errors[0], "id")
			got, _ := json.Marshal(f.Errors[0])
			assertJSON(t, got, tt.want)
		})
	}
}

// assertNotEchoed fails if any part of the sent Authorization header shows
// up in the response.
func assertNotEchoed(t *testing.T, resp *http.Response, body []byte, authorization string) {
	t.Helper()
	parts := []string{authorization}
	if _, cred, ok := strings.Cut(authorization, " "); ok && cred != "" {
		parts = append(parts, cred)
		if dec, err := base64.StdEncoding.DecodeString(cred); err == nil {
			user, pass, _ := strings.Cut(string(dec), ":")
			parts = append(parts, user, pass)
		}
	}
	var headers strings.Builder
	_ = resp.Header.Write(&headers)
	for _, p := range parts {
		if len(p) < 6 {
			continue // too short to be meaningful, e.g. "Basic"
		}
		if strings.Contains(string(body), p) || strings.Contains(headers.String(), p) {
			t.Errorf("response echoes the credential part %q", p)
		}
	}
}

func TestAuthSchemesAccepted(t *testing.T) {
	s := start(t)
	enc := base64.StdEncoding.EncodeToString([]byte(sandbox.APIKey + ":" + sandbox.APISecret))
	for _, auth := range []string{
		"Basic " + enc,
		"basic " + enc,
		"Bearer " + sandbox.BearerToken,
		"bearer " + sandbox.BearerToken,
	} {
		resp, body := do(t, s.URL(), http.MethodGet, "/connect/v1/custom-connector-plugins/"+sandbox.PluginID, auth)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("Authorization %q: status %d, body %s", auth, resp.StatusCode, body)
		}
	}
}

func TestRequestIDsAreUnique(t *testing.T) {
	s := start(t)
	seen := map[string]bool{}
	errorIDs := map[string]bool{}
	for i := range 30 {
		auth := basicAuth
		path := "/connect/v1/custom-connector-plugins/" + sandbox.PluginID
		switch i % 3 {
		case 1:
			auth = ""
		case 2:
			path = "/connect/v1/custom-connector-plugins/ccp-missing"
		}
		resp, body := do(t, s.URL(), http.MethodGet, path, auth)
		id := resp.Header.Get("X-Request-Id")
		if !uuidRE.MatchString(id) {
			t.Fatalf("X-Request-Id = %q", id)
		}
		if seen[id] {
			t.Fatalf("X-Request-Id %s repeated", id)
		}
		seen[id] = true
		if resp.StatusCode != http.StatusOK {
			var f struct{ Errors []struct{ ID string } }
			if err := json.Unmarshal(body, &f); err != nil || len(f.Errors) != 1 {
				t.Fatalf("bad failure body %s", body)
			}
			if errorIDs[f.Errors[0].ID] || f.Errors[0].ID == id {
				t.Fatalf("error id %s repeated", f.Errors[0].ID)
			}
			errorIDs[f.Errors[0].ID] = true
		}
	}
}

func rateHeaders(resp *http.Response) [3]string {
	return [3]string{
		resp.Header.Get("X-RateLimit-Limit"),
		resp.Header.Get("X-RateLimit-Remaining"),
		resp.Header.Get("X-RateLimit-Reset"),
	}
}

func TestRateLimit(t *testing.T) {
	clock := &fakeClock{t: time.Date(2025, 5, 1, 12, 0, 0, 0, time.UTC)}
	s := start(t, sandbox.WithRateLimit(3, 10*time.Second), sandbox.WithClock(clock.Now))
	const ok = "/connect/v1/custom-connector-plugins/" + sandbox.PluginID
	const missing = "/connect/v1/custom-connector-plugins/ccp-missing"

	steps := []struct {
		name           string
		advance        time.Duration // before the request
		path, auth     string
		wantStatus     int
		wantRate       [3]string // limit, remaining, reset
		wantRetryAfter string
	}{
		{"first request opens the window", 0, ok, basicAuth, 200, [3]string{"3", "2", "10"}, ""},
		{"reset rounds up", 2500 * time.Millisecond, ok, bearerAuth, 200, [3]string{"3", "1", "8"}, ""},
		{"unauthenticated requests do not count", 0, ok, "", 401, [3]string{"3", "1", "8"}, ""},
		{"errors count", 0, missing, basicAuth, 404, [3]string{"3", "0", "8"}, ""},
		{"limit reached", time.Second, ok, basicAuth, 429, [3]string{"3", "0", "7"}, "7"},
		{"still limited, reset never below 1", 6400 * time.Millisecond, ok, basicAuth, 429, [3]string{"3", "0", "1"}, "1"},
		{"unauthenticated while limited", 0, ok, "", 401, [3]string{"3", "0", "1"}, ""},
		{"window over", 100 * time.Millisecond, ok, basicAuth, 200, [3]string{"3", "2", "10"}, ""},
		{"unauthenticated after expiry sees a full window", 20 * time.Second, ok, "", 401, [3]string{"3", "3", "10"}, ""},
	}
	for _, st := range steps {
		clock.Advance(st.advance)
		resp, body := do(t, s.URL(), http.MethodGet, st.path, st.auth)
		if resp.StatusCode != st.wantStatus {
			t.Fatalf("%s: status = %d, want %d; body %s", st.name, resp.StatusCode, st.wantStatus, body)
		}
		if got := rateHeaders(resp); got != st.wantRate {
			t.Errorf("%s: X-RateLimit-{Limit,Remaining,Reset} = %q, want %q", st.name, got, st.wantRate)
		}
		if got := resp.Header.Get("Retry-After"); got != st.wantRetryAfter {
			t.Errorf("%s: Retry-After = %q, want %q", st.name, got, st.wantRetryAfter)
		}
		if st.wantStatus == 429 {
			assertCommonHeaders(t, resp)
			var f struct{ Errors []map[string]any }
			if err := json.Unmarshal(body, &f); err != nil || len(f.Errors) != 1 {
				t.Fatalf("%s: bad failure body %s", st.name, body)
			}
			delete(f.Errors[0], "id")
			got, _ := json.Marshal(f.Errors[0])
			assertJSON(t, got, `{"status": "429", "code": "too_many_requests", "title": "Too Many Requests",
				"detail": "The rate limit of 3 requests per 10s has been exceeded; retry after `+st.wantRetryAfter+` seconds."}`)
		}
	}
}

func TestRateLimitDefaults(t *testing.T) {
	clock := &fakeClock{t: time.Date(2025, 5, 1, 12, 0, 0, 0, time.UTC)}
	s := start(t, sandbox.WithClock(clock.Now))
	resp, _ := do(t, s.URL(), http.MethodGet, "/connect/v1/custom-connector-plugins/"+sandbox.PluginID, basicAuth)
	if got, want := rateHeaders(resp), [3]string{"1000", "999", "60"}; got != want {
		t.Errorf("X-RateLimit-{Limit,Remaining,Reset} = %q, want %q", got, want)
	}
}

func TestRateLimitDisabled(t *testing.T) {
	s := start(t, sandbox.WithRateLimit(0, time.Second))
	for i := range 5 {
		for _, auth := range []string{basicAuth, ""} {
			resp, _ := do(t, s.URL(), http.MethodGet, "/connect/v1/custom-connector-plugins/"+sandbox.PluginID, auth)
			if resp.StatusCode == http.StatusTooManyRequests {
				t.Fatalf("request %d limited while limiting is disabled", i)
			}
			for _, h := range []string{"X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset", "Retry-After"} {
				if v := resp.Header.Get(h); v != "" {
					t.Errorf("%s = %q while limiting is disabled", h, v)
				}
			}
		}
	}
}

func TestRateLimitConcurrent(t *testing.T) {
	const limit, clients = 25, 60
	s := start(t, sandbox.WithRateLimit(limit, time.Hour))
	var wg sync.WaitGroup
	statuses := make(chan int, clients)
	remaining := make(chan string, clients)
	for range clients {
		wg.Go(func() {
			resp, _ := do(t, s.URL(), http.MethodGet, "/connect/v1/custom-connector-plugins/"+sandbox.PluginID, bearerAuth)
			statuses <- resp.StatusCode
			if resp.StatusCode == http.StatusOK {
				remaining <- resp.Header.Get("X-RateLimit-Remaining")
			}
		})
	}
	wg.Wait()
	close(statuses)
	close(remaining)
	counts := map[int]int{}
	for st := range statuses {
		counts[st]++
	}
	if counts[200] != limit || counts[429] != clients-limit {
		t.Errorf("statuses = %v, want %d×200 and %d×429", counts, limit, clients-limit)
	}
	// Each admitted request saw a distinct remaining count: no lost updates.
	seen := map[string]bool{}
	for r := range remaining {
		if seen[r] {
			t.Errorf("X-RateLimit-Remaining %s seen twice", r)
		}
		seen[r] = true
	}
}

func TestRequestsCountsEverything(t *testing.T) {
	s := start(t)
	if got := s.Requests(); got != 0 {
		t.Fatalf("Requests() before any call = %d", got)
	}
	calls := []struct{ method, path, auth string }{
		{"GET", "/connect/v1/custom-connector-plugins/" + sandbox.PluginID, basicAuth}, // 200
		{"GET", "/connect/v1/custom-connector-plugins/" + sandbox.PluginID, ""},        // 401
		{"GET", "/nowhere", basicAuth},                                                 // 404
		{"PUT", "/connect/v1/custom-connector-plugins/" + sandbox.PluginID, basicAuth}, // 405
		{"GET", "/ccpm/v1/plugins/ccp-12345/versions/ver-12345", basicAuth},            // 400
		{"GET", "/connect/v1//x", basicAuth},                                           // 404, unclean
	}
	for i, c := range calls {
		do(t, s.URL(), c.method, c.path, c.auth)
		if got, want := s.Requests(), int64(i+1); got != want {
			t.Fatalf("after %s %s: Requests() = %d, want %d", c.method, c.path, got, want)
		}
	}

	// "OPTIONS *" is answered by net/http itself unless disabled; it must
	// still reach the sandbox and be counted.
	conn, err := net.Dial("tcp", strings.TrimPrefix(s.URL(), "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "OPTIONS * HTTP/1.1\r\nHost: sandbox\r\nConnection: close\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("OPTIONS *: status %d, want 401", resp.StatusCode)
	}
	if got, want := s.Requests(), int64(len(calls)+1); got != want {
		t.Errorf("after OPTIONS *: Requests() = %d, want %d", got, want)
	}
}

func TestClose(t *testing.T) {
	s, err := sandbox.Start()
	if err != nil {
		t.Fatal(err)
	}
	url := s.URL()
	if !regexp.MustCompile(`^http://127\.0\.0\.1:\d+$`).MatchString(url) {
		t.Fatalf("URL() = %q", url)
	}
	do(t, url, http.MethodGet, "/connect/v1/custom-connector-plugins/"+sandbox.PluginID, basicAuth)

	// A connection that never sends a request (as a pooled client leaves
	// behind after parallel dials) must not hold Close up.
	idle, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	began := time.Now()
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if took := time.Since(began); took > time.Second {
		t.Errorf("Close took %v with an idle connection open", took)
	}
	client := &http.Client{Timeout: 2 * time.Second}
	if resp, err := client.Get(url + "/"); err == nil {
		resp.Body.Close()
		t.Fatalf("server still answers after Close: %d", resp.StatusCode)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if got := s.Requests(); got != 1 {
		t.Errorf("Requests() = %d, want 1", got)
	}
}

func TestNotStarted(t *testing.T) {
	s := sandbox.New()
	if got := s.URL(); got != "" {
		t.Errorf("URL() of a Server built with New = %q, want empty", got)
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close of a Server built with New: %v", err)
	}
}

func TestStartIsIndependent(t *testing.T) {
	// No shared state: two servers keep separate counters and quotas.
	a := start(t, sandbox.WithRateLimit(1, time.Hour))
	b := start(t, sandbox.WithRateLimit(1, time.Hour))
	path := "/connect/v1/custom-connector-plugins/" + sandbox.PluginID
	if resp, _ := do(t, a.URL(), http.MethodGet, path, basicAuth); resp.StatusCode != 200 {
		t.Fatalf("a: status %d", resp.StatusCode)
	}
	if resp, _ := do(t, b.URL(), http.MethodGet, path, basicAuth); resp.StatusCode != 200 {
		t.Fatalf("b: status %d, quota leaked between servers", resp.StatusCode)
	}
	if a.Requests() != 1 || b.Requests() != 1 {
		t.Errorf("Requests() = %d, %d, want 1, 1", a.Requests(), b.Requests())
	}
}
