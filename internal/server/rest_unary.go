package server

import (
	"context"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/grpc-ecosystem/grpc-gateway/v2/utilities"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// The gateway serves a unary method in process as grpc-gateway's generated
// handlers (RegisterPluginServiceHandlerServer) would: the request from the
// path parameters and, when the request has fields the path does not bind,
// the query; the incoming metadata and deadline grpc-gateway's
// AnnotateIncomingContext gives (incomingContext); the response metadata the
// service sets (grpc.SetHeader) as headers (outgoingHeader); the response as
// restJSON writes it, or the failure as errorHandler does. It does so once
// per call where they copy the metadata up to four times, and without the
// context they cancel at return, which net/http cancels then anyway.

// unaryCall is one unary route.
type unaryCall struct {
	route      route
	fullMethod string
	handler    grpc.UnaryHandler
	request    protoreflect.MessageType
	// pathFields are the request's string fields the path's parameters set
	// as they are; other parameters go through runtime.PopulateFieldFromPath.
	pathFields map[string]protoreflect.FieldDescriptor
	// query is set when the request has fields the path does not bind,
	// which the query may set (but those of filter, the path's).
	query  bool
	filter *utilities.DoubleArray
	enc    *restJSON
}

// registerUnary serves routes on mux through p's handlers, writing results
// with enc. A route whose method p has no handler for, or that takes a body,
// is refused.
func registerUnary(mux *runtime.ServeMux, p *inProcess, routes []route, enc *restJSON) error {
	for _, rt := range routes {
		fullMethod := "/" + string(rt.rpc.Parent().FullName()) + "/" + string(rt.rpc.Name())
		h := p.handlers[fullMethod]
		if h == nil {
			return fmt.Errorf("%s has no in-process handler (newInProcess)", fullMethod)
		}
		if rt.body != "" {
			return fmt.Errorf("%s %s: the gateway's routes take no body", rt.method, rt.path)
		}
		in, err := protoregistry.GlobalTypes.FindMessageByName(rt.rpc.Input().FullName())
		if err != nil {
			return fmt.Errorf("the request type of %s: %w", rt.rpc.FullName(), err)
		}
		params, err := pathParams(rt.path)
		if err != nil {
			return err
		}
		c := &unaryCall{route: rt, fullMethod: fullMethod, handler: h, request: in, enc: enc,
			pathFields: map[string]protoreflect.FieldDescriptor{}}
		fields := rt.rpc.Input().Fields()
		bound := 0
		names := make([][]string, 0, len(params))
		for _, name := range params {
			names = append(names, strings.Split(name, "."))
			fd := fields.ByName(protoreflect.Name(name))
			if fd == nil || fd.Kind() != protoreflect.StringKind || fd.IsList() || fd.ContainingOneof() != nil {
				continue // runtime.PopulateFieldFromPath's
			}
			c.pathFields[name] = fd
			bound++
		}
		if c.query = bound < fields.Len(); c.query {
			c.filter = utilities.NewDoubleArray(names)
		}
		if err := mux.HandlePath(rt.method, rt.path, c.serve); err != nil {
			return fmt.Errorf("routing %s %s: %w", rt.method, rt.path, err)
		}
	}
	return nil
}

// pathParams are the names of the variables of a path template
// ("/v1/{plugin_id}/versions/{id}": plugin_id, id).
func pathParams(template string) ([]string, error) {
	var names []string
	for rest := template; ; {
		i := strings.IndexByte(rest, '{')
		if i < 0 {
			return names, nil
		}
		j := strings.IndexByte(rest[i:], '}')
		if j < 0 {
			return nil, fmt.Errorf("path template %q: an unclosed {", template)
		}
		name, _, _ := strings.Cut(rest[i+1:i+j], "=")
		names = append(names, name)
		rest = rest[i+j+1:]
	}
}

func (c *unaryCall) serve(w http.ResponseWriter, r *http.Request, params map[string]string) {
	ctx, cancel, err := incomingContext(r)
	if err != nil {
		writeFailure(w, nil, err)
		return
	}
	defer cancel()
	stream := &headerStream{method: c.fullMethod}
	ctx = grpc.NewContextWithServerTransportStream(ctx, stream)
	var resp any
	req, err := c.requestOf(r, params)
	if err == nil {
		resp, err = c.handler(ctx, req)
	}
	header := stream.sent()
	if err != nil {
		writeFailure(w, header, err)
		return
	}
	msg, ok := resp.(proto.Message)
	if !ok {
		writeFailure(w, header, fmt.Errorf("%s answered %T, not a message", c.fullMethod, resp))
		return
	}
	c.write(ctx, w, r, header, msg)
}

// requestOf reads the request from the path parameters and, as the
// generated handlers do, from the query only when the path leaves fields
// unbound. Their errors are INVALID_ARGUMENT without a reason, which
// writeFailure words as a query that does not parse.
func (c *unaryCall) requestOf(r *http.Request, params map[string]string) (proto.Message, error) {
	req := c.request.New()
	for name, v := range params {
		if fd := c.pathFields[name]; fd != nil {
			req.Set(fd, protoreflect.ValueOfString(v))
			continue
		}
		if err := runtime.PopulateFieldFromPath(req.Interface(), name, v); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "type mismatch, parameter: %s, error: %v", name, err)
		}
	}
	if !c.query {
		return req.Interface(), nil
	}
	// The query only: the route is GET, and a body is never read (getOnly).
	query, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "%v", err)
	}
	if err := runtime.PopulateQueryParameters(req.Interface(), query, c.filter); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "%v", err)
	}
	return req.Interface(), nil
}

