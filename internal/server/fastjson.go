package server

import (
	"errors"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// fastJSON is the gateway's JSON marshaler. It writes what runtime.JSONPb with
// UseProtoNames and EmitUnpopulated writes (and reads with it), but for the
// messages it can plan (strings, bools, enums, integers, repeated fields,
// nested messages and Timestamps: everything the contract's resources are made
// of) it follows a plan built once per message type instead of protojson's
// general reflection, which was the largest cost of a REST call (about 13% of
// the facade's CPU, see docs/benchmarks.md). Anything else (error statuses with
// their Any details, stream chunks, a value it cannot write exactly) goes to
// JSONPb. TestFastJSONMatchesProtojson holds the two to the same output.
type fastJSON struct {
	runtime.JSONPb
	plans sync.Map // protoreflect.FullName → *plan, nil when the type cannot be planned
}

func newFastJSON(pb runtime.JSONPb) *fastJSON {
	return &fastJSON{JSONPb: pb}
}

func (m *fastJSON) Marshal(v any) ([]byte, error) {
	msg, ok := v.(proto.Message)
	if !ok {
		return m.JSONPb.Marshal(v)
	}
	r := msg.ProtoReflect()
	p := m.plan(r.Descriptor())
	if p == nil {
		return m.JSONPb.Marshal(v)
	}
	b, err := p.append(make([]byte, 0, 2048), r)
	if err != nil {
		return m.JSONPb.Marshal(v) // a value only protojson knows how to write, or refuse
	}
	return b, nil
}

// errUnplanned sends a value the plan cannot write exactly (a string that is
// not valid UTF-8, a Timestamp out of range) to protojson.
var errUnplanned = errors.New("fastjson: not planned")

// plan is how to write one message type.
type plan struct {
	fields []fieldPlan
}

type fieldPlan struct {
	fd  protoreflect.FieldDescriptor
	key []byte // `"name":`
	sub *plan  // for message fields other than Timestamp
}

var timestampName = (&timestamppb.Timestamp{}).ProtoReflect().Descriptor().FullName()

func (m *fastJSON) plan(md protoreflect.MessageDescriptor) *plan {
	if p, ok := m.plans.Load(md.FullName()); ok {
		return p.(*plan)
	}
	p := m.build(md, map[protoreflect.FullName]bool{})
	m.plans.Store(md.FullName(), p)
	return p
}

// build plans md, or returns nil when some field of it (or of a message it
// holds) is of a kind the plan does not write: maps, bytes, floats, real
// oneofs, well-known types other than Timestamp, recursive types.
func (m *fastJSON) build(md protoreflect.MessageDescriptor, seen map[protoreflect.FullName]bool) *plan {
	if seen[md.FullName()] || md.Oneofs().Len() != countSyntheticOneofs(md) {
		return nil
	}
	seen[md.FullName()] = true
	defer delete(seen, md.FullName())
	p := &plan{}
	fields := md.Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if fd.IsMap() || fd.IsExtension() {
			return nil
		}
		f := fieldPlan{fd: fd, key: append(strconv.AppendQuote(nil, string(fd.Name())), ':')}
		switch fd.Kind() {
		case protoreflect.StringKind, protoreflect.BoolKind, protoreflect.EnumKind,
			protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind,
			protoreflect.Uint32Kind, protoreflect.Fixed32Kind,
			protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind,
			protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		case protoreflect.MessageKind:
			if fd.Message().FullName() != timestampName {
				if f.sub = m.build(fd.Message(), seen); f.sub == nil {
					return nil
				}
			}
		default:
			return nil
		}
		p.fields = append(p.fields, f)
	}
	return p
}

func countSyntheticOneofs(md protoreflect.MessageDescriptor) int {
	n := 0
	for i := range md.Oneofs().Len() {
		if md.Oneofs().Get(i).IsSynthetic() {
			n++
		}
	}
	return n
}

