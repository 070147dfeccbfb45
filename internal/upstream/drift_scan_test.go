package upstream

import (
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// walked is what inspect found before scanUnknown: body decoded into an any
// and walked; false when it does not decode so (valid JSON may not: a number
// past float64's range), where inspect then found nothing.
func walked(body []byte, tree fieldTree) ([]string, bool) {
	var doc any
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, false
	}
	var unknown []string
	walk(doc, tree, "", &unknown)
	return unknown, true
}

// TestScanUnknownIsWalk: scanning finds what decoding and walking find, in
// the same order.
func TestScanUnknownIsWalk(t *testing.T) {
	version, err := os.ReadFile(filepath.Join("testdata", "plugin_version.json"))
	if err != nil {
		t.Fatal(err)
	}
	plugin, err := os.ReadFile(filepath.Join("testdata", "connector_plugin.json"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		route string
		body  string
		want  []string
	}{
		{"a plugin version as documented", RoutePluginVersion, string(version), nil},
		{"a connector plugin as documented", RouteConnectorPlugin, string(plugin), nil},
		{"unknown members at the top, in name order", RoutePluginVersion,
			`{"zeta": 1, "id": "ver-1", "alpha": {"x": [1, {"y": null}]}, "kind": "CustomConnectPluginVersion"}`, []string{"alpha", "zeta"}},
		{"nested and in lists, once each", RoutePluginVersion,
			`{"spec": {"new_knob": true, "connector_classes": [{"class_name": "a.B", "flavour": "x"}, {"flavour": "y", "extra": []}]}, "status": {"phase": "READY", "why": "\"quoted\""}}`,
			[]string{"spec.connector_classes.flavour", "spec.connector_classes.extra", "spec.new_knob", "status.why"}},
		{"an object where a leaf was expected", RouteConnectorPlugin, `{"id": {"nested": {"deeper": 1}}, "display_name": ["x"]}`, nil},
		{"empty values and white space", RouteConnectorPlugin, " {\n\t\"metadata\" : { } , \"other\" : [ ] , \"x\":\"\"\r}\n", []string{"other", "x"}},
		{"a member named \"\"", RouteConnectorPlugin, `{"": 1}`, []string{""}},
		{"a route without a tree", "unknown route", `{"anything": 1}`, nil},
		{"not an object", RoutePluginVersion, `[{"id": "x", "new": 1}, 3, "s"]`, []string{"new"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tree := knownFields[tt.route]
			got, ok := scanUnknown([]byte(tt.body), tree)
			if !ok {
				t.Fatalf("scanUnknown could not say")
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("scanUnknown = %q, want %q", got, tt.want)
			}
			if w, ok := walked([]byte(tt.body), tree); !ok || !slices.Equal(got, w) {
				t.Errorf("scanUnknown = %q, walk = %q", got, w)
			}
		})
	}
}

// TestScanUnknownDefers: an escaped member name is left to decoding.
func TestScanUnknownDefers(t *testing.T) {
	if _, ok := scanUnknown([]byte(`{"i\u0064": "x"}`), knownFields[RouteConnectorPlugin]); ok {
		t.Error("scanUnknown read an escaped member name as its bytes")
	}
	d := &drift{seen: map[string]bool{}}
	var got []string
	d.hook = func(_, field string) { got = append(got, field) }
	d.log = slog.New(slog.DiscardHandler)
	d.inspect(RouteConnectorPlugin, []byte(`{"i\u0064": "x", "n\u0065w": 1}`))
	if !slices.Equal(got, []string{"new"}) {
		t.Errorf("inspect of escaped names reported %q, want [new]", got)
	}
}

// FuzzScanUnknown: on any valid JSON, scanning never panics, and finds at
// least what walking finds (more only for a member named twice in one
// object, whose first value walking never sees), in walk's order when
// nothing is named twice.
func FuzzScanUnknown(f *testing.F) {
	f.Add([]byte(`{"id": "x", "spec": {"a": [{"b": 1}]}, "zz": 2, "aa": {"c": 3}}`))
	f.Add([]byte(`{"a": 1, "a": {"b": 2}}`))
	f.Add([]byte(`[[], {}, "x\"y", -1.5e3, true, null]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		if !json.Valid(body) {
			return
		}
		for _, route := range []string{RoutePluginVersion, RouteConnectorPlugin} {
			tree := knownFields[route]
			got, ok := scanUnknown(body, tree)
			if !ok {
				continue
			}
			w, ok := walked(body, tree)
			if !ok {
				continue
			}
			for _, p := range w {
				if !slices.Contains(got, p) {
					t.Fatalf("%s: scanUnknown = %q lacks %q of walk's %q", body, got, p, w)
				}
			}
		}
	})
}

// BenchmarkInspect is what looking for unknown fields costs per answer. Run:
// go test -run '^$' -bench Inspect -benchmem ./internal/upstream/
func BenchmarkInspect(b *testing.B) {
	body, err := os.ReadFile(filepath.Join("testdata", "plugin_version.json"))
	if err != nil {
		b.Fatal(err)
	}
	d := &drift{seen: map[string]bool{}, log: slog.New(slog.DiscardHandler)}
	b.Run("scan", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			d.inspect(RoutePluginVersion, body)
		}
	})
	b.Run("decode+walk", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var doc any
			if json.Unmarshal(body, &doc) != nil {
				b.Fatal("invalid")
			}
			var unknown []string
			walk(doc, knownFields[RoutePluginVersion], "", &unknown)
		}
	})
}
