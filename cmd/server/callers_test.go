package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/acme/plugin-facade/internal/caller"
)

// TestCallerConfig: the caller flags, and a bad policy file stopping
// start-up with exit status 2 and the line at fault.
func TestCallerConfig(t *testing.T) {
	dir := t.TempDir()
	good, bad := filepath.Join(dir, "good.yaml"), filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(good, []byte("callers:\n  - name: a\n    match: [\"ip:10.*\"]\n    allow: {GetConnectorPlugin: {}}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte("callers:\n  - name: a\n    match: [\"ip:10.[\"]\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	c, err := parseConfig([]string{"--no-default-credentials", "--caller-policy", good, "--caller-share", "0.5", "--trusted-proxies", "10.0.0.0/8, 192.168.1.7/32",
		"--oidc-issuer", "https://kubernetes.default.svc", "--oidc-audience", "plugin-facade"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := caller.Config{Share: 0.5, PolicyFile: good, PolicyCheck: caller.DefaultPolicyCheck, OIDCIssuer: "https://kubernetes.default.svc",
		OIDCAudience: "plugin-facade", TrustedProxies: "10.0.0.0/8, 192.168.1.7/32"}
	if c.Callers != want {
		t.Errorf("config = %+v, want %+v", c.Callers, want)
	}

	for _, tt := range []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"a bad policy names its line", []string{"--caller-policy", bad}, "--caller-policy: " + bad + ":3: caller \"a\": match \"ip:10.[\": bad glob"},
		{"a missing policy", []string{"--caller-policy", filepath.Join(dir, "none.yaml")}, "--caller-policy: open"},
		{"a bad policy check interval", []string{"--caller-policy-check", "0"}, "--caller-policy-check: must be positive"},
		{"share above 1", []string{"--caller-share", "1.5"}, "--caller-share: must be more than 0 and at most 1"},
		{"share of 0", []string{"--caller-share", "0"}, "--caller-share: must be more than 0"},
		{"issuer without audience", []string{"--oidc-issuer", "https://issuer"}, "--oidc-issuer: and the OIDC audience go together"},
		{"a proxy that is no range", []string{"--trusted-proxies", "10.0.0.1"}, `--trusted-proxies: "10.0.0.1" is not a CIDR range`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseConfig(append([]string{"--no-default-credentials"}, tt.args...), nil)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
			}
		})
	}

	t.Run("exit status 2", func(t *testing.T) {
		err := run(context.Background(), []string{"--no-default-credentials", "--caller-policy", bad}, nil, io.Discard, io.Discard)
		if code := exitCode(err); code != 2 || !strings.Contains(err.Error(), bad+":3:") {
			t.Errorf("run = %v, exit %d; want exit 2 naming line 3", err, code)
		}
	})
}
