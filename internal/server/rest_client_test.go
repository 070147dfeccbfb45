package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"strconv"
	"testing"

	"github.com/acme/plugin-facade/internal/ccloudapi"
	"github.com/acme/plugin-facade/internal/sandbox"
	"github.com/acme/plugin-facade/internal/service"
	"github.com/acme/plugin-facade/internal/upstream/upstreamtest"
)

// TestUpstreamClientWorksThroughTheGateway points a client generated from
// nothing but Confluent Cloud's OpenAPI (internal/ccloudapi) at the sandbox,
// then at the gateway in front of it, as `make run` runs them: it reads every
// seeded resource the same through both, and decodes every error, the
// upstream's and the facade's own, into its Failure type.
func TestUpstreamClientWorksThroughTheGateway(t *testing.T) {
	s := startStack(t, []service.Option{service.WithDefaultCredentials(sandboxKey)})
	bearer := func(token string) ccloudapi.ClientOption {
		return ccloudapi.WithRequestEditorFn(func(_ context.Context, r *http.Request) error {
			r.Header.Set("Authorization", "Bearer "+token)
			return nil
		})
	}
	client := func(url string, opts ...ccloudapi.ClientOption) *ccloudapi.ClientWithResponses {
		c, err := ccloudapi.NewClientWithResponses(url, opts...)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	direct := client(s.sandbox.URL(), bearer(sandbox.BearerToken))
	gateway := client(s.httpURL)

	type read func(c *ccloudapi.ClientWithResponses) (status int, resource any, parsed any, err error)
	plugin := func(id string) read {
		return func(c *ccloudapi.ClientWithResponses) (int, any, any, error) {
			r, err := c.GetConnectV1CustomConnectorPluginWithResponse(t.Context(), id)
			if err != nil {
				return 0, nil, nil, err
			}
			return r.StatusCode(), r.JSON200, r, nil
		}
	}
	version := func(pluginID, id, env string) read {
		return func(c *ccloudapi.ClientWithResponses) (int, any, any, error) {
			r, err := c.GetCcpmV1CustomConnectPluginVersionWithResponse(t.Context(), pluginID, id,
				&ccloudapi.GetCcpmV1CustomConnectPluginVersionParams{Environment: env})
			if err != nil {
				return 0, nil, nil, err
			}
			return r.StatusCode(), r.JSON200, r, nil
		}
	}

	t.Run("every seeded resource", func(t *testing.T) {
		reads := map[string]read{}
		for _, id := range []string{sandbox.PluginID, sandbox.FailedPluginID, sandbox.UnknownEnumsPluginID, sandbox.MinimalPluginID} {
			reads["plugin "+id] = plugin(id)
		}
		for _, v := range [][2]string{{sandbox.PluginID, sandbox.VersionID}, {sandbox.PluginID, sandbox.DeletedVersionID},
			{sandbox.FailedPluginID, sandbox.FailedVersionID}, {sandbox.UnknownEnumsPluginID, sandbox.UnknownEnumsVersionID},
			{sandbox.MinimalPluginID, sandbox.MinimalVersionID}, {sandbox.PluginID, sandbox.ProcessingVersionID},
			{sandbox.PluginID, sandbox.FailingVersionID}} {
			reads["version "+v[1]] = version(v[0], v[1], sandbox.Environment)
		}
		for name, read := range reads {
			t.Run(name, func(t *testing.T) {
				wantStatus, want, _, err := read(direct)
				if err != nil || wantStatus != http.StatusOK || reflect.ValueOf(want).IsNil() {
					t.Fatalf("direct: %d %v, %v", wantStatus, want, err)
				}
				gotStatus, got, _, err := read(gateway)
				if err != nil || gotStatus != http.StatusOK || reflect.ValueOf(got).IsNil() {
					t.Fatalf("through the gateway: %d %v, %v", gotStatus, got, err)
				}
				// What the client decoded, written back: the same document.
				w, _ := json.Marshal(want)
				g, _ := json.Marshal(got)
				assertSameJSON(t, w, g)
			})
		}
	})

	noKey := startStack(t, nil)
	canned := func(status int, example string) string {
		return upstreamtest.Start(t, upstreamtest.Response{Status: status, Body: readExample(t, example)}).URL
	}
	// A gateway without retries before the sandbox, for the faults it plays.
	faulty := client(gatewayTo(t, s.sandbox.URL()).httpURL)
	t.Run("every error", func(t *testing.T) {
		tests := []struct {
			name  string
			c     *ccloudapi.ClientWithResponses
			read  read
			want  int
			fault sandbox.FaultKind // the sandbox plays it first
		}{
			{"404 plugin", gateway, plugin("ccp-00000"), 404, 0},
			{"404 version", gateway, version(sandbox.PluginID, "ver-00000", sandbox.Environment), 404, 0},
			{"403", gateway, version(sandbox.PluginID, sandbox.VersionID, sandbox.ForbiddenEnvironment), 403, 0},
			{"401 from the upstream", client(s.httpURL, bearer("not-the-token")), plugin(sandbox.PluginID), 401, 0},
			{"401 of the facade: no credentials", client(noKey.httpURL), plugin(sandbox.PluginID), 401, 0},
			{"400 of the facade: an invalid id", gateway, plugin("ccp 1"), 400, 0},
			{"400 of the facade: no environment", gateway, version(sandbox.PluginID, sandbox.VersionID, ""), 400, 0},
			{"400 from the upstream", client(gatewayTo(t, canned(400, "failure_400.json")).httpURL), plugin(sandbox.PluginID), 400, 0},
			{"500 from the upstream", client(gatewayTo(t, canned(500, "failure_500.json")).httpURL), plugin(sandbox.PluginID), 500, 0},
			{"409 from the upstream", client(gatewayTo(t, upstreamtest.Start(t, upstreamtest.Response{Status: 409,
				Body: `{"errors":[{"status":"409","title":"Conflict"}]}`}).URL).httpURL), plugin(sandbox.PluginID), 409, 0},
			{"429 from the upstream", faulty, plugin(sandbox.PluginID), 429, sandbox.Fault429},
			{"503 from the upstream", faulty, plugin(sandbox.PluginID), 503, sandbox.Fault503},
			{"502 from the upstream: an HTML page", faulty, plugin(sandbox.PluginID), 502, sandbox.FaultHTML502},
			{"502 of the facade: an oversized answer", faulty, plugin(sandbox.PluginID), 502, sandbox.FaultOversized},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				if tt.fault != 0 {
					s.sandbox.Inject(sandbox.Fault{Kind: tt.fault})
				}
				status, _, parsed, err := tt.read(tt.c)
				if err != nil || status != tt.want {
					t.Fatalf("%d, %v; want %d", status, err, tt.want)
				}
				statuses := failureStatuses(t, parsed, status)
				if len(statuses) == 0 {
					t.Fatal("a Failure without errors")
				}
				for _, s := range statuses {
					if s != strconv.Itoa(tt.want) {
						t.Errorf("error status %q, want %d", s, tt.want)
					}
				}
			})
		}
	})
}

// failureStatuses returns the status of each error of the Failure the client
// decoded for an answer of status (its JSON<status> field), failing when it
// decoded none. A status the API pages give no body for (429) or do not list
// (409, 502, 503, 504) has no such field: its body is decoded into the
// client's Failure type of a 400, the same Failure.
func failureStatuses(t *testing.T, parsed any, status int) []string {
	t.Helper()
	r := reflect.ValueOf(parsed).Elem()
	f := r.FieldByName(fmt.Sprintf("JSON%d", status))
	if !f.IsValid() {
		f = reflect.New(r.FieldByName("JSON400").Type().Elem())
		if err := json.Unmarshal(r.FieldByName("Body").Bytes(), f.Interface()); err != nil {
			t.Fatalf("%d: %v", status, err)
		}
	}
	if f.IsNil() {
		t.Fatalf("the client decoded no Failure for %d: %s", status, r.FieldByName("Body").Bytes())
	}
	var out []string
	errs := f.Elem().FieldByName("Errors")
	for i := range errs.Len() {
		if s := errs.Index(i).FieldByName("Status"); !s.IsNil() {
			out = append(out, s.Elem().String())
		}
	}
	return out
}
