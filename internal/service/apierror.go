package service

import (
	"errors"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/status"

	"github.com/acme/plugin-facade/internal/upstream"
)

// Reasons a call fails for that begin in this service, as they appear in the
// ErrorInfo of its status (or, for credentials, only in Error.Reason: that
// status carries no ErrorInfo). The REST gateway tells its callers the same
// reasons in its own dialect.
const (
	ReasonUnreachable    = reasonUnreachable
	ReasonTimeout        = reasonTimeout
	ReasonCanceled       = reasonCanceled
	ReasonUndecodable    = reasonUndecodable
	ReasonTooLarge       = reasonTooLarge
	ReasonRateLimited    = reasonThrottled
	ReasonNoCredentials  = "NO_CREDENTIALS"
	ReasonBadCredentials = "INVALID_CREDENTIALS"
)

// Error is what PluginService's methods return when a call fails after its
// request was accepted, or for want of a credential: the gRPC status the
// caller gets (GRPCStatus, so gRPC sends it as it is), and the failure it
// stands for (Unwrap, Answer), so that a face of the service that speaks the
// upstream's own dialect, the REST gateway, can pass the upstream's answer on
// in its own words rather than rebuild it from the status.
type Error struct {
	status *status.Status
	cause  error
	answer *upstream.Error
	reason string
}

// GRPCStatus is the status the caller gets over gRPC.
func (e *Error) GRPCStatus() *status.Status { return e.status }

// Error is the status's error text.
func (e *Error) Error() string { return e.status.Err().Error() }

// Unwrap returns the upstream client's error the call failed with: an
// *upstream.Error, *upstream.TransportError, *upstream.DecodeError or
// *upstream.ThrottledError; nil when the call never reached the client.
func (e *Error) Unwrap() error { return e.cause }

// Answer is the upstream's error answer that the call ended with (after
// retries, the last one); nil when it ended without one of its own: refused
// before the upstream was called, unreachable, out of time, or a 2xx answer
// that is not the resource. When the rate-limit guard stopped a retry, it is
// the upstream's answer that was to be retried.
func (e *Error) Answer() *upstream.Error { return e.answer }

// Reason is the failure's reason: one of the Reason constants when it began
// in this service, else the ErrorInfo reason of the upstream's answer (its
// code in UPPER_SNAKE_CASE, or the HTTP status name); "" when the status
// says none.
func (e *Error) Reason() string {
	if e.reason != "" {
		return e.reason
	}
	for _, d := range e.status.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info.GetReason()
		}
	}
	return ""
}

// refused is the Error of a call refused before the upstream was called.
func refused(st *status.Status, reason string) *Error {
	return &Error{status: st, reason: reason}
}

// upstreamFailure is the Error of a call the upstream client failed: err,
// with meta describing the call's last answer.
func upstreamFailure(err error, domain string, meta upstream.Meta) *Error {
	e := &Error{status: status.Convert(toStatus(err, domain, meta)), cause: err}
	var (
		ue *upstream.Error
		th *upstream.ThrottledError
	)
	switch {
	case errors.As(err, &ue):
		e.answer = ue
	case errors.As(err, &th):
		e.answer = meta.LastError // nil when the guard answered before any request
	}
	return e
}