// write answers msg as grpc-gateway's runtime.ForwardResponseMessage does
// with the gateway's options: header metadata as headers, the upstream's
// JSON of msg (upstreamJSON) or msg in its dialect, and, to a request that
// accepts trailers, chunked (the service sets no trailer metadata).
func (c *unaryCall) write(ctx context.Context, w http.ResponseWriter, r *http.Request, header metadata.MD, msg proto.Message) {
	h := w.Header()
	metadataHeaders(h, header)
	if te := r.Header["Te"]; len(te) > 0 && strings.Contains(strings.ToLower(te[0]), "trailers") {
		h.Set("Transfer-Encoding", "chunked")
	}
	h.Set("Content-Type", c.enc.ContentType(msg))
	v, err := upstreamJSON(ctx, msg)
	var b []byte
	if err == nil {
		b, err = c.enc.Marshal(v)
	}
	if err != nil {
		writeFailure(w, header, err)
		return
	}
	_, _ = w.Write(b) // the caller went away: nothing to tell it
}

// headerStream is the grpc.ServerTransportStream of a unary call served in
// process: it keeps the header metadata the service sets. Trailer metadata
// has nowhere to go over REST, as with the generated handlers' default.
type headerStream struct {
	method string
	mu     sync.Mutex
	header metadata.MD
}

var _ grpc.ServerTransportStream = (*headerStream)(nil)

func (s *headerStream) Method() string { return s.method }

func (s *headerStream) SetHeader(md metadata.MD) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.header == nil {
		s.header = md.Copy()
		return nil
	}
	for k, vs := range md {
		s.header[k] = append(s.header[k], vs...)
	}
	return nil
}

func (s *headerStream) SendHeader(md metadata.MD) error { return s.SetHeader(md) }

func (s *headerStream) SetTrailer(metadata.MD) error { return nil }

// sent is the header metadata set so far.
func (s *headerStream) sent() metadata.MD {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.header
}

