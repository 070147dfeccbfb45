package server

import (
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	pluginv1 "github.com/acme/plugin-facade/gen/go/confluent/plugin/v1"
)

var gatewayJSON = runtime.JSONPb{
	MarshalOptions:   protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true},
	UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: true},
}

// TestFastJSONMatchesProtojson fills the contract's resources at random (every
// field set or not, strings with escapes and non-ASCII, enum values known and
// unknown, timestamps with every precision) and checks that fastJSON writes the
// same JSON document as protojson. A field added to the contract is filled
// too, so the two cannot drift apart unnoticed.
func TestFastJSONMatchesProtojson(t *testing.T) {
	fast := newFastJSON(gatewayJSON)
	rng := rand.New(rand.NewPCG(1, 2))
	for _, empty := range []proto.Message{&pluginv1.CustomConnectPluginVersion{}, &pluginv1.CustomConnectorPlugin{}} {
		if fast.plan(empty.ProtoReflect().Descriptor()) == nil {
			t.Fatalf("%T is not planned: fastJSON would never be used for it", empty)
		}
		for i := range 2000 {
			m := empty.ProtoReflect().New()
			fill(rng, m, i%10 == 0)
			assertSameJSON(t, fast, m.Interface())
		}
	}
}

// TestFastJSONFallsBack: what it cannot plan or write exactly goes to protojson
// (which refuses a string that is not UTF-8, as before).
func TestFastJSONFallsBack(t *testing.T) {
	fast := newFastJSON(gatewayJSON)
	st, _ := status.New(codes.NotFound, "gone").WithDetails(&errdetails.RequestInfo{RequestId: "r"})
	assertSameJSON(t, fast, st.Proto()) // Any details: not planned
	if _, err := fast.Marshal(&pluginv1.CustomConnectorPlugin{Id: "bad \xff"}); err == nil {
		t.Error("a string that is not valid UTF-8 was written")
	}
	chunk := map[string]proto.Message{"result": &pluginv1.CustomConnectorPlugin{Id: "x"}}
	assertSameJSON(t, fast, chunk)
}

func assertSameJSON(t *testing.T, fast *fastJSON, v any) {
	t.Helper()
	want, err := gatewayJSON.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	got, err := fast.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var w, g any
	if err := json.Unmarshal(want, &w); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("fastJSON wrote invalid JSON %s: %v", got, err)
	}
	if !reflect.DeepEqual(w, g) {
		t.Fatalf("fastJSON wrote\n%s\nprotojson\n%s", got, want)
	}
}

var samples = []string{"", "ccp-12345", "Déjà vu ✓", "quote \" backslash \\ slash /", "ctl \x00\x01\x1f\x7f \n\r\t\b\f", "<html>&amp;</html>", "\u2028\u2029", "😀"}

// fill sets each field of m at random (or every field, when full).
func fill(rng *rand.Rand, m protoreflect.Message, full bool) {
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if !full && rng.IntN(3) == 0 {
			continue
		}
		if fd.IsList() {
			l := m.Mutable(fd).List()
			for range rng.IntN(3) {
				l.Append(randomValue(rng, fd, l.NewElement))
			}
			continue
		}
		if fd.Kind() == protoreflect.MessageKind {
			sub := m.Mutable(fd).Message()
			fillMessage(rng, sub, full)
			continue
		}
		m.Set(fd, randomValue(rng, fd, nil))
	}
}

func fillMessage(rng *rand.Rand, m protoreflect.Message, full bool) {
	if m.Descriptor().FullName() == "google.protobuf.Timestamp" {
		fields := m.Descriptor().Fields()
		m.Set(fields.ByName("seconds"), protoreflect.ValueOfInt64(rng.Int64N(253402300799+62135596800)-62135596800))
		nanos := []int32{0, 123000000, 123456000, 123456789, 5}[rng.IntN(5)]
		m.Set(fields.ByName("nanos"), protoreflect.ValueOfInt32(nanos))
		return
	}
	fill(rng, m, full)
}

func randomValue(rng *rand.Rand, fd protoreflect.FieldDescriptor, newElement func() protoreflect.Value) protoreflect.Value {
	switch fd.Kind() {
	case protoreflect.StringKind:
		return protoreflect.ValueOfString(samples[rng.IntN(len(samples))] + strings.Repeat("x", rng.IntN(3)))
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(rng.IntN(2) == 0)
	case protoreflect.EnumKind:
		vals := fd.Enum().Values()
		if rng.IntN(5) == 0 {
			return protoreflect.ValueOfEnum(protoreflect.EnumNumber(100 + rng.IntN(5))) // unknown to this build
		}
		return protoreflect.ValueOfEnum(vals.Get(rng.IntN(vals.Len())).Number())
	case protoreflect.MessageKind:
		v := newElement()
		fillMessage(rng, v.Message(), false)
		return v
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return protoreflect.ValueOfInt32(rng.Int32() - 1<<30)
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return protoreflect.ValueOfInt64(rng.Int64() - 1<<62)
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return protoreflect.ValueOfUint32(rng.Uint32())
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return protoreflect.ValueOfUint64(rng.Uint64())
	}
	panic("unexpected kind " + fd.Kind().String() + " of " + string(fd.FullName()))
}

// BenchmarkGatewayJSON compares the REST response encoders on a fully
// populated plugin version.
func BenchmarkGatewayJSON(b *testing.B) {
	m := (&pluginv1.CustomConnectPluginVersion{}).ProtoReflect()
	fill(rand.New(rand.NewPCG(3, 4)), m, true)
	fast := newFastJSON(gatewayJSON)
	for name, marshal := range map[string]func(any) ([]byte, error){"protojson": gatewayJSON.Marshal, "fastjson": fast.Marshal} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := marshal(m.Interface()); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
