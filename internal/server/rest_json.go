package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/acme/plugin-facade/internal/passthrough"
)

// The REST face answers with the upstream's JSON of a resource exactly as the
// upstream sent it, whenever the service attached it (package passthrough):
// a field or an enum value the contract does not know yet reaches REST
// callers the day the upstream sends it, from the cache and through the
// fleet's relay too. carryUpstreamJSON gives every REST request's context a carrier,
// upstreamJSON takes the JSON for the response (a unary call's; rest_stream.go
// takes each message's), and restJSON writes it as is.
//
// Without attached JSON (a service that attaches none), restJSON writes the
// message itself in the same dialect: from the proto descriptors it plans,
// once per message type, how to write each field:
//
//   - an enum field x, paired in the contract with its optional string x_raw
//     (see common.proto), is written as "x": <the upstream's literal>, known
//     to this build or not, and left out when the upstream sent none; x_raw
//     itself is never written;
//   - an unset optional scalar, an unset message and an empty repeated field
//     are left out, as the upstream leaves them out;
//   - a google.protobuf.Timestamp is RFC 3339 in UTC with every digit of its
//     nanoseconds that is not a trailing zero (time.RFC3339Nano);
//   - field names are the proto names, which are the upstream's.
//
// A message whose fields the plan cannot write in that dialect (a map, bytes,
// floats, a real oneof, an enum without its _raw sibling, another well-known
// type) is refused when the gateway is built (newRESTJSON), not when a caller
// asks for it. TestRESTJSONWritesTheUpstreamDialect holds the result to what
// the upstream itself writes, over random resources.
type restJSON struct {
	// JSONPb reads request bodies (the API's requests have none today).
	runtime.JSONPb
	plans map[protoreflect.FullName]*plan // immutable once built
}

// newRESTJSON plans the response message of every method of sd.
func newRESTJSON(sd protoreflect.ServiceDescriptor) (*restJSON, error) {
	m := &restJSON{
		JSONPb: runtime.JSONPb{UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: true}},
		plans:  map[protoreflect.FullName]*plan{},
	}
	for i := range sd.Methods().Len() {
		out := sd.Methods().Get(i).Output()
		if m.plans[out.FullName()] != nil {
			continue
		}
		p, err := buildPlan(out, map[protoreflect.FullName]bool{})
		if err != nil {
			return nil, fmt.Errorf("the REST dialect cannot write %s: %w", out.FullName(), err)
		}
		m.plans[out.FullName()] = p
	}
	return m, nil
}

// upstreamResource is a resource's JSON as the upstream sent it.
type upstreamResource []byte

// carryUpstreamJSON gives each request's context a carrier for the
// upstream's JSON of the resources its call answers with.
func carryUpstreamJSON(ctx context.Context) context.Context {
	ctx, _ = passthrough.NewContext(ctx)
	return ctx
}

// upstreamJSON is the gateway's response rewriter: the upstream's JSON of
// resp when the service attached it, resp otherwise.
func upstreamJSON(ctx context.Context, resp proto.Message) (any, error) {
	if raw, ok := passthrough.FromContext(ctx).Take(resp); ok {
		return upstreamResource(raw), nil
	}
	return resp, nil
}

// ContentType is the upstream's.
func (m *restJSON) ContentType(any) string { return "application/json" }

// Marshal writes the upstream's JSON as it is, or a planned message.
func (m *restJSON) Marshal(v any) ([]byte, error) {
	if raw, ok := v.(upstreamResource); ok {
		return raw, nil
	}
	msg, ok := v.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("the REST dialect writes only the service's responses, not %T", v)
	}
	r := msg.ProtoReflect()
	p := m.plans[r.Descriptor().FullName()]
	if p == nil {
		return nil, fmt.Errorf("the REST dialect writes only the service's responses, not %s", r.Descriptor().FullName())
	}
	return p.append(make([]byte, 0, 2048), r)
}

// NewEncoder writes each value with Marshal.
func (m *restJSON) NewEncoder(w io.Writer) runtime.Encoder {
	return runtime.EncoderFunc(func(v any) error {
		b, err := m.Marshal(v)
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	})
}

// plan is how to write one message type: its fields in declaration order.
type plan struct {
	fields []fieldPlan
}

type fieldPlan struct {
	// fd is the field whose value is written: for an enum, its _raw sibling.
	fd  protoreflect.FieldDescriptor
	key []byte // `"name":`
	sub *plan  // for message fields other than Timestamp
}

// rawSuffix names the string sibling that carries an enum's upstream literal.
const rawSuffix = "_raw"

var timestampName = (&timestamppb.Timestamp{}).ProtoReflect().Descriptor().FullName()

