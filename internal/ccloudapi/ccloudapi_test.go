package ccloudapi

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// sharedPages is where the upstream's API pages live beside the repository.
const sharedPages = "../../../shared/upstream-api"

func pageYAMLs(t *testing.T) []string {
	t.Helper()
	ymls, err := filepath.Glob("testdata/*.yaml")
	if err != nil || len(ymls) == 0 {
		t.Fatalf("no page YAML in testdata: %v", err)
	}
	slices.Sort(ymls)
	return ymls
}

// TestPagesMatchShared: testdata holds the OpenAPI YAML of every API page in
// ../shared/upstream-api, exactly as the pages have it.
func TestPagesMatchShared(t *testing.T) {
	txts, _ := filepath.Glob(filepath.Join(sharedPages, "*.txt"))
	if len(txts) == 0 {
		t.Skipf("no API pages in %s", sharedPages)
	}
	var want []string
	for _, txt := range txts {
		page, err := os.ReadFile(txt)
		if err != nil {
			t.Fatal(err)
		}
		yml, err := Extract(page)
		if err != nil {
			t.Fatalf("%s: %v", txt, err)
		}
		name := filepath.Join("testdata", strings.TrimSuffix(filepath.Base(txt), ".txt")+".yaml")
		want = append(want, name)
		got, err := os.ReadFile(name)
		if err != nil || !bytes.Equal(got, yml) {
			t.Errorf("%s does not hold the YAML of %s (%v): run 'make generate'", name, txt, err)
		}
	}
	slices.Sort(want)
	if got := pageYAMLs(t); !slices.Equal(got, want) {
		t.Errorf("testdata holds %v, the pages are %v", got, want)
	}
}

// TestSpecIsAssembledFromPages: openapi.yaml is what Assemble makes of the
// page YAML in testdata.
func TestSpecIsAssembledFromPages(t *testing.T) {
	var pages [][]byte
	for _, y := range pageYAMLs(t) {
		b, err := os.ReadFile(y)
		if err != nil {
			t.Fatal(err)
		}
		pages = append(pages, b)
	}
	doc, err := Assemble(pages...)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(doc, Spec) {
		t.Error("openapi.yaml is stale: run 'make generate'")
	}
	if _, err := FoldAllOf(doc); err != nil {
		t.Errorf("the pages' allOfs do not fold: %v", err)
	}
}

func TestFoldAllOf(t *testing.T) {
	tests := []struct {
		name, in, want, wantErr string
	}{
		{
			name: "members merge, required lists join, siblings stay",
			in: `s: {description: outer, allOf: [
  {type: object, readOnly: true, required: [a], properties: {a: {type: string}, m: {type: object, properties: {x: {type: string}}}}},
  {type: object, required: [b, a], properties: {a: {example: ex}, b: {type: integer}, m: {properties: {x: {example: y}}}}}]}`,
			want: `s: {description: outer, type: object, readOnly: true, required: [a, b], properties: {
  a: {type: string, example: ex}, b: {type: integer}, m: {type: object, properties: {x: {type: string, example: y}}}}}`,
		},
		{
			name: "nested allOf",
			in:   `s: {allOf: [{properties: {m: {allOf: [{type: string}, {maxLength: 3}]}}}]}`,
			want: `s: {properties: {m: {type: string, maxLength: 3}}}`,
		},
		{
			name:    "conflicting constraints",
			in:      `s: {allOf: [{type: string}, {type: integer}]}`,
			wantErr: "set type differently",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := FoldAllOf([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("FoldAllOf = %v, want an error with %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var g, w any
			if err := yaml.Unmarshal(got, &g); err != nil {
				t.Fatal(err)
			}
			if err := yaml.Unmarshal([]byte(tt.want), &w); err != nil {
				t.Fatal(err)
			}
			gb, _ := yaml.Marshal(g)
			wb, _ := yaml.Marshal(w)
			if !bytes.Equal(gb, wb) {
				t.Errorf("FoldAllOf =\n%s\nwant\n%s", gb, wb)
			}
		})
	}
}
