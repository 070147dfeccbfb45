// Package ccloudapi holds Confluent Cloud's own OpenAPI description of the two
// endpoints the facade fronts, and a client generated from it with nothing
// but that description (oapi-codegen), so that tests can prove that a client
// of the upstream works unchanged against the facade's REST gateway. It is
// for tests only: the facade itself never imports it.
//
// The description comes from the API pages in ../shared/upstream-api, each of
// which ends with its operation's OpenAPI YAML:
//
//   - testdata/<page>.yaml is that YAML, extracted verbatim (Extract);
//     TestPagesMatchShared proves it still matches the pages when they are
//     there;
//   - openapi.yaml is one OpenAPI 3.0 document assembled from them
//     (Assemble); TestSpecIsAssembledFromPages proves it is current;
//   - client.gen.go is oapi-codegen's client for openapi.yaml.
//
// `make generate` rebuilds all three (go run ./internal/ccloudapi/assemble,
// then oapi-codegen).
package ccloudapi

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"

	"go.yaml.in/yaml/v3"
)

// Spec is openapi.yaml: Confluent Cloud's description of the two endpoints.
//
//go:embed openapi.yaml
var Spec []byte

// pageMarker is the line of an API page after which its OpenAPI YAML runs
// to the end of the page.
const pageMarker = "OpenAPI definition (YAML)\n"

// Extract returns the OpenAPI YAML of an API page, as the page has it.
func Extract(page []byte) ([]byte, error) {
	_, yml, ok := bytes.Cut(page, []byte(pageMarker))
	if !ok {
		return nil, fmt.Errorf("no %q line", pageMarker[:len(pageMarker)-1])
	}
	return yml, nil
}

// header says where openapi.yaml comes from, and what Assemble changes.
const header = `# Confluent Cloud's OpenAPI description of the endpoints plugin-facade fronts,
# assembled by internal/ccloudapi/assemble from the YAML of their API pages
# (testdata/*.yaml, extracted verbatim from ../shared/upstream-api). DO NOT EDIT.
#
# Besides the pages' paths it only adds what makes them one valid document:
# the openapi version, info, and the security schemes the operations name. One
# fix: a discriminator mapping whose values are inline schemas (the pages'
# upload_source) is invalid OpenAPI 3.0 (a mapping names schemas by reference),
# so it is left out; the oneOf it maps and its propertyName stay.
`

// Assemble makes one OpenAPI 3.0 document of the YAML of API pages: their
// paths, in order, with the security schemes they use.
func Assemble(pages ...[]byte) ([]byte, error) {
	paths := &yaml.Node{Kind: yaml.MappingNode}
	for i, p := range pages {
		var doc yaml.Node
		if err := yaml.Unmarshal(p, &doc); err != nil {
			return nil, fmt.Errorf("page %d: %w", i, err)
		}
		if len(doc.Content) != 1 {
			return nil, fmt.Errorf("page %d: not one YAML document", i)
		}
		pp := value(doc.Content[0], "paths")
		if pp == nil || pp.Kind != yaml.MappingNode {
			return nil, fmt.Errorf("page %d: no paths", i)
		}
		paths.Content = append(paths.Content, pp.Content...)
	}
	dropInlineMappings(paths)
	doc := mapping(
		"openapi", scalar("3.0.3"),
		"info", mapping(
			"title", scalar("Confluent Cloud API: custom connector plugins and their versions"),
			"version", scalar("0.0.1"),
		),
		"servers", &yaml.Node{Kind: yaml.SequenceNode, Content: []*yaml.Node{mapping("url", scalar("https://api.confluent.cloud"))}},
		"paths", paths,
		"components", mapping("securitySchemes", mapping(
			"cloud-api-key", mapping("type", scalar("http"), "scheme", scalar("basic"),
				"description", scalar("A Cloud API key and secret, as HTTP Basic.")),
			"confluent-sts-access-token", mapping("type", scalar("http"), "scheme", scalar("bearer"),
				"description", scalar("A Confluent STS access token.")),
		)),
	)
	var out bytes.Buffer
	out.WriteString(header)
	enc := yaml.NewEncoder(&out)
	enc.SetIndent(2)
	if err := enc.Encode(doc); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// dropInlineMappings removes, under n, every discriminator mapping whose
// values are not schema names or references.
func dropInlineMappings(n *yaml.Node) {
	if n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value != "discriminator" || n.Content[i+1].Kind != yaml.MappingNode {
				continue
			}
			d := n.Content[i+1]
			for j := 0; j+1 < len(d.Content); j += 2 {
				if d.Content[j].Value == "mapping" && !allScalars(d.Content[j+1]) {
					d.Content = append(d.Content[:j], d.Content[j+2:]...)
					break
				}
			}
		}
	}
	for _, c := range n.Content {
		dropInlineMappings(c)
	}
}

func allScalars(m *yaml.Node) bool {
	for i := 1; i < len(m.Content); i += 2 {
		if m.Content[i].Kind != yaml.ScalarNode {
			return false
		}
	}
	return true
}

func value(m *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

func scalar(v string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Value: v} }

// mapping builds a mapping node of alternating keys and values.
func mapping(kv ...any) *yaml.Node {
	m := &yaml.Node{Kind: yaml.MappingNode}
	for i := 0; i+1 < len(kv); i += 2 {
		m.Content = append(m.Content, scalar(kv[i].(string)), kv[i+1].(*yaml.Node))
	}
	return m
}

// ErrNoPages is returned by the assemble command when it finds no page.
var ErrNoPages = errors.New("no API page YAML found")