// append writes r as protojson would with UseProtoNames and EmitUnpopulated:
// every field, unset messages as null, empty lists as [], except proto3
// optional fields that are unset, which protojson leaves out.
func (p *plan) append(b []byte, r protoreflect.Message) ([]byte, error) {
	b = append(b, '{')
	first := true
	for i := range p.fields {
		f := &p.fields[i]
		fd := f.fd
		if fd.HasOptionalKeyword() && !r.Has(fd) {
			continue
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		b = append(b, f.key...)
		var err error
		switch {
		case fd.IsList():
			l := r.Get(fd).List()
			b = append(b, '[')
			for j := range l.Len() {
				if j > 0 {
					b = append(b, ',')
				}
				if b, err = f.appendValue(b, l.Get(j)); err != nil {
					return nil, err
				}
			}
			b = append(b, ']')
		case fd.Kind() == protoreflect.MessageKind && !r.Has(fd):
			b = append(b, "null"...)
		default:
			if b, err = f.appendValue(b, r.Get(fd)); err != nil {
				return nil, err
			}
		}
	}
	return append(b, '}'), nil
}

func (f *fieldPlan) appendValue(b []byte, v protoreflect.Value) ([]byte, error) {
	switch f.fd.Kind() {
	case protoreflect.StringKind:
		return appendString(b, v.String())
	case protoreflect.BoolKind:
		return strconv.AppendBool(b, v.Bool()), nil
	case protoreflect.EnumKind:
		if ev := f.fd.Enum().Values().ByNumber(v.Enum()); ev != nil {
			return appendString(b, string(ev.Name()))
		}
		return strconv.AppendInt(b, int64(v.Enum()), 10), nil
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return strconv.AppendInt(b, v.Int(), 10), nil
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return strconv.AppendUint(b, v.Uint(), 10), nil
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return append(strconv.AppendInt(append(b, '"'), v.Int(), 10), '"'), nil
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return append(strconv.AppendUint(append(b, '"'), v.Uint(), 10), '"'), nil
	case protoreflect.MessageKind:
		if f.sub != nil {
			return f.sub.append(b, v.Message())
		}
		return appendTimestamp(b, v.Message())
	}
	return nil, errUnplanned
}

// appendString writes s as a JSON string, escaping what JSON requires.
// protojson refuses strings that are not valid UTF-8; so does this, leaving
// the refusal to protojson.
func appendString(b []byte, s string) ([]byte, error) {
	if !utf8.ValidString(s) {
		return nil, errUnplanned
	}
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		case '\b':
			b = append(b, '\\', 'b')
		case '\f':
			b = append(b, '\\', 'f')
		default:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		}
		start = i + 1
	}
	b = append(b, s[start:]...)
	return append(b, '"'), nil
}

// appendTimestamp writes a google.protobuf.Timestamp as protojson does: RFC
// 3339 in UTC with 0, 3, 6 or 9 fractional digits.
func appendTimestamp(b []byte, m protoreflect.Message) ([]byte, error) {
	fields := m.Descriptor().Fields()
	secs := m.Get(fields.ByName("seconds")).Int()
	nanos := m.Get(fields.ByName("nanos")).Int()
	// protojson's range: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z.
	if secs < -62135596800 || secs > 253402300799 || nanos < 0 || nanos >= 1e9 {
		return nil, errUnplanned
	}
	t := time.Unix(secs, nanos).UTC()
	b = append(b, '"')
	b = t.AppendFormat(b, "2006-01-02T15:04:05")
	switch {
	case nanos == 0:
	case nanos%1e6 == 0:
		b = append(b, '.')
		b = appendDigits(b, nanos/1e6, 3)
	case nanos%1e3 == 0:
		b = append(b, '.')
		b = appendDigits(b, nanos/1e3, 6)
	default:
		b = append(b, '.')
		b = appendDigits(b, nanos, 9)
	}
	return append(b, 'Z', '"'), nil
}

func appendDigits(b []byte, v int64, n int) []byte {
	s := strconv.FormatInt(v, 10)
	for range n - len(s) {
		b = append(b, '0')
	}
	return append(b, s...)
}
