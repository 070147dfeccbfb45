// Package failure is the facade's one failure value. A failed call is an
// *Error, built by one of a few constructors (FromUpstream for what the
// upstream client returned, Refused for credentials, Invalid for a request,
// Facade for the facade's own faults); its gRPC code and HTTP status come from
// one table (table.go); and it is rendered twice: as the google.rpc.Status
// gRPC callers get (GRPCStatus), with every detail, and as the REST Failure
// envelope, HTTP status and headers (REST), computed from that status alone.
// So a failure that crosses a process boundary as its status (the fleet's
// watch relay) reads the same, byte for byte, wherever it is rendered.
//
// It knows gRPC, the google.rpc details and the upstream client's error types;
// package upstream knows nothing of it.
package failure

import (
	"context"
	"errors"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/durationpb"
)

// FacadeDomain is the ErrorInfo domain of a failure the facade decided on its
// own, without the upstream (an invalid request, a refused credential, a
// fault of the facade). A failure that stems from the upstream (its answer,
// its reachability, its rate limit) has the upstream's host as its domain.
const FacadeDomain = "plugin-facade"

// Keys of the ErrorInfo metadata (lowerCamelCase, AIP-193). Every one is
// written here and read by callers (the REST rendering reads
// KeyWWWAuthenticate): they are part of the contract.
const (
	// KeyHTTPStatus is the upstream answer's HTTP status (of the answer
	// before a deadline or a failed connection, with KeyLastReason).
	KeyHTTPStatus = "httpStatus"
	// KeyErrorIDs are the ids of the envelope's errors, comma-separated.
	KeyErrorIDs = "errorIds"
	// KeyCodes are the distinct application codes of the envelope's errors.
	KeyCodes = "codes"
	// KeyErrorCount is how many errors the envelope held, when several.
	KeyErrorCount = "errorCount"
	// KeyWWWAuthenticate is the challenge of a 401: the upstream's, or the
	// facade's own when it refused the credential.
	KeyWWWAuthenticate = "wwwAuthenticate"
	// KeyRateLimitLimit, KeyRateLimitRemaining and KeyRateLimitReset are the
	// X-RateLimit-* headers (the reset in seconds), when sent.
	KeyRateLimitLimit     = "rateLimitLimit"
	KeyRateLimitRemaining = "rateLimitRemaining"
	KeyRateLimitReset     = "rateLimitResetSeconds"
	// KeyLastReason is the reason of the upstream's answer to an earlier
	// attempt of a call that ended without an answer of its own.
	KeyLastReason = "lastReason"
	// KeyAttempts is how many requests a call that got no answer sent.
	KeyAttempts = "attempts"
	// KeyAnsweredBy is FacadeDomain when the rate-limit guard answered
	// without calling the upstream.
	KeyAnsweredBy = "answeredBy"
)

// DefaultChallenge is the WWW-Authenticate challenge of a credential the
// facade refused (none, or a malformed one): both schemes it forwards.
const DefaultChallenge = `Basic realm="Confluent Cloud", Bearer realm="Confluent Cloud"`

// Error is a failed call: the status its callers get (GRPCStatus, which gRPC
// sends as it is), and the error it began with (Unwrap), for errors.As and
// logs in this process only. Everything a caller learns is in the status.
type Error struct {
	st    *status.Status
	cause error
}

// GRPCStatus is the failure as a google.rpc.Status, with every detail.
func (e *Error) GRPCStatus() *status.Status { return e.st }

// Error is the status's error text.
func (e *Error) Error() string { return e.st.Err().Error() }

// Unwrap returns the error the failure began with: an error of the upstream
// client (*upstream.Error, *upstream.TransportError, ...); nil when the
// failure began in the facade.
func (e *Error) Unwrap() error { return e.cause }

// Reason is the failure's ErrorInfo reason.
func (e *Error) Reason() string { return Reason(e.st) }

// Reason is the reason of st's ErrorInfo; "" when it has none.
func Reason(st *status.Status) string {
	if info := errorInfo(st); info != nil {
		return info.GetReason()
	}
	return ""
}

func errorInfo(st *status.Status) *errdetails.ErrorInfo { return detail[*errdetails.ErrorInfo](st) }

// detail is st's first detail of type T; nil when it has none.
func detail[T any](st *status.Status) T {
	var zero T
	for _, d := range st.Details() {
		if t, ok := d.(T); ok {
			return t
		}
	}
	return zero
}

