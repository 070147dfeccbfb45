package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/acme/plugin-facade/internal/failure"
	"github.com/acme/plugin-facade/internal/service"
)

// The gateway answers a failed call as failure.RenderREST renders its
// status: in Confluent Cloud's own dialect (the Failure envelope, the
// upstream's HTTP status and headers), from the status alone, so that a
// failure reads the same whichever replica rendered it. This file only
// connects that rendering to grpc-gateway and to the call's response
// metadata.

// maxEcho is the most of a caller's input an error body repeats: enough to
// recognise a path or a value, too little to make an answer much larger than
// a request's first line.
const maxEcho = 128

// echo is what a failure message quotes of the caller's own input (a path, a
// query that does not parse): the one place that decides how much of it an
// error repeats. That is at most maxEcho bytes (cut at a character), control
// and non-ASCII characters escaped as in a Go string, and the length left
// out said.
func echo(s string) string {
	cut := ""
	if len(s) > maxEcho {
		n := maxEcho
		for n > 0 && !utf8.RuneStart(s[n]) {
			n--
		}
		s, cut = s[:n], fmt.Sprintf("... (%d more bytes)", len(s)-n)
	}
	q := strconv.QuoteToASCII(s)
	return q[1:len(q)-1] + cut
}

// restFailure renders err, an error of the service or of the gateway itself.
func restFailure(err error) failure.REST {
	return failure.RenderREST(failure.FromError(err).GRPCStatus())
}

// writeFailureHeaders sets the headers of f over those of the call's
// response metadata md.
func writeFailureHeaders(h http.Header, f failure.REST, md metadata.MD) {
	metadataHeaders(h, md)
	for k, v := range f.Header {
		h[k] = v
	}
}

// errorHandler is the gateway's error handler: every failure of a unary call,
// and of routing, answered as failure.RenderREST renders it.
func errorHandler(ctx context.Context, _ *runtime.ServeMux, _ runtime.Marshaler, w http.ResponseWriter, _ *http.Request, err error) {
	md, _ := runtime.ServerMetadataFromContext(ctx)
	writeFailure(w, md.HeaderMD, err)
}

// writeFailure answers err, a failure of a call whose response header
// metadata is md, as failure.RenderREST renders it.
func writeFailure(w http.ResponseWriter, md metadata.MD, err error) {
	var hse *runtime.HTTPStatusError
	if errors.As(err, &hse) { // a route the gateway does not serve
		err = routingFailure(hse.HTTPStatus, status.Convert(hse.Err).Message())
	}
	if st := status.Convert(err); st.Code() == codes.InvalidArgument && failure.Reason(st) == "" {
		// grpc-gateway's own words on a query it could not read, which
		// quote every value ("too many values for field ...").
		err = invalidQuery(st.Message())
	}
	f := restFailure(err)
	writeFailureHeaders(w.Header(), f, md)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(f.Status)
	_, _ = w.Write(f.Body)
}

// routingErrorHandler answers a request no route serves (404, 405) with an
// envelope whose code names the HTTP status (not_found, method_not_allowed).
func routingErrorHandler(ctx context.Context, mux *runtime.ServeMux, m runtime.Marshaler, w http.ResponseWriter, r *http.Request, httpStatus int) {
	errorHandler(ctx, mux, m, w, r, routingFailure(httpStatus,
		fmt.Sprintf("%s %s: %s", echo(r.Method), echo(r.URL.Path), http.StatusText(httpStatus))))
}

// routingFailure is the failure of a request no route serves.
func routingFailure(httpStatus int, msg string) error {
	reason := failure.ReasonInvalidArgument
	switch httpStatus {
	case http.StatusNotFound:
		reason = failure.ReasonNoRoute
	case http.StatusMethodNotAllowed:
		reason = failure.ReasonMethodNotAllowed
	case http.StatusRequestEntityTooLarge:
		reason = failure.ReasonBodyNotAccepted
	}
	return failure.Facade(reason, msg)
}

// outgoingHeader passes the response metadata the service sets (the upstream's
// X-Request-Id and X-RateLimit-* headers) to REST callers under their plain
// names, on success and failure alike. Other metadata is not forwarded: the
// gateway's default would add it with a Grpc-Metadata- prefix. Retry-After is
// left to the failure, which knows whose hint it is.
func outgoingHeader(key string) (string, bool) {
	name, ok := outgoingHeaders[strings.ToLower(key)]
	return name, ok
}

// outgoingHeaders maps the metadata keys outgoingHeader passes on to their
// header names, so that a call canonicalises none.
var outgoingHeaders = func() map[string]string {
	m := map[string]string{}
	for _, key := range service.ResponseHeaders {
		if key != service.MDRetryAfter {
			m[key] = http.CanonicalHeaderKey(key)
		}
	}
	return m
}()

// metadataHeaders adds the headers outgoingHeader passes on from md (under
// names already canonical, so set in the map directly).
func metadataHeaders(h http.Header, md metadata.MD) {
	for k, vs := range md {
		if name, ok := outgoingHeader(k); ok {
			h[name] = append(h[name], vs...)
		}
	}
}
