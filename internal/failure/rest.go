package failure

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"unicode"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	rpchttp "google.golang.org/genproto/googleapis/rpc/http"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/acme/plugin-facade/internal/upstream"
)

// REST is how a failure reads over REST, in Confluent Cloud's own dialect:
// the Failure envelope ({"errors":[{id, status, code, title, detail,
// source}]}) with an HTTP status and headers a client of the upstream
// already handles.
type REST struct {
	// Status is the HTTP status.
	Status int
	// Header holds the failure's own headers (the upstream's documented
	// headers, Retry-After, WWW-Authenticate), to set over any others.
	Header http.Header
	// Body is the Failure envelope.
	Body []byte
}

// RenderREST renders st, from st alone, so that the same status reads the
// same wherever it is rendered.
//
//   - An upstream error answer (after retries, the last one) is passed on: its
//     HTTP status, its documented headers and its envelope, as sent. An answer
//     whose body is not an envelope (a proxy's HTML page, an empty body) keeps
//     its status and gets an envelope of one error in its place.
//   - A failure that began in the facade gets the table's HTTP status and an
//     envelope of one error per problem (per field of an invalid request),
//     whose code names the case (restCode).
func RenderREST(st *status.Status) REST {
	if a := answerOf(st); a != nil && passesOn(a.GetStatus()) {
		return answerREST(st, a)
	}
	httpStatus := HTTPStatus(st)
	f := REST{Status: httpStatus, Header: http.Header{}}
	var (
		violations []*errdetails.BadRequest_FieldViolation
		retry      *errdetails.RetryInfo
	)
	in := errorInfo(st)
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.BadRequest:
			violations = append(violations, d.GetFieldViolations()...)
		case *errdetails.RetryInfo:
			retry = d
		}
	}
	if secs := upstream.Seconds(retry.GetRetryDelay().AsDuration()); secs > 0 &&
		(st.Code() == codes.ResourceExhausted || st.Code() == codes.Unavailable) {
		f.Header.Set("Retry-After", strconv.Itoa(secs))
	}
	if httpStatus == http.StatusUnauthorized {
		challenge := in.GetMetadata()[KeyWWWAuthenticate]
		if challenge == "" {
			challenge = DefaultChallenge
		}
		f.Header.Set("WWW-Authenticate", challenge)
	}
	code, title := restCode(in.GetReason(), st.Code()), statusText(httpStatus)
	var items []item
	for _, v := range violations {
		vcode := code
		if v.GetReason() != "" {
			vcode = strings.ToLower(v.GetReason())
		}
		items = append(items, item{Status: strconv.Itoa(httpStatus), Code: vcode, Title: title,
			Detail: v.GetField() + ": " + v.GetDescription(), Source: &source{Parameter: v.GetField()}})
	}
	if len(items) == 0 {
		items = append(items, item{Status: strconv.Itoa(httpStatus), Code: code, Title: title, Detail: st.Message()})
	}
	f.Body = envelope(items...)
	return f
}

// answerREST passes on the upstream's error answer a that st carries. (When
// the rate-limit guard knows the window ends later than a 429's Retry-After
// says, a caller that comes back sooner gets the guard's own 429, with the
// wait that works.)
func answerREST(st *status.Status, a *rpchttp.HttpResponse) REST {
	f := REST{Status: int(a.GetStatus()), Header: http.Header{}, Body: a.GetBody()}
	for _, h := range a.GetHeaders() {
		f.Header.Add(h.GetKey(), h.GetValue())
	}
	if len(f.Body) == 0 {
		f.Body = envelope(item{Status: strconv.Itoa(f.Status), Code: restCode(Reason(st), st.Code()),
			Title: statusText(f.Status), Detail: st.Message()})
	}
	return f
}

// answerOf is the upstream answer st carries; nil when it carries none.
func answerOf(st *status.Status) *rpchttp.HttpResponse { return detail[*rpchttp.HttpResponse](st) }

// item is one error of the Failure envelope, as the upstream documents it.
type item struct {
	Status string  `json:"status"`
	Code   string  `json:"code"`
	Title  string  `json:"title"`
	Detail string  `json:"detail,omitempty"`
	Source *source `json:"source,omitempty"`
}

type source struct {
	Parameter string `json:"parameter"`
}

func envelope(items ...item) []byte {
	b, _ := json.Marshal(struct {
		Errors []item `json:"errors"`
	}{items}) // strings and structs only: Marshal cannot fail
	return b
}

// restCode is the envelope's code for a failure the facade renders: its
// reason in lower case (upstream_timeout, rate_limit_exhausted, ...), or
// without one the gRPC code's name in snake case (not_found, internal, ...).
func restCode(reason string, code codes.Code) string {
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

func statusText(httpStatus int) string {
	if httpStatus == statusClientClosedRequest {
		return "Client Closed Request"
	}
	return http.StatusText(httpStatus)
}
