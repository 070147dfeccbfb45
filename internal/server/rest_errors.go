package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/acme/plugin-facade/internal/service"
	"github.com/acme/plugin-facade/internal/upstream"
)

// The gateway answers a failed call in Confluent Cloud's own dialect: the
// Failure envelope ({"errors":[{id, status, code, title, detail, source}]})
// with an HTTP status a client of the upstream already handles.
//
//   - When the call ended with an error answer of the upstream (after
//     retries, the last one), that answer is passed on: its HTTP status, its
//     envelope exactly as sent, and its documented headers (X-Request-Id,
//     X-RateLimit-*, Retry-After, WWW-Authenticate). An answer whose body is
//     not an envelope (a proxy's HTML page, an empty body) keeps its status
//     and gets an envelope of one error in its place.
//   - When the failure began in the facade, the envelope has one error per
//     problem, whose code (restCode) names the case; see the README's error
//     mapping table.
//
// The gRPC status the service returns (a *service.Error, which keeps the
// upstream's answer) is what the gRPC face sends; this file only reads it.

// defaultChallenge is the WWW-Authenticate challenge of a 401 the upstream did
// not answer itself (no credential, or a malformed one): both schemes the
// service forwards.
const defaultChallenge = `Basic realm="Confluent Cloud", Bearer realm="Confluent Cloud"`

// Headers the gateway sets on failures.
const (
	headerRetryAfter      = "Retry-After"
	headerWWWAuthenticate = "WWW-Authenticate"
)

// failureItem is one error of the Failure envelope, as the upstream documents
// it. The facade fills what it knows of its own failures.
type failureItem struct {
	Status string         `json:"status"`
	Code   string         `json:"code"`
	Title  string         `json:"title"`
	Detail string         `json:"detail,omitempty"`
	Source *failureSource `json:"source,omitempty"`
}

type failureSource struct {
	Parameter string `json:"parameter"`
}

// restFailure is how a failed call reads over REST.
type restFailure struct {
	status int
	header http.Header // set over the headers of the call's response metadata
	body   []byte      // a Failure envelope
}

// failureOf renders err, an error of the service or of the gateway itself.
func failureOf(err error) restFailure {
	var se *service.Error
	if errors.As(err, &se) {
		if a := se.Answer(); a != nil && a.StatusCode >= 400 && a.StatusCode < 600 {
			return answerFailure(se, a)
		}
	}
	return facadeFailure(err)
}

// answerFailure passes on the upstream's error answer a: its status, its
// envelope and its documented headers, as sent. (When the rate-limit guard
// knows the window ends later than a 429's Retry-After says, a caller that
// comes back sooner gets the guard's own 429, with the wait that works.)
func answerFailure(se *service.Error, a *upstream.Error) restFailure {
	f := restFailure{status: a.StatusCode, header: a.Header.Clone(), body: a.Envelope}
	if f.header == nil {
		f.header = http.Header{}
	}
	if f.body == nil {
		st := se.GRPCStatus()
		f.body = envelope(failureItem{Status: strconv.Itoa(a.StatusCode), Code: codeOf(se.Reason(), st.Code()),
			Title: http.StatusText(a.StatusCode), Detail: st.Message()})
	}
	return f
}

// facadeFailure renders a failure that began in the facade: a refused
// request, no answer from the upstream, an answer that is not the resource,
// the rate-limit guard, a route the gateway does not serve, a panic.
func facadeFailure(err error) restFailure {
	httpStatus, routing := 0, false
	var hse *runtime.HTTPStatusError
	if errors.As(err, &hse) { // a route the gateway does not serve (routingErrorHandler)
		httpStatus, err, routing = hse.HTTPStatus, hse.Err, true
	}
	st := status.Convert(err)
	reason := ""
	var se *service.Error
	if errors.As(err, &se) {
		reason = se.Reason()
	}
	var (
		violations []*errdetails.BadRequest_FieldViolation
		retry      *errdetails.RetryInfo
	)
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			if reason == "" {
				reason = d.GetReason()
			}
		case *errdetails.BadRequest:
			violations = append(violations, d.GetFieldViolations()...)
		case *errdetails.RetryInfo:
			retry = d
		}
	}
	if httpStatus == 0 {
		httpStatus = restStatus(st.Code(), reason, se)
	}
	f := restFailure{status: httpStatus, header: http.Header{}}
	if secs := upstream.Seconds(retry.GetRetryDelay().AsDuration()); secs > 0 &&
		(st.Code() == codes.ResourceExhausted || st.Code() == codes.Unavailable) {
		f.header.Set(headerRetryAfter, strconv.Itoa(secs))
	}
	if httpStatus == http.StatusUnauthorized {
		f.header.Set(headerWWWAuthenticate, defaultChallenge)
	}
	code, title := codeOf(reason, st.Code()), http.StatusText(httpStatus)
	if routing {
		code = snakeCase(strings.ReplaceAll(title, " ", ""))
	}
	if title == "" {
		title = "Client Closed Request" // 499, the one status net/http does not name
	}
	var items []failureItem
	for _, v := range violations {
		vcode := code
		if v.GetReason() != "" {
			vcode = strings.ToLower(v.GetReason())
		}
		items = append(items, failureItem{Status: strconv.Itoa(httpStatus), Code: vcode, Title: title,
			Detail: v.GetField() + ": " + v.GetDescription(), Source: &failureSource{Parameter: v.GetField()}})
	}
	if len(items) == 0 {
		detail := st.Message()
		if se == nil { // the gateway's own words, which quote what the caller sent
			detail = echo(detail)
		}
		items = append(items, failureItem{Status: strconv.Itoa(httpStatus), Code: code, Title: title, Detail: detail})
	}
	f.body = envelope(items...)
	return f
}

