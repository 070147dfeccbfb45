package failure

import (
	"net/http"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The one table of what a failure is in each protocol: its gRPC code and its
// HTTP status. An upstream answer keeps its own HTTP status (codeOfAnswer
// gives its code); a failure that begins in the facade is one of the reasons
// of facadeKinds; any other status (one this package did not build) reads
// over REST as grpc-gateway maps its code. The error mapping table of docs/errors.md
// is tested against it (TestREADMEMapsAsTheTable).

// Reasons of the ErrorInfo of the failures that begin in the facade. An
// upstream answer's reason is its own code in UPPER_SNAKE_CASE, or its HTTP
// status's name (answerReason).
const (
	ReasonUnreachable      = "UPSTREAM_UNREACHABLE"
	ReasonTimeout          = "UPSTREAM_TIMEOUT"
	ReasonCanceled         = "CANCELED_BY_CALLER"
	ReasonDeadline         = "DEADLINE_EXCEEDED"
	ReasonUndecodable      = "UPSTREAM_RESPONSE_UNDECODABLE"
	ReasonTooLarge         = "UPSTREAM_RESPONSE_TOO_LARGE"
	ReasonRateLimited      = "RATE_LIMIT_EXHAUSTED"
	ReasonInvalidArgument  = "INVALID_ARGUMENT"
	ReasonNoCredentials    = "NO_CREDENTIALS"
	ReasonBadCredentials   = "INVALID_CREDENTIALS"
	ReasonInternal         = "INTERNAL"
	ReasonShuttingDown     = "UNAVAILABLE"
	ReasonNoRoute          = "NOT_FOUND"
	ReasonMethodNotAllowed = "METHOD_NOT_ALLOWED"
	// The limits of internal/server (Limits): a request body (REST routes
	// take none), and calls or watches beyond their bounds.
	ReasonBodyNotAccepted = "REQUEST_BODY_NOT_ACCEPTED"
	ReasonTooManyCalls    = "TOO_MANY_CALLS"
	ReasonTooManyWatchers = "TOO_MANY_WATCHERS"
)

// reasonUnclassified is the reason of an answer whose code and status say
// nothing nameable.
const reasonUnclassified = "UPSTREAM_ERROR"

// kind is what a failure is in each protocol.
type kind struct {
	code codes.Code
	http int
}

// facadeKinds are the failures that begin in the facade, by reason.
var facadeKinds = map[string]kind{
	ReasonUnreachable: {codes.Unavailable, http.StatusServiceUnavailable},
	ReasonTimeout:     {codes.DeadlineExceeded, http.StatusGatewayTimeout},
	ReasonCanceled:    {codes.Canceled, statusClientClosedRequest},
	ReasonDeadline:    {codes.DeadlineExceeded, http.StatusGatewayTimeout},
	// An answer the facade cannot use is a gateway's fault to report, 502.
	ReasonUndecodable:      {codes.Internal, http.StatusBadGateway},
	ReasonTooLarge:         {codes.Internal, http.StatusBadGateway},
	ReasonRateLimited:      {codes.ResourceExhausted, http.StatusTooManyRequests},
	ReasonInvalidArgument:  {codes.InvalidArgument, http.StatusBadRequest},
	ReasonNoCredentials:    {codes.Unauthenticated, http.StatusUnauthorized},
	ReasonBadCredentials:   {codes.Unauthenticated, http.StatusUnauthorized},
	ReasonInternal:         {codes.Internal, http.StatusInternalServerError},
	ReasonShuttingDown:     {codes.Unavailable, http.StatusServiceUnavailable},
	ReasonNoRoute:          {codes.NotFound, http.StatusNotFound},
	ReasonMethodNotAllowed: {codes.Unimplemented, http.StatusMethodNotAllowed},
	ReasonBodyNotAccepted:  {codes.InvalidArgument, http.StatusRequestEntityTooLarge},
	ReasonTooManyCalls:     {codes.ResourceExhausted, http.StatusTooManyRequests},
	ReasonTooManyWatchers:  {codes.ResourceExhausted, http.StatusTooManyRequests},
	// internal/caller's (callers.go).
	ReasonBadCallerToken: {codes.Unauthenticated, http.StatusUnauthorized},
	ReasonCallerUnknown:  {codes.PermissionDenied, http.StatusForbidden},
	ReasonCallerMethod:   {codes.PermissionDenied, http.StatusForbidden},
	ReasonEnvironment:    {codes.PermissionDenied, http.StatusForbidden},
	ReasonPlugin:         {codes.PermissionDenied, http.StatusForbidden},
	ReasonShareExhausted: {codes.ResourceExhausted, http.StatusTooManyRequests},
}

// statusClientClosedRequest is 499, the status of a call its caller left,
// which net/http does not name.
const statusClientClosedRequest = 499

// codeOfAnswer is the gRPC code of an upstream answer of the HTTP status
// httpStatus. appCode, the upstream's application code, only matters for
// 409, where a "duplicate" code means ALREADY_EXISTS rather than ABORTED.
func codeOfAnswer(httpStatus int, appCode string) codes.Code {
	switch httpStatus {
	case http.StatusBadRequest:
		return codes.InvalidArgument
	case http.StatusUnauthorized:
		return codes.Unauthenticated
	case http.StatusForbidden:
		return codes.PermissionDenied
	case http.StatusNotFound:
		return codes.NotFound
	case http.StatusConflict:
		if c := strings.ToLower(appCode); strings.Contains(c, "duplicate") || strings.Contains(c, "already_exists") {
			return codes.AlreadyExists
		}
		return codes.Aborted
	case http.StatusTooManyRequests:
		return codes.ResourceExhausted
	case http.StatusNotImplemented:
		return codes.Unimplemented
	case http.StatusBadGateway, http.StatusServiceUnavailable:
		return codes.Unavailable
	case http.StatusGatewayTimeout:
		return codes.DeadlineExceeded
	}
	switch {
	case httpStatus >= 400 && httpStatus < 500:
		return codes.FailedPrecondition
	case httpStatus >= 500 && httpStatus < 600:
		return codes.Internal
	default:
		// 1xx and 3xx are not answers this client can act on.
		return codes.Unknown
	}
}

// HTTPStatus is the HTTP status st reads as over REST: an upstream error
// answer's own (502 for an answer that is not an error, such as a redirect
// not followed), the table's for a failure of the facade, and grpc-gateway's
// for the code of any other status.
func HTTPStatus(st *status.Status) int {
	if a := answerOf(st); a != nil {
		if passesOn(a.GetStatus()) {
			return int(a.GetStatus())
		}
		return http.StatusBadGateway
	}
	if k, ok := facadeKinds[Reason(st)]; ok && k.code == st.Code() {
		return k.http
	}
	return runtime.HTTPStatusFromCode(st.Code())
}

// passesOn reports whether an upstream answer of this status is passed on to
// REST callers as it is: an error answer.
func passesOn(httpStatus int32) bool { return httpStatus >= 400 && httpStatus < 600 }
