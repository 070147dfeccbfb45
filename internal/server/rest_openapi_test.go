package server

import (
	"bufio"
	"bytes"
	"context"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"google.golang.org/protobuf/reflect/protoreflect"

	pluginfacade "github.com/acme/plugin-facade"
	pluginv1 "github.com/acme/plugin-facade/gen/go/confluent/plugin/v1"
	"github.com/acme/plugin-facade/internal/ccloudapi"
)

// The REST gateway's answers are validated by kin-openapi against two
// documents: the facade's own (/openapi.json, api/openapi.json), which must
// describe every answer exactly (every status listed, no property it does
// not declare), and Confluent Cloud's (internal/ccloudapi), which a client
// of the upstream was written against.

// spec is an OpenAPI document ready to validate answers with.
type spec struct {
	doc    *openapi3.T
	router routers.Router
	// base is the server URL requests are routed under.
	base string
}

var (
	specsOnce          sync.Once
	facadeSpec, upSpec *spec
	specsErr           error
)

// specs loads both documents once; ndjson lines are validated one at a time
// against the watch's line schema.
func specs(t testing.TB) (facade, up *spec) {
	t.Helper()
	specsOnce.Do(func() {
		openapi3filter.RegisterBodyDecoder(ndjsonContentType, openapi3filter.JSONBodyDecoder)
		load := func(data []byte, base string) (*spec, error) {
			doc, err := openapi3.NewLoader().LoadFromData(data)
			if err != nil {
				return nil, err
			}
			if err := doc.Validate(context.Background()); err != nil {
				return nil, err
			}
			r, err := gorillamux.NewRouter(doc)
			if err != nil {
				return nil, err
			}
			return &spec{doc: doc, router: r, base: base}, nil
		}
		if facadeSpec, specsErr = load(pluginfacade.OpenAPI(), "http://facade"); specsErr != nil {
			return
		}
		upSpec, specsErr = load(ccloudapi.Spec, "https://api.confluent.cloud")
	})
	if specsErr != nil {
		t.Fatal(specsErr)
	}
	return facadeSpec, upSpec
}

// validate checks answer a to GET path against s: the route, the status,
// the headers it declares, and the body (each line of an ndjson body).
func (s *spec) validate(path string, a restResponse, strict bool) error {
	u, err := url.Parse(s.base + path)
	if err != nil {
		return err
	}
	req := &http.Request{Method: http.MethodGet, URL: u, Header: http.Header{}}
	route, params, err := s.router.FindRoute(req)
	if err != nil {
		return err
	}
	bodies := [][]byte{a.body}
	if a.header.Get("Content-Type") == ndjsonContentType {
		bodies = nil
		for sc := bufio.NewScanner(bytes.NewReader(a.body)); sc.Scan(); {
			bodies = append(bodies, slices.Clone(sc.Bytes()))
		}
	}
	for _, b := range bodies {
		in := &openapi3filter.ResponseValidationInput{
			RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route,
				Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}},
			Status:  a.status,
			Header:  a.header,
			Options: &openapi3filter.Options{IncludeResponseStatus: strict, MultiError: true},
		}
		in.SetBodyBytes(b)
		if err := openapi3filter.ValidateResponse(context.Background(), in); err != nil {
			return err
		}
	}
	return nil
}

// assertDescribed fails unless the gateway's answer got to GET path is what
// the facade's document describes, and, when direct is the upstream's own
// answer, valid against Confluent Cloud's document exactly when direct is
// (the sandbox sends enum values the pages do not list yet: both fail on
// them alike). Without direct, the answer is the facade's own and must be
// valid against Confluent Cloud's document.
func assertDescribed(t testing.TB, path string, got restResponse, direct *restResponse) {
	t.Helper()
	facade, up := specs(t)
	if err := facade.validate(path, got, true); err != nil {
		t.Errorf("the answer is not what /openapi.json describes: %v\n%d %s", err, got.status, got.body)
	}
	if strings.HasSuffix(strings.SplitN(path, "?", 2)[0], ":watch") {
		return // a route of the facade's own
	}
	gotErr := up.validate(path, got, false)
	if direct == nil {
		if gotErr != nil {
			t.Errorf("the answer is not valid against Confluent Cloud's OpenAPI: %v\n%d %s", gotErr, got.status, got.body)
		}
		return
	}
	if directErr := up.validate(path, *direct, false); (gotErr == nil) != (directErr == nil) {
		t.Errorf("against Confluent Cloud's OpenAPI, the upstream's own answer: %v; through the gateway: %v", directErr, gotErr)
	}
}

func TestOpenAPIDocumentIsValid(t *testing.T) {
	facade, _ := specs(t) // specs validates the document
	if facade.doc.OpenAPI != "3.0.3" {
		t.Errorf("openapi %q", facade.doc.OpenAPI)
	}
}

// TestOpenAPISchemasMatchTheContract: the facade document's resource schemas
// have exactly the fields of the contract's messages that the REST dialect
// writes (every field but the *_raw ones, which are written under their
// enum's name), at every depth.
func TestOpenAPISchemasMatchTheContract(t *testing.T) {
	facade, _ := specs(t)
	var walk func(at string, md protoreflect.MessageDescriptor, s *openapi3.Schema)
	walk = func(at string, md protoreflect.MessageDescriptor, s *openapi3.Schema) {
		var fields []string
		for i := range md.Fields().Len() {
			fd := md.Fields().Get(i)
			name := string(fd.Name())
			if strings.HasSuffix(name, rawSuffix) {
				continue
			}
			fields = append(fields, name)
			prop := s.Properties[name]
			if prop == nil {
				t.Errorf("%s.%s is not in the document", at, name)
				continue
			}
			ps := prop.Value
			if fd.IsList() {
				if !ps.Type.Is(openapi3.TypeArray) {
					t.Errorf("%s.%s is a list, the document says %v", at, name, ps.Type)
					continue
				}
				ps = ps.Items.Value
			}
			switch {
			case fd.Kind() == protoreflect.MessageKind && fd.Message().FullName() == timestampName:
				if !ps.Type.Is(openapi3.TypeString) || ps.Format != "date-time" {
					t.Errorf("%s.%s is a timestamp, the document says %v %q", at, name, ps.Type, ps.Format)
				}
			case fd.Kind() == protoreflect.MessageKind:
				walk(at+"."+name, fd.Message(), ps)
			case fd.Kind() == protoreflect.EnumKind || fd.Kind() == protoreflect.StringKind:
				if !ps.Type.Is(openapi3.TypeString) || len(ps.Enum) > 0 {
					t.Errorf("%s.%s is an open string, the document says %v enum %v", at, name, ps.Type, ps.Enum)
				}
			}
		}
		for name := range s.Properties {
			if !slices.Contains(fields, name) {
				t.Errorf("%s.%s is in the document, not in the contract", at, name)
			}
		}
	}
	for _, m := range []protoreflect.MessageDescriptor{
		(&pluginv1.CustomConnectPluginVersion{}).ProtoReflect().Descriptor(),
		(&pluginv1.CustomConnectorPlugin{}).ProtoReflect().Descriptor(),
	} {
		s := facade.doc.Components.Schemas[string(m.Name())]
		if s == nil {
			t.Fatalf("no schema %s", m.Name())
		}
		walk(string(m.Name()), m, s.Value)
	}
}
