package caller

import (
	"strings"
	"testing"

	pluginv1 "github.com/acme/plugin-facade/gen/go/confluent/plugin/v1"
)

// TestParsePolicy: a file that is wrong says so with its line.
func TestParsePolicy(t *testing.T) {
	tests := []struct {
		name, file, wantErr string
	}{
		{"a good file", `
callers:
  - name: a
    match: ["spiffe://acme/ns/a/sa/*", "jwt:system:serviceaccount:a:*"]
    rate: 60/1m
    allow:
      GetPluginVersion: {environments: [env-1*], plugins: ["ccp-*"]}
      GetConnectorPlugin:
      WatchPluginVersion: {}
`, ""},
		{"deny everything", "callers: []\n", ""},
		{"empty file", "", "no callers: key"},
		{"unknown top-level key", "callers: []\ncolour: blue\n", "p.yaml: line 2: unknown key colour"},
		{"unknown rule key", "callers:\n  - name: a\n    match: [x]\n    colour: blue\n", "line 4: unknown key colour"},
		{"unknown access key", "callers:\n  - name: a\n    match: [x]\n    allow:\n      GetConnectorPlugin: {environment: [x]}\n", "line 5: unknown key environment"},
		{"duplicate caller", "callers:\n  - name: a\n    match: [x]\n  - name: a\n    match: [y]\n", `p.yaml:4: caller "a" is already defined at line 2`},
		{"bad glob", "callers:\n  - name: a\n    match:\n      - ok\n      - \"ip:10.[\"\n", `p.yaml:5: caller "a": match "ip:10.[": bad glob`},
		{"bad environment glob", "callers:\n  - name: a\n    match: [x]\n    allow:\n      GetPluginVersion:\n        environments:\n          - \"[\"\n", `p.yaml:7: caller "a": GetPluginVersion environments "[": bad glob`},
		{"no name", "callers:\n  - match: [x]\n", "p.yaml:2: a caller needs a name"},
		{"no match", "callers:\n  - name: a\n", `p.yaml:2: caller "a" matches no identity`},
		{"bad rate", "callers:\n  - name: a\n    match: [x]\n    rate: lots\n", `p.yaml:4: caller "a": rate "lots"`},
		{"unknown method", "callers:\n  - name: a\n    match: [x]\n    allow:\n      DeletePlugin: {}\n", `p.yaml:5: caller "a": unknown method "DeletePlugin"`},
		{"environments of a method without one", "callers:\n  - name: a\n    match: [x]\n    allow:\n      GetConnectorPlugin: {environments: [x]}\n", "p.yaml:5: caller \"a\": GetConnectorPlugin has no environment"},
		{"not YAML", "callers: [\n", "p.yaml: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParsePolicy("p.yaml", []byte(tt.file))
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

// TestPolicyDecide: the first matching rule decides; what it does not list
// is denied.
func TestPolicyDecide(t *testing.T) {
	p, err := ParsePolicy("p.yaml", []byte(`
callers:
  - name: mesh-a
    match: ["spiffe://acme/ns/a/sa/*"]
    allow:
      GetConnectorPlugin: {plugins: [ccp-1*]}
  - name: everyone-in-ns-a
    match: ["spiffe://acme/ns/a/sa/*", "jwt:system:serviceaccount:a:*"]
    allow:
      GetPluginVersion: {}
`))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		id, method, wantRule, wantReason string
	}{
		{"spiffe://acme/ns/a/sa/web", "GetConnectorPlugin", "mesh-a", ""},
		{"spiffe://acme/ns/a/sa/web", "GetPluginVersion", "mesh-a", ReasonMethodDenied}, // first match decides
		{"jwt:system:serviceaccount:a:web", "GetPluginVersion", "everyone-in-ns-a", ""},
		{"spiffe://acme/ns/a/sa/web/extra", "GetConnectorPlugin", "", ReasonCallerUnknown}, // * stops at /
		{"ip:10.0.0.1", "GetConnectorPlugin", "", ReasonCallerUnknown},
		{"ip:10.0.0.1", "Health", "", ""},
	}
	for _, tt := range tests {
		r := p.match(Identity{Name: tt.id})
		name := ""
		if r != nil {
			name = r.name
		}
		var req any
		if tt.method == "GetConnectorPlugin" {
			req = &pluginv1.GetConnectorPluginRequest{Id: "ccp-12345"}
		}
		d := p.decide(r, tt.method, req)
		if name != tt.wantRule || d.reason != tt.wantReason {
			t.Errorf("%s %s: rule %q reason %q, want %q %q", tt.id, tt.method, name, d.reason, tt.wantRule, tt.wantReason)
		}
	}
}
