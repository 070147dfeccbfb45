package service

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/acme/plugin-facade/internal/upstream"
)

// errorDomain is the google.rpc.ErrorInfo domain of failures that come from
// Confluent Cloud, as opposed to the facade itself.
const errorDomain = "api.confluent.cloud"

// Reasons of the google.rpc.ErrorInfo this service attaches when the upstream
// gave no application code of its own.
const (
	reasonUnreachable  = "UPSTREAM_UNREACHABLE"
	reasonUndecodable  = "UPSTREAM_RESPONSE_UNDECODABLE"
	reasonUnclassified = "UPSTREAM_ERROR"
)

// codeForHTTPStatus maps an upstream HTTP status to the gRPC code the service
// answers with. upstreamCode, the upstream's application error code, only matters
// for 409, where a "duplicate" code means ALREADY_EXISTS rather than ABORTED.
func codeForHTTPStatus(httpStatus int, upstreamCode string) codes.Code {
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
		if c := strings.ToLower(upstreamCode); strings.Contains(c, "duplicate") || strings.Contains(c, "already_exists") {
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

// toStatus turns an error of the upstream client into a gRPC status error that
// keeps everything a caller needs: the upstream's words in the message, and in
// the details its error code (ErrorInfo), request id (RequestInfo), offending
// parameter (BadRequest) and retry hint (RetryInfo, QuotaFailure).
func toStatus(err error) error {
	var (
		ue *upstream.Error
		de *upstream.DecodeError
		te *upstream.TransportError
	)
	switch {
	case errors.As(err, &ue):
		return upstreamErrorStatus(ue).Err()
	case errors.As(err, &de):
		st := status.New(codes.Internal, "Confluent Cloud answered with a body this service cannot read: "+de.Err.Error())
		details := []protoadapt.MessageV1{&errdetails.ErrorInfo{Reason: reasonUndecodable, Domain: errorDomain,
			Metadata: map[string]string{"httpStatus": strconv.Itoa(de.StatusCode)}}}
		if de.RequestID != "" {
			details = append(details, requestInfo(de.RequestID))
		}
		return withDetails(st, details...).Err()
	case errors.As(err, &te) && te.Canceled():
		return status.Error(codes.Canceled, "the call was canceled before Confluent Cloud answered")
	case errors.As(err, &te) && te.DeadlineExceeded():
		return status.Error(codes.DeadlineExceeded, "Confluent Cloud did not answer before the deadline")
	case errors.As(err, &te):
		// Only the root cause ("connection refused", "no such host"): the
		// layers above it name internal addresses. Service.fail logs it whole.
		st := status.New(codes.Unavailable, "Confluent Cloud is unreachable, try again later: "+rootCause(te.Err))
		return withDetails(st, &errdetails.ErrorInfo{Reason: reasonUnreachable, Domain: errorDomain}).Err()
	default:
		return status.Error(codes.Internal, err.Error())
	}
}

// rootCause returns the message of the innermost wrapped error; for a DNS
// failure, only what went wrong ("no such host"), not the resolver's address.
func rootCause(err error) string {
	var dns *net.DNSError
	if errors.As(err, &dns) && dns.Err != "" {
		return dns.Err
	}
	for {
		inner := errors.Unwrap(err)
		if inner == nil {
			return err.Error()
		}
		err = inner
	}
}

func upstreamErrorStatus(e *upstream.Error) *status.Status {
	code := codeForHTTPStatus(e.StatusCode, e.Code())

	summary := e.Summary()
	if summary == "" {
		summary = http.StatusText(e.StatusCode)
	}
	msg := fmt.Sprintf("Confluent Cloud: %s (HTTP %d", summary, e.StatusCode)
	if e.RequestID != "" {
		msg += ", request id " + e.RequestID
	}
	msg += ")"
	st := status.New(code, msg)

	info := &errdetails.ErrorInfo{
		Reason:   reason(e),
		Domain:   errorDomain,
		Metadata: map[string]string{"httpStatus": strconv.Itoa(e.StatusCode)},
	}
	if c := e.Code(); c != "" {
		info.Metadata["code"] = c
	}
	if len(e.Items) > 0 && e.Items[0].ID != "" {
		info.Metadata["errorId"] = e.Items[0].ID
	}
	if e.Authenticate != "" {
		info.Metadata["wwwAuthenticate"] = e.Authenticate
	}
	rl := e.RateLimit // each field is -1 when its header was absent
	if rl.Limit >= 0 {
		info.Metadata["rateLimitLimit"] = strconv.Itoa(rl.Limit)
	}
	if rl.Remaining >= 0 {
		info.Metadata["rateLimitRemaining"] = strconv.Itoa(rl.Remaining)
	}
	if rl.Reset >= 0 {
		info.Metadata["rateLimitResetSeconds"] = strconv.Itoa(int(rl.Reset.Seconds()))
	}
	details := []protoadapt.MessageV1{info}
	if e.RequestID != "" {
		details = append(details, requestInfo(e.RequestID))
	}

	var violations []*errdetails.BadRequest_FieldViolation
	for _, it := range e.Items {
		if it.Source == nil {
			continue
		}
		f := it.Source.Parameter
		if f == "" {
			f = it.Source.Pointer
		}
		if f != "" {
			violations = append(violations, &errdetails.BadRequest_FieldViolation{
				Field: f, Description: it.Summary(), Reason: strings.ToUpper(it.Code),
			})
		}
	}
	if len(violations) > 0 {
		details = append(details, &errdetails.BadRequest{FieldViolations: violations})
	}
	if e.RetryAfter > 0 {
		details = append(details, &errdetails.RetryInfo{RetryDelay: durationpb.New(e.RetryAfter)})
	}
	if e.StatusCode == http.StatusTooManyRequests {
		desc := "Confluent Cloud API rate limit exhausted"
		if e.RateLimit.Limit >= 0 {
			desc = fmt.Sprintf("%s: %d requests per window", desc, e.RateLimit.Limit)
		}
		details = append(details, &errdetails.QuotaFailure{Violations: []*errdetails.QuotaFailure_Violation{
			{Subject: "Confluent Cloud API", Description: desc},
		}})
	}
	return withDetails(st, details...)
}

// reason is the ErrorInfo reason: the upstream's own code in UPPER_SNAKE_CASE
// (AIP-193), or, without one, a name for the HTTP status such as NOT_FOUND.
func reason(e *upstream.Error) string {
	src := e.Code()
	if src == "" {
		src = http.StatusText(e.StatusCode)
	}
	var b strings.Builder
	for _, r := range strings.ToUpper(src) {
		switch {
		case 'A' <= r && r <= 'Z', '0' <= r && r <= '9':
			b.WriteRune(r)
		case b.Len() > 0 && !strings.HasSuffix(b.String(), "_"):
			b.WriteByte('_')
		}
	}
	out := strings.TrimSuffix(b.String(), "_")
	if len(out) > 63 {
		out = strings.TrimSuffix(out[:63], "_")
	}
	if out == "" || out[0] < 'A' || out[0] > 'Z' {
		return reasonUnclassified
	}
	return out
}

func requestInfo(id string) *errdetails.RequestInfo {
	return &errdetails.RequestInfo{RequestId: id, ServingData: "Confluent Cloud X-Request-Id"}
}

// withDetails attaches details to st. Attaching only fails for messages that
// cannot be marshaled, which errdetails messages always can; st is returned
// unchanged in that case rather than losing the status itself.
func withDetails(st *status.Status, details ...protoadapt.MessageV1) *status.Status {
	if withD, err := st.WithDetails(details...); err == nil {
		return withD
	}
	return st
}
