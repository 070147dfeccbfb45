package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/grpc-ecosystem/grpc-gateway/v2/utilities"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/acme/plugin-facade/internal/failure"
	"github.com/acme/plugin-facade/internal/passthrough"
)

// The gateway serves a server-streaming method in process: it builds the
// request from the path and query as grpc-gateway's generated handlers do,
// with the same incoming metadata (incomingContext), and runs the method's handler from the gRPC service description (which
// reads the request with RecvMsg, as over gRPC) through the gRPC server's
// stream interceptors (call info, call log with protocol rest, metrics, panic
// recovery), on an ndjsonStream. The response is newline-delimited JSON:
// {"result": <the resource, in the upstream's JSON>} per message, then, if the
// call fails, {"error": <a Failure envelope>}.

// ndjsonContentType is the media type of newline-delimited JSON.
const ndjsonContentType = "application/x-ndjson"

// inProcessStreams serves the streaming methods of desc, implemented by svc,
// through chain.
type inProcessStreams struct {
	svc   any
	desc  *grpc.ServiceDesc
	chain grpc.StreamServerInterceptor
}

// register serves routes on mux, ahead of the generated handlers registered
// for them (which answer UNIMPLEMENTED), writing results with enc.
func (p *inProcessStreams) register(mux *runtime.ServeMux, routes []route, enc *restJSON) error {
	for _, rt := range routes {
		i := slices.IndexFunc(p.desc.Streams, func(sd grpc.StreamDesc) bool { return sd.StreamName == string(rt.rpc.Name()) })
		if i < 0 {
			return fmt.Errorf("%s is not a stream of %s", rt.rpc.FullName(), p.desc.ServiceName)
		}
		in, err := protoregistry.GlobalTypes.FindMessageByName(rt.rpc.Input().FullName())
		if err != nil {
			return fmt.Errorf("the request type of %s: %w", rt.rpc.FullName(), err)
		}
		c := &streamCall{p: p, route: rt, handler: p.desc.Streams[i].Handler, request: in, enc: enc,
			fullMethod: "/" + p.desc.ServiceName + "/" + p.desc.Streams[i].StreamName}
		// runtime.ServeMux tries the handlers registered last first.
		if err := mux.HandlePath(rt.method, rt.path, func(w http.ResponseWriter, r *http.Request, params map[string]string) {
			c.serve(mux, w, r, params)
		}); err != nil {
			return fmt.Errorf("routing %s %s: %w", rt.method, rt.path, err)
		}
	}
	return nil
}

// streamCall is one streaming route.
type streamCall struct {
	p          *inProcessStreams
	route      route
	handler    grpc.StreamHandler
	request    protoreflect.MessageType
	enc        *restJSON
	fullMethod string
}

func (c *streamCall) serve(mux *runtime.ServeMux, w http.ResponseWriter, r *http.Request, params map[string]string) {
	ss := &ndjsonStream{w: w, enc: c.enc}
	ctx, cancel, err := incomingContext(r)
	if err != nil {
		ss.finish(err)
		return
	}
	defer cancel()
	ss.ctx = ctx
	if ss.req, err = c.requestOf(r, params); err != nil {
		ss.finish(err)
		return
	}
	info := &grpc.StreamServerInfo{FullMethod: c.fullMethod, IsServerStream: true}
	ss.finish(c.p.chain(c.p.svc, ss, info, c.handler))
}

// requestOf reads the request from the path parameters and the query, as
// grpc-gateway's generated handlers do.
func (c *streamCall) requestOf(r *http.Request, params map[string]string) (proto.Message, error) {
	req := c.request.New().Interface()
	names := make([][]string, 0, len(params))
	for name, v := range params {
		if err := runtime.PopulateFieldFromPath(req, name, v); err != nil {
			return nil, invalidQuery(fmt.Sprintf("parameter %s: %v", name, err))
		}
		names = append(names, []string{name})
	}
	// The query only: the route is GET, and a body is never read (getOnly).
	query, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, invalidQuery(err.Error())
	}
	if err := runtime.PopulateQueryParameters(req, query, utilities.NewDoubleArray(names)); err != nil {
		return nil, invalidQuery(err.Error())
	}
	return req, nil
}

