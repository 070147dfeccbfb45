package sandbox_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/acme/plugin-facade/internal/sandbox"
)

func TestSyntheticIDs(t *testing.T) {
	s := start(t, sandbox.WithSyntheticIDs())
	base := s.URL()

	resp, body := do(t, base, http.MethodGet, "/connect/v1/custom-connector-plugins/ccp-load-42", basicAuth)
	var p struct {
		ID, Kind string
		Metadata struct {
			Self         string
			ResourceName string `json:"resource_name"`
		}
	}
	if err := json.Unmarshal(body, &p); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("got %d %s", resp.StatusCode, body)
	}
	if p.ID != "ccp-load-42" || p.Kind != "CustomConnectorPlugin" || p.Metadata.Self != base+"/connect/v1/custom-connector-plugins/ccp-load-42" ||
		!strings.HasSuffix(p.Metadata.ResourceName, "/custom-connector-plugin=ccp-load-42") {
		t.Errorf("plugin = %+v, want a copy of %s under id ccp-load-42", p, sandbox.PluginID)
	}

	resp, body = do(t, base, http.MethodGet, "/ccpm/v1/plugins/ccp-load-7/versions/ver-load-8?environment=env-00000", basicAuth)
	var v struct {
		ID       string
		Metadata struct {
			Self         string
			ResourceName string `json:"resource_name"`
		}
		Spec struct{ Version string }
	}
	if err := json.Unmarshal(body, &v); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("got %d %s", resp.StatusCode, body)
	}
	if v.ID != "ver-load-8" || v.Spec.Version != "0.6.5" ||
		v.Metadata.Self != base+"/ccpm/v1/plugins/ccp-load-7/versions/ver-load-8?environment=env-00000" ||
		!strings.HasSuffix(v.Metadata.ResourceName, "/custom-connect-plugin=ccp-load-7/version=ver-load-8") {
		t.Errorf("version = %+v, want a copy of %s under id ver-load-8 of ccp-load-7", v, sandbox.VersionID)
	}

	for _, tt := range []struct{ id, phase string }{{"ver-load-9", "READY"}, {"ver-pending-9", "PROCESSING"}} {
		resp, body = do(t, base, http.MethodGet, "/ccpm/v1/plugins/ccp-load-7/versions/"+tt.id+"?environment=env-00000", basicAuth)
		var w struct {
			ID     string
			Status struct{ Phase string }
		}
		if err := json.Unmarshal(body, &w); err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: got %d %s", tt.id, resp.StatusCode, body)
		}
		if w.ID != tt.id || w.Status.Phase != tt.phase {
			t.Errorf("%s = %+v, want phase %s", tt.id, w, tt.phase)
		}
	}
}

func TestSyntheticIDsAreOffByDefaultAndStrict(t *testing.T) {
	plain := start(t)
	synthetic := start(t, sandbox.WithSyntheticIDs())
	tests := []struct {
		name string
		base string
		path string
	}{
		{"off by default", plain.URL(), "/connect/v1/custom-connector-plugins/ccp-load-1"},
		{"off by default, version", plain.URL(), "/ccpm/v1/plugins/ccp-load-1/versions/ver-load-1?environment=env-00000"},
		{"no digits", synthetic.URL(), "/connect/v1/custom-connector-plugins/ccp-load-"},
		{"not digits", synthetic.URL(), "/connect/v1/custom-connector-plugins/ccp-load-1a"},
		{"another environment", synthetic.URL(), "/ccpm/v1/plugins/ccp-load-1/versions/ver-load-1?environment=env-11111"},
		{"seeded plugin, synthetic version", synthetic.URL(), "/ccpm/v1/plugins/ccp-12345/versions/ver-load-1?environment=env-00000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if resp, body := do(t, tt.base, http.MethodGet, tt.path, basicAuth); resp.StatusCode != http.StatusNotFound {
				t.Errorf("got %d %s, want 404", resp.StatusCode, body)
			}
		})
	}
	// Seeded resources are unchanged.
	if resp, _ := do(t, synthetic.URL(), http.MethodGet, pluginPath, basicAuth); resp.StatusCode != http.StatusOK {
		t.Errorf("seeded plugin: %d", resp.StatusCode)
	}
}
