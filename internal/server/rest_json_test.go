package server

import (
	"encoding/json"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	pluginv1 "github.com/acme/plugin-facade/gen/go/confluent/plugin/v1"
	"github.com/acme/plugin-facade/internal/service"
	"github.com/acme/plugin-facade/internal/upstream"
)

// TestRESTJSONWritesTheUpstreamDialect fills the upstream's resources at
// random (each optional field present or not, strings with escapes, non-ASCII
// and bytes that are not UTF-8, enum-like values known to the contract and
// not, timestamps of every precision in any time zone), serves what
// encoding/json writes for them as the upstream, reads them through the
// service, and checks that restJSON writes the same JSON document for the
// translated message (timestamps compared as instants). A field added to the
// upstream types and the contract is filled too, so the dialect cannot drift
// from the upstream's unnoticed.
func TestRESTJSONWritesTheUpstreamDialect(t *testing.T) {
	enc, err := newRESTJSON(pluginServiceDescriptor())
	if err != nil {
		t.Fatal(err)
	}
	var body atomic.Pointer[[]byte]
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(*body.Load())
	}))
	t.Cleanup(up.Close)
	uc, err := upstream.New(up.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(uc.Close)
	svc := service.New(uc, service.WithDefaultCredentials(sandboxKey))

	rng := rand.New(rand.NewPCG(1, 2))
	read := map[string]func() (any, proto.Message, error){
		"plugin version": func() (any, proto.Message, error) {
			v := &upstream.PluginVersion{}
			fillUpstream(rng, reflect.ValueOf(v).Elem(), 0)
			publish(t, &body, v)
			m, err := svc.GetPluginVersion(t.Context(), &pluginv1.GetPluginVersionRequest{PluginId: "ccp-1", Id: "ver-1", Environment: "env-1"})
			return v, m, err
		},
		"connector plugin": func() (any, proto.Message, error) {
			p := &upstream.ConnectorPlugin{}
			fillUpstream(rng, reflect.ValueOf(p).Elem(), 0)
			publish(t, &body, p)
			m, err := svc.GetConnectorPlugin(t.Context(), &pluginv1.GetConnectorPluginRequest{Id: "ccp-1"})
			return p, m, err
		},
	}
	for name, read := range read {
		t.Run(name, func(t *testing.T) {
			for range 400 {
				want, msg, err := read()
				if err != nil {
					t.Fatal(err)
				}
				wantJSON, err := json.Marshal(want)
				if err != nil {
					t.Fatal(err)
				}
				got, err := enc.Marshal(msg)
				if err != nil {
					t.Fatal(err)
				}
				assertSameJSON(t, wantJSON, got)
				if t.Failed() {
					return
				}
			}
		})
	}
}

func publish(t *testing.T, to *atomic.Pointer[[]byte], v any) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	to.Store(&b)
}

// samples are the strings fillUpstream draws from: the enum-like literals
// the contract knows and some it does not, escapes, non-ASCII, a byte that is
// not UTF-8.
var samples = []string{"", "ccp-12345", "READY", "PROCESSING", "VALIDATING", "ZIP", "TAR", "SOURCE", "TRANSFORM", "AWS", "ORACLE",
	"JAVA", "RUST", "PRESIGNED_URL_LOCATION", "GIT_REPOSITORY_LOCATION", "Déjà vu ✓", "quote \" backslash \\ slash /",
	"ctl \x00\x01\x1f\x7f \n\r\t\b\f", "<html>&amp;</html>", "\u2028\u2029", "😀", "bad \xff byte"}

// fillUpstream fills v, a value of the upstream package's resource types, at
// random: pointers and slices are absent a third of the time.
func fillUpstream(rng *rand.Rand, v reflect.Value, depth int) {
	if v.Type() == reflect.TypeFor[time.Time]() {
		v.Set(reflect.ValueOf(randomTime(rng)))
		return
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(samples[rng.IntN(len(samples))] + strings.Repeat("x", rng.IntN(2)))
	case reflect.Pointer:
		if rng.IntN(3) == 0 {
			return
		}
		v.Set(reflect.New(v.Type().Elem()))
		fillUpstream(rng, v.Elem(), depth+1)
	case reflect.Slice:
		n := rng.IntN(4) - 1 // -1: nil; 0: empty
		if n < 0 {
			return
		}
		v.Set(reflect.MakeSlice(v.Type(), n, n))
		for i := range n {
			fillUpstream(rng, v.Index(i), depth+1)
		}
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).Tag.Get("json") == "-" {
				continue // not the upstream's JSON (Raw: what it sent)
			}
			fillUpstream(rng, v.Field(i), depth+1)
		}
		if depth == 0 { // the client refuses a resource without its identity
			v.FieldByName("ID").SetString("id-" + v.FieldByName("ID").String())
			v.FieldByName("Kind").SetString("kind-" + v.FieldByName("Kind").String())
		}
	default:
		panic("fillUpstream: unexpected " + v.Type().String())
	}
}