// incomingContext is r's context with what grpc-gateway's
// AnnotateIncomingContext gives an in-process call when its header matcher
// forwards no header of its own: the incoming metadata
// authorization (each Authorization value), x-forwarded-host (the
// X-Forwarded-Host header, else the request's Host) and x-forwarded-for (the
// X-Forwarded-For values, then the client's address, joined by ", "), each
// value only when it is valid gRPC metadata (printable ASCII); and the
// deadline a Grpc-Timeout header asks for. (The default matcher would also
// copy every standard header, Accept, User-Agent and the like, as
// grpcgateway-<name>; the service, the caller guard and the call log read
// none of them, and the traceparent is read from the HTTP request, by
// telemetry.Handler.) The RPC method and path pattern it also records are
// read by nobody here. The cancel function releases the deadline's timer.
// TestUnaryRoutesAnswerAsTheGeneratedHandlers holds it to grpc-gateway's.
func incomingContext(r *http.Request) (context.Context, context.CancelFunc, error) {
	ctx, cancel := r.Context(), context.CancelFunc(func() {})
	// The headers' keys are canonical: read without canonicalising them.
	if tm := headerValue(r.Header, "Grpc-Timeout"); tm != "" {
		timeout, err := decodeTimeout(tm)
		if err != nil {
			return nil, nil, status.Errorf(codes.InvalidArgument, "invalid grpc-timeout: %s", tm)
		}
		if timeout != 0 {
			ctx, cancel = context.WithTimeout(ctx, timeout)
		}
	}
	md := metadata.MD{}
	for _, v := range r.Header["Authorization"] {
		if metadataText(v) {
			md["authorization"] = append(md["authorization"], v)
		}
	}
	if host := headerValue(r.Header, "X-Forwarded-Host"); host != "" && metadataText(host) {
		md["x-forwarded-host"] = []string{host}
	} else if r.Host != "" && metadataText(r.Host) {
		md["x-forwarded-host"] = []string{r.Host}
	}
	var xff []string
	for _, v := range r.Header["X-Forwarded-For"] {
		if metadataText(v) {
			xff = append(xff, v)
		}
	}
	if ip, _, err := net.SplitHostPort(r.RemoteAddr); err == nil && metadataText(ip) {
		xff = append(xff, ip)
	}
	if len(xff) > 0 {
		md["x-forwarded-for"] = []string{strings.Join(xff, ", ")}
	}
	if len(md) > 0 {
		ctx = metadata.NewIncomingContext(ctx, md)
	}
	return ctx, cancel, nil
}

// headerValue is h.Get(key) for a canonical key.
func headerValue(h http.Header, key string) string {
	if vs := h[key]; len(vs) > 0 {
		return vs[0]
	}
	return ""
}

// metadataText reports whether v is a valid gRPC metadata text value:
// printable ASCII.
func metadataText(v string) bool {
	for i := 0; i < len(v); i++ {
		if v[i] < 0x20 || v[i] > 0x7e {
			return false
		}
	}
	return true
}

// decodeTimeout reads a gRPC timeout (an integer and a unit: H, M, S, m, u
// or n), as grpc-gateway does; one too long for a time.Duration is the
// longest.
func decodeTimeout(s string) (time.Duration, error) {
	if len(s) < 2 {
		return 0, fmt.Errorf("timeout string is too short: %q", s)
	}
	var unit time.Duration
	switch s[len(s)-1] {
	case 'H':
		unit = time.Hour
	case 'M':
		unit = time.Minute
	case 'S':
		unit = time.Second
	case 'm':
		unit = time.Millisecond
	case 'u':
		unit = time.Microsecond
	case 'n':
		unit = time.Nanosecond
	default:
		return 0, fmt.Errorf("timeout unit is not recognized: %q", s)
	}
	t, err := strconv.ParseUint(s[:len(s)-1], 10, 64)
	if err != nil {
		return 0, err
	}
	if t > uint64(math.MaxInt64)/uint64(unit) {
		return time.Duration(math.MaxInt64), nil
	}
	return unit * time.Duration(t), nil
}