// buildPlan plans md; seen holds the messages being planned, to refuse
// recursive types.
func buildPlan(md protoreflect.MessageDescriptor, seen map[protoreflect.FullName]bool) (*plan, error) {
	if seen[md.FullName()] {
		return nil, fmt.Errorf("%s is recursive", md.FullName())
	}
	seen[md.FullName()] = true
	defer delete(seen, md.FullName())
	p := &plan{}
	fields := md.Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		name := string(fd.Name())
		switch {
		case fd.IsMap() || fd.IsExtension():
			return nil, fmt.Errorf("%s: maps and extensions have no upstream form", fd.FullName())
		case fd.ContainingOneof() != nil && !fd.ContainingOneof().IsSynthetic():
			return nil, fmt.Errorf("%s: oneofs have no upstream form", fd.FullName())
		case fd.Kind() == protoreflect.EnumKind:
			raw := fields.ByName(fd.Name() + rawSuffix)
			if fd.IsList() || raw == nil || raw.Kind() != protoreflect.StringKind || raw.IsList() || !raw.HasPresence() {
				return nil, fmt.Errorf("%s: an enum needs an optional string %s%s beside it, the upstream's literal", fd.FullName(), name, rawSuffix)
			}
			p.fields = append(p.fields, fieldPlan{fd: raw, key: jsonKey(name)})
			continue
		case strings.HasSuffix(name, rawSuffix):
			if e := fields.ByName(protoreflect.Name(strings.TrimSuffix(name, rawSuffix))); e == nil || e.Kind() != protoreflect.EnumKind {
				return nil, fmt.Errorf("%s: a %s field stands beside an enum of the same name", fd.FullName(), rawSuffix)
			}
			continue // written under its enum's name
		}
		f := fieldPlan{fd: fd, key: jsonKey(name)}
		switch fd.Kind() {
		case protoreflect.StringKind, protoreflect.BoolKind,
			protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind,
			protoreflect.Uint32Kind, protoreflect.Fixed32Kind,
			protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind,
			protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		case protoreflect.MessageKind:
			if fd.Message().FullName() != timestampName {
				if fd.Message().FullName().Parent() == "google.protobuf" {
					return nil, fmt.Errorf("%s: %s has no upstream form", fd.FullName(), fd.Message().FullName())
				}
				sub, err := buildPlan(fd.Message(), seen)
				if err != nil {
					return nil, err
				}
				f.sub = sub
			}
		default:
			return nil, fmt.Errorf("%s: %s fields have no upstream form", fd.FullName(), fd.Kind())
		}
		p.fields = append(p.fields, f)
	}
	return p, nil
}

func jsonKey(name string) []byte {
	return append(strconv.AppendQuote(nil, name), ':')
}

// append writes r: what the upstream left out (an unset optional field or
// message, an empty list) stays out; a field without presence is always
// written, as the upstream always sends the fields the contract gives none.
func (p *plan) append(b []byte, r protoreflect.Message) ([]byte, error) {
	b = append(b, '{')
	first := true
	for i := range p.fields {
		f := &p.fields[i]
		fd := f.fd
		var list protoreflect.List
		switch {
		case fd.IsList():
			if list = r.Get(fd).List(); list.Len() == 0 {
				continue
			}
		case fd.HasPresence() && !r.Has(fd):
			continue
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		b = append(b, f.key...)
		var err error
		if list == nil {
			if b, err = f.appendValue(b, r.Get(fd)); err != nil {
				return nil, err
			}
			continue
		}
		b = append(b, '[')
		for j := range list.Len() {
			if j > 0 {
				b = append(b, ',')
			}
			if b, err = f.appendValue(b, list.Get(j)); err != nil {
				return nil, err
			}
		}
		b = append(b, ']')
	}
	return append(b, '}'), nil
}

func (f *fieldPlan) appendValue(b []byte, v protoreflect.Value) ([]byte, error) {
	switch f.fd.Kind() {
	case protoreflect.StringKind:
		return appendString(b, v.String()), nil
	case protoreflect.BoolKind:
		return strconv.AppendBool(b, v.Bool()), nil
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind,
		protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return strconv.AppendInt(b, v.Int(), 10), nil
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind, protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return strconv.AppendUint(b, v.Uint(), 10), nil
	case protoreflect.MessageKind:
		if f.sub != nil {
			return f.sub.append(b, v.Message())
		}
		return appendTimestamp(b, v.Message())
	}
	return nil, fmt.Errorf("%s: unplanned kind %s", f.fd.FullName(), f.fd.Kind())
}

// appendString writes s as a JSON string, escaping what JSON requires; bytes
// that are not UTF-8 become U+FFFD, as encoding/json writes them.
func appendString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRuneInString(s[i:])
			if r != utf8.RuneError || size != 1 {
				i += size
				continue
			}
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
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
		default:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		}
		i++
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// errTimestampRange refuses a Timestamp RFC 3339 cannot write.
var errTimestampRange = errors.New("a timestamp outside the years 0001 to 9999")

// appendTimestamp writes a google.protobuf.Timestamp as RFC 3339 in UTC,
// keeping its full precision.
func appendTimestamp(b []byte, m protoreflect.Message) ([]byte, error) {
	fields := m.Descriptor().Fields()
	secs := m.Get(fields.ByName("seconds")).Int()
	nanos := m.Get(fields.ByName("nanos")).Int()
	// 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999999Z.
	if secs < -62135596800 || secs > 253402300799 || nanos < 0 || nanos >= 1e9 {
		return nil, errTimestampRange
	}
	b = append(b, '"')
	b = time.Unix(secs, nanos).UTC().AppendFormat(b, time.RFC3339Nano)
	return append(b, '"'), nil
}