// restStatus is the HTTP status of a failure that began in the facade: the
// gRPC code's (runtime.HTTPStatusFromCode), except that an upstream answer
// the facade could not use (not the resource, too large, a redirect) is a
// 502, as a gateway answers for an upstream it cannot make sense of.
func restStatus(code codes.Code, reason string, se *service.Error) int {
	switch {
	case reason == service.ReasonUndecodable || reason == service.ReasonTooLarge:
		return http.StatusBadGateway
	case se != nil && se.Answer() != nil: // neither 4xx nor 5xx
		return http.StatusBadGateway
	}
	return runtime.HTTPStatusFromCode(code)
}

// codeOf is the envelope's code for a failure of the facade: its reason in
// lower case (upstream_timeout, rate_limit_exhausted, ...), or without one
// the gRPC code's name in snake case (not_found, internal, ...).
func codeOf(reason string, code codes.Code) string {
	if reason != "" {
		return strings.ToLower(reason)
	}
	return snakeCase(code.String())
}

// snakeCase turns CamelCase into snake_case.
func snakeCase(s string) string {
	var b strings.Builder
	for i, r := range s {
		if unicode.IsUpper(r) {
			if i > 0 {
				b.WriteByte('_')
			}
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	return b.String()
}

func envelope(items ...failureItem) []byte {
	b, _ := json.Marshal(struct {
		Errors []failureItem `json:"errors"`
	}{items}) // strings and structs only: Marshal cannot fail
	return b
}

// writeHeaders sets the headers of f over those of the call's response
// metadata md.
func (f restFailure) writeHeaders(h http.Header, md metadata.MD) {
	metadataHeaders(h, md)
	for k, v := range f.header {
		h[k] = v
	}
}

// errorHandler is the gateway's error handler: every failure of a unary call,
// and of routing, answered as failureOf renders it.
func errorHandler(ctx context.Context, _ *runtime.ServeMux, _ runtime.Marshaler, w http.ResponseWriter, _ *http.Request, err error) {
	f := failureOf(err)
	md, _ := runtime.ServerMetadataFromContext(ctx)
	f.writeHeaders(w.Header(), md.HeaderMD)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(f.status)
	_, _ = w.Write(f.body)
}

// routingErrorHandler answers a request no route serves (404, 405) with an
// envelope whose code names the HTTP status (not_found, method_not_allowed).
func routingErrorHandler(ctx context.Context, mux *runtime.ServeMux, m runtime.Marshaler, w http.ResponseWriter, r *http.Request, httpStatus int) {
	code := codes.InvalidArgument
	switch httpStatus {
	case http.StatusNotFound:
		code = codes.NotFound
	case http.StatusMethodNotAllowed:
		code = codes.Unimplemented
	}
	errorHandler(ctx, mux, m, w, r, &runtime.HTTPStatusError{HTTPStatus: httpStatus,
		Err: status.Error(code, fmt.Sprintf("%s %s: %s", echo(r.Method), echo(r.URL.Path), http.StatusText(httpStatus)))})
}

// maxEcho is the most of a caller's input an error body repeats: enough to
// recognise a path or a value, too little to make an answer larger than the
// request that caused it.
const maxEcho = 128

// echo is s as an error body may repeat it: at most maxEcho bytes (cut at a
// character), control and non-ASCII characters escaped as in a Go string, and
// the length left out said.
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

// outgoingHeader passes the response metadata the service sets (the upstream's
// X-Request-Id and X-RateLimit-* headers) to REST callers under their plain
// names, on success and failure alike. Other metadata is not forwarded: the
// gateway's default would add it with a Grpc-Metadata- prefix. Retry-After is
// left to the failure, which knows whose hint it is.
func outgoingHeader(key string) (string, bool) {
	key = strings.ToLower(key)
	if key != service.MDRetryAfter && slices.Contains(service.ResponseHeaders, key) {
		return http.CanonicalHeaderKey(key), true
	}
	return "", false
}

// metadataHeaders adds the headers outgoingHeader passes on from md.
func metadataHeaders(h http.Header, md metadata.MD) {
	for k, vs := range md {
		if name, ok := outgoingHeader(k); ok {
			for _, v := range vs {
				h.Add(name, v)
			}
		}
	}
}