// randomTime is an instant between the years 0001 and 9999 in UTC, with 0,
// 1, 3, 6 or 9 significant fractional digits, in a random time zone.
func randomTime(rng *rand.Rand) time.Time {
	const first, last = -62135596800 + 86400, 253402300799 - 86400
	nanos := []int{0, 100000000, 123000000, 123456000, 123456789, 5, 120}[rng.IntN(7)]
	t := time.Unix(first+rng.Int64N(last-first), int64(nanos)).UTC()
	if rng.IntN(2) == 0 {
		return t
	}
	offset := (rng.IntN(26*4) - 12*4) * 15 * 60 // -12:00 to +13:45
	return t.In(time.FixedZone("", offset))
}

// TestRESTJSONRefusesWhatItCannotWrite: a message the dialect has no form for
// is refused when the gateway is built, naming the field.
func TestRESTJSONRefusesWhatItCannotWrite(t *testing.T) {
	enumType := &descriptorpb.EnumDescriptorProto{Name: proto.String("E"),
		Value: []*descriptorpb.EnumValueDescriptorProto{{Name: proto.String("E_UNSPECIFIED"), Number: proto.Int32(0)}}}
	str, enum, opt := descriptorpb.FieldDescriptorProto_TYPE_STRING.Enum(), descriptorpb.FieldDescriptorProto_TYPE_ENUM.Enum(), descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum()
	field := func(name string, n int32, typ *descriptorpb.FieldDescriptorProto_Type) *descriptorpb.FieldDescriptorProto {
		f := &descriptorpb.FieldDescriptorProto{Name: proto.String(name), Number: proto.Int32(n), Type: typ, Label: opt, JsonName: proto.String(name)}
		if *typ == descriptorpb.FieldDescriptorProto_TYPE_ENUM {
			f.TypeName = proto.String(".test.E")
		}
		return f
	}
	for name, fields := range map[string][]*descriptorpb.FieldDescriptorProto{
		"an enum without _raw":    {field("phase", 1, enum)},
		"a _raw without its enum": {field("phase_raw", 1, str)},
		"bytes":                   {field("blob", 1, descriptorpb.FieldDescriptorProto_TYPE_BYTES.Enum())},
		"floats":                  {field("ratio", 1, descriptorpb.FieldDescriptorProto_TYPE_DOUBLE.Enum())},
	} {
		t.Run(name, func(t *testing.T) {
			fd, err := protodesc.NewFile(&descriptorpb.FileDescriptorProto{
				Name: proto.String("test/dialect.proto"), Package: proto.String("test"), Syntax: proto.String("proto3"),
				EnumType:    []*descriptorpb.EnumDescriptorProto{enumType},
				MessageType: []*descriptorpb.DescriptorProto{{Name: proto.String("M"), Field: fields}},
			}, protoregistry.GlobalFiles)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := buildPlan(fd.Messages().Get(0), map[protoreflect.FullName]bool{}); err == nil || !strings.Contains(err.Error(), "test.M.") {
				t.Errorf("buildPlan = %v, want an error naming the field", err)
			}
		})
	}
}

// BenchmarkRESTJSON compares restJSON with protojson on a fully populated
// plugin version (what the gateway wrote before it spoke the upstream's
// dialect).
func BenchmarkRESTJSON(b *testing.B) {
	enc, err := newRESTJSON(pluginServiceDescriptor())
	if err != nil {
		b.Fatal(err)
	}
	s := "x"
	now := time.Now()
	m := &pluginv1.CustomConnectPluginVersion{ApiVersion: "ccpm/v1", Kind: "CustomConnectPluginVersion", Id: "ver-12345",
		Metadata: &pluginv1.ObjectMeta{Self: "https://api.confluent.cloud/ccpm/v1/plugins/ccp-12345/versions/ver-12345", ResourceName: &s},
		Spec: &pluginv1.CustomConnectPluginVersionSpec{Version: "1.2.3", SensitiveConfigProperties: []string{"a", "b"},
			ContentFormat: pluginv1.ContentFormat_CONTENT_FORMAT_ZIP, ContentFormatRaw: proto.String("ZIP"),
			ConnectorClasses: []*pluginv1.ConnectorClass{{ClassName: "io.confluent.X", Type: pluginv1.ConnectorType_CONNECTOR_TYPE_SOURCE, TypeRaw: proto.String("SOURCE")}}},
		Status: &pluginv1.CustomConnectPluginVersionStatus{Phase: pluginv1.VersionPhase_VERSION_PHASE_READY, PhaseRaw: proto.String("READY")},
	}
	m.Metadata.CreatedAt, m.Metadata.UpdatedAt = timestamppb.New(now), timestamppb.New(now)
	pj := protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}
	for name, marshal := range map[string]func() ([]byte, error){
		"protojson": func() ([]byte, error) { return pj.Marshal(m) },
		"restjson":  func() ([]byte, error) { return enc.Marshal(m) },
	} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := marshal(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