// invalidQuery is the failure of a request whose path or query does not
// parse; msg quotes the caller's input (see echo).
func invalidQuery(msg string) error {
	return failure.Facade(failure.ReasonInvalidArgument, echo(msg))
}

// ndjsonStream is the grpc.ServerStream of a streaming call served over
// REST. Response header metadata becomes HTTP headers (outgoingHeader) when
// the status line is written: with the first message, or with the failure
// when the call fails before one. Trailer metadata has nowhere to go.
type ndjsonStream struct {
	ctx      context.Context
	w        http.ResponseWriter
	enc      *restJSON
	req      proto.Message
	received bool
	header   metadata.MD
	sent     bool // SendHeader was called
	wrote    bool // the status line is written
}

var _ grpc.ServerStream = (*ndjsonStream)(nil)

func (s *ndjsonStream) Context() context.Context { return s.ctx }

func (s *ndjsonStream) SetHeader(md metadata.MD) error {
	if s.sent || s.wrote {
		return errors.New("the response header was sent already")
	}
	s.header = metadata.Join(s.header, md)
	return nil
}

func (s *ndjsonStream) SendHeader(md metadata.MD) error {
	err := s.SetHeader(md)
	s.sent = true
	return err
}

func (s *ndjsonStream) SetTrailer(metadata.MD) {}

// RecvMsg gives the request once; a server-streaming call has only one.
func (s *ndjsonStream) RecvMsg(m any) error {
	if s.received {
		return io.EOF
	}
	s.received = true
	proto.Merge(m.(proto.Message), s.req)
	return nil
}

// SendMsg writes one {"result": ...} line and flushes it to the caller: the
// upstream's JSON of m when the service attached it, on one line.
func (s *ndjsonStream) SendMsg(m any) error {
	var b []byte
	var err error
	if raw, ok := passthrough.FromContext(s.ctx).Take(m); ok {
		b, err = oneLine(raw)
	} else {
		b, err = s.enc.Marshal(m)
	}
	if err != nil {
		return failure.Facade(failure.ReasonInternal, "writing the response: "+err.Error())
	}
	if !s.wrote {
		s.writeHeader(http.StatusOK, nil)
	}
	line := make([]byte, 0, len(b)+12)
	line = append(append(append(line, `{"result":`...), b...), "}\n"...)
	if _, err := s.w.Write(line); err != nil {
		return failure.Facade(failure.ReasonCanceled, "the REST caller went away: "+err.Error())
	}
	// Fails only when the writer cannot flush; the lines then go with the end.
	_ = http.NewResponseController(s.w).Flush()
	return nil
}

// oneLine is raw without the line breaks a line of NDJSON cannot hold; the
// upstream's compact JSON (the usual case) is returned as it is.
func oneLine(raw []byte) ([]byte, error) {
	if !bytes.ContainsAny(raw, "\r\n") {
		return raw, nil
	}
	var b bytes.Buffer
	err := json.Compact(&b, raw)
	return b.Bytes(), err
}

func (s *ndjsonStream) writeHeader(code int, f *failure.REST) {
	h := s.w.Header()
	if f != nil {
		writeFailureHeaders(h, *f, s.header)
	} else {
		metadataHeaders(h, s.header)
	}
	h.Set("Content-Type", ndjsonContentType)
	s.w.WriteHeader(code)
	s.wrote = true
}

// finish ends the response after the call returned err: nothing more on
// success, else an {"error": ...} line, with the failure's HTTP status and
// headers when no message was sent before it.
func (s *ndjsonStream) finish(err error) {
	if err == nil {
		if !s.wrote {
			s.writeHeader(http.StatusOK, nil)
		}
		return
	}
	f := restFailure(err)
	if !s.wrote {
		s.writeHeader(f.Status, &f)
	}
	line := make([]byte, 0, len(f.Body)+11)
	line = append(append(append(line, `{"error":`...), f.Body...), "}\n"...)
	_, _ = s.w.Write(line)
}