// Violation is one invalid field of a request.
type Violation struct {
	// Field is the field's name: its proto name, or its REST query parameter.
	Field string
	// Description says what is wrong with it.
	Description string
	// Reason names the problem in UPPER_SNAKE_CASE (INVALID_IDENTIFIER).
	Reason string
}

// Invalid is the failure of a request with the given invalid fields, every
// one named in the message and in a google.rpc.BadRequest. It is never sent
// upstream.
func Invalid(violations ...Violation) *Error {
	parts := make([]string, len(violations))
	fvs := make([]*errdetails.BadRequest_FieldViolation, len(violations))
	for i, v := range violations {
		parts[i] = v.Field + ": " + v.Description
		fvs[i] = &errdetails.BadRequest_FieldViolation{Field: v.Field, Description: v.Description, Reason: v.Reason}
	}
	return newError(nil, ReasonInvalidArgument, "invalid request: "+strings.Join(parts, "; "),
		info(ReasonInvalidArgument, FacadeDomain, nil), &errdetails.BadRequest{FieldViolations: fvs})
}

// Refused is the failure of a call whose credential the facade refused
// before calling the upstream: reason is ReasonNoCredentials or
// ReasonBadCredentials; msg says what to send instead, never the credential.
func Refused(reason, msg string) *Error {
	return newError(nil, reason, msg,
		info(reason, FacadeDomain, map[string]string{KeyWWWAuthenticate: DefaultChallenge}))
}

// Facade is a failure of the facade itself, one of the reasons of the table
// that begin in the facade (ReasonInternal, ReasonShuttingDown, ...).
func Facade(reason, msg string) *Error {
	return newError(nil, reason, msg, info(reason, FacadeDomain, nil))
}

// Busy is a failure of a limit of the facade's own (ReasonTooManyCalls,
// ReasonTooManyWatchers): what it bounds comes back as calls end, so it says
// when to try again (RetryInfo, and Retry-After over REST).
func Busy(reason, msg string, retry time.Duration) *Error {
	return newError(nil, reason, msg, info(reason, FacadeDomain, nil),
		&errdetails.RetryInfo{RetryDelay: durationpb.New(retry)})
}

// FromContext is the failure of a call its caller's context ended (err is
// ctx.Err()) before the facade had anything else to say: a watch the caller
// left, or whose deadline passed, between two polls.
func FromContext(err error) *Error {
	if errors.Is(err, context.DeadlineExceeded) {
		return newError(err, ReasonDeadline, "the caller's deadline passed", info(ReasonDeadline, FacadeDomain, nil))
	}
	return newError(err, ReasonCanceled, "the caller canceled the call", info(ReasonCanceled, FacadeDomain, nil))
}

// newError builds the Error of a failure of the table's reason, whose code it
// takes from the table.
func newError(cause error, reason, msg string, details ...protoadapt.MessageV1) *Error {
	return &Error{st: withDetails(status.New(facadeKinds[reason].code, msg), details...), cause: cause}
}

func info(reason, domain string, md map[string]string) *errdetails.ErrorInfo {
	if md == nil {
		md = map[string]string{}
	}
	return &errdetails.ErrorInfo{Reason: reason, Domain: domain, Metadata: md}
}

// withDetails attaches details to st, one at a time: one that cannot be
// marshaled (a string that is not valid UTF-8, say) is left out rather than
// taking the others, or the status itself, with it.
func withDetails(st *status.Status, details ...protoadapt.MessageV1) *status.Status {
	for _, d := range details {
		if withD, err := st.WithDetails(d); err == nil {
			st = withD
		}
	}
	return st
}

// FromError is err as a failure: itself when it is one, else its status
// (status.Convert). A status this package did not build (grpc-gateway's own,
// for a path it cannot parse, say) gets the ErrorInfo every failure has, its
// reason the code's name (INVALID_ARGUMENT), its domain FacadeDomain.
func FromError(err error) *Error {
	if f, ok := errors.AsType[*Error](err); ok {
		return f
	}
	st := status.Convert(err)
	if errorInfo(st) == nil {
		st = withDetails(st, info(strings.ToUpper(snakeCase(st.Code().String())), FacadeDomain, nil))
	}
	return &Error{st: st, cause: err}
}

// FromStatus is the Error of a status another process built (the fleet's
// relay carries failures as their status): it renders as it did there.
func FromStatus(st *status.Status) *Error {
	return &Error{st: st}
}
