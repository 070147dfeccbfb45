package service

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/acme/plugin-facade/internal/upstream"
)

// Reasons of the google.rpc.ErrorInfo this service attaches when the upstream
// gave no application code of its own.
const (
	reasonUnreachable  = "UPSTREAM_UNREACHABLE"
	reasonTimeout      = "UPSTREAM_TIMEOUT"
	reasonCanceled     = "CANCELED_BY_CALLER"
	reasonUndecodable  = "UPSTREAM_RESPONSE_UNDECODABLE"
	reasonTooLarge     = "UPSTREAM_RESPONSE_TOO_LARGE"
	reasonThrottled    = "RATE_LIMIT_EXHAUSTED"
	reasonUnclassified = "UPSTREAM_ERROR"
)

// ErrorInfoWWWAuthenticate is the ErrorInfo metadata key of the upstream's
// WWW-Authenticate challenge on a 401, which the REST gateway sends on as
// that header.
const ErrorInfoWWWAuthenticate = "wwwAuthenticate"

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
// parameters (BadRequest) and retry hint (RetryInfo, QuotaFailure). domain is
// the upstream's host; meta describes the call's last answer.
func toStatus(err error, domain string, meta upstream.Meta) error {
	var (
		ue *upstream.Error
		de *upstream.DecodeError
		te *upstream.TransportError
		th *upstream.ThrottledError
	)
	retry, _ := upstream.RetryHint(err) // zero for a failure that is not temporary
	answers := meta.Attempts + meta.Shared
	switch {
	case errors.As(err, &ue):
		return upstreamErrorStatus(ue, domain, answers, retry).Err()
	case errors.As(err, &th) && meta.LastError != nil:
		// The guard stopped a retry: what the caller needs is the upstream's
		// own answer, with the guard's (longer) wait as its hint.
		return upstreamErrorStatus(meta.LastError, domain, answers, retry).Err()
	case errors.As(err, &th):
		return throttledStatus(th, domain).Err()
	case errors.As(err, &de):
		reason, what := reasonUndecodable, "a body this service cannot read: "+de.Err.Error()
		if errors.Is(de, upstream.ErrBodyTooLarge) {
			reason, what = reasonTooLarge, "a body larger than this service accepts"
		}
		st := status.New(codes.Internal, fmt.Sprintf("Confluent Cloud answered HTTP %d with %s%s",
			de.StatusCode, what, requestSuffix(de.RequestID)))
		details := []protoadapt.MessageV1{&errdetails.ErrorInfo{Reason: reason, Domain: domain,
			Metadata: map[string]string{"httpStatus": strconv.Itoa(de.StatusCode)}}}
		if de.RequestID != "" {
			details = append(details, requestInfo(de.RequestID))
		}
		return withDetails(st, details...).Err()
	case errors.As(err, &te) && (te.Canceled() || te.DeadlineExceeded()):
		code, reason, msg := codes.Canceled, reasonCanceled, "the call was canceled before Confluent Cloud answered"
		if te.DeadlineExceeded() {
			code, reason, msg = codes.DeadlineExceeded, reasonTimeout, "Confluent Cloud did not answer before the deadline"
		}
		return noAnswerStatus(code, reason, msg, domain, meta, 0).Err()
	case errors.As(err, &te):
		// Only the root cause ("connection refused", "no such host"): the
		// layers above it name internal addresses. Service.failure logs it whole.
		msg := "Confluent Cloud is unreachable, try again later: " + rootCause(te.Err)
		if answers > 1 {
			msg += fmt.Sprintf(" (%d attempts)", answers)
		}
		return noAnswerStatus(codes.Unavailable, reasonUnreachable, msg, domain, meta, retry).Err()
	default:
		return status.Error(codes.Internal, err.Error())
	}
}

// noAnswerStatus is the status of a call that ended without an answer of its
// own: a deadline, a cancellation, a connection that failed. When the upstream
// had answered an earlier attempt with an error (a 503 before the retry that
// timed out, say), the status keeps what it said: its words in the message, its
// HTTP status and reason in the ErrorInfo, its request id, and its retry hint
// when longer than retry (the hint of this failure; zero for none).
func noAnswerStatus(code codes.Code, reason, msg, domain string, meta upstream.Meta, retry time.Duration) *status.Status {
	info := &errdetails.ErrorInfo{Reason: reason, Domain: domain, Metadata: map[string]string{}}
	var details []protoadapt.MessageV1
	if e := meta.LastError; e != nil {
		earlier := upstreamErrorStatus(e, domain, 0, 0)
		msg += "; before that it answered: " + earlier.Message()
		info.Metadata["httpStatus"] = strconv.Itoa(e.StatusCode)
		info.Metadata["lastReason"] = reasonOf(e)
		if e.RequestID != "" {
			details = append(details, requestInfo(e.RequestID))
		}
		if e.RetryAfter > retry && retry > 0 {
			retry = e.RetryAfter
		}
	}
	if meta.Attempts > 0 {
		info.Metadata["attempts"] = strconv.Itoa(meta.Attempts)
	}
	details = append([]protoadapt.MessageV1{info}, details...)
	if retry > 0 {
		details = append(details, &errdetails.RetryInfo{RetryDelay: durationpb.New(retry)})
	}
	return withDetails(status.New(code, msg), details...)
}

// throttledStatus is the answer of the rate-limit guard, given without calling
// the upstream.
func throttledStatus(th *upstream.ThrottledError, domain string) *status.Status {
	secs := upstream.Seconds(th.RetryAfter)
	st := status.New(codes.ResourceExhausted, fmt.Sprintf(
		"the Confluent Cloud API rate limit for these credentials is exhausted; retry in %ds "+
			"(answered by plugin-facade without calling Confluent Cloud)", secs))
	info := &errdetails.ErrorInfo{Reason: reasonThrottled, Domain: domain, Metadata: map[string]string{
		"httpStatus": strconv.Itoa(http.StatusTooManyRequests), "answeredBy": "plugin-facade"}}
	addRateLimit(info.Metadata, th.RateLimit)
	return withDetails(st, info,
		&errdetails.RetryInfo{RetryDelay: durationpb.New(time.Duration(secs) * time.Second)},
		quotaFailure(th.RateLimit))
}

func quotaFailure(rl upstream.RateLimit) *errdetails.QuotaFailure {
	desc := "Confluent Cloud API rate limit exhausted"
	if rl.Limit >= 0 {
		desc = fmt.Sprintf("%s: %d requests per window", desc, rl.Limit)
	}
	return &errdetails.QuotaFailure{Violations: []*errdetails.QuotaFailure_Violation{
		{Subject: "Confluent Cloud API", Description: desc},
	}}
}

func addRateLimit(md map[string]string, rl upstream.RateLimit) {
	// Each field is -1 when its header was absent.
	if rl.Limit >= 0 {
		md["rateLimitLimit"] = strconv.Itoa(rl.Limit)
	}
	if rl.Remaining >= 0 {
		md["rateLimitRemaining"] = strconv.Itoa(rl.Remaining)
	}
	if rl.Reset >= 0 {
		md["rateLimitResetSeconds"] = strconv.Itoa(upstream.Seconds(rl.Reset))
	}
}

func requestSuffix(id string) string {
	if id == "" {
		return ""
	}
	return " (request id " + id + ")"
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

// upstreamErrorStatus is the status of an upstream error answer. attempts, when
// more than one, is said in the message: the caller learns that retrying at once
// is not worth it. retry is the failure's retry hint (upstream.RetryHint),
// given as RetryInfo; zero for a failure that is not temporary.
func upstreamErrorStatus(e *upstream.Error, domain string, attempts int, retry time.Duration) *status.Status {
	code := codeForHTTPStatus(e.StatusCode, e.Code())

	summary := e.Summary()
	switch {
	case summary == "" && e.Excerpt == "" && len(e.Items) == 0:
		summary = http.StatusText(e.StatusCode) + ", with an empty body"
	case summary == "":
		summary = http.StatusText(e.StatusCode)
	case len(e.Items) == 0:
		// Not the upstream's envelope: a proxy's page, say.
		summary = http.StatusText(e.StatusCode) + ", with a body that is not a Confluent Cloud error: " + summary
	}
	msg := fmt.Sprintf("Confluent Cloud: %s (HTTP %d", summary, e.StatusCode)
	if e.RequestID != "" {
		msg += ", request id " + e.RequestID
	}
	if attempts > 1 {
		msg += fmt.Sprintf(", after %d attempts", attempts)
	}
	msg += ")"
	// The client keeps the upstream's words valid UTF-8; a message must be,
	// whoever built the error.
	st := status.New(code, strings.ToValidUTF8(msg, "\uFFFD"))

	info := &errdetails.ErrorInfo{
		Reason:   reasonOf(e),
		Domain:   domain,
		Metadata: map[string]string{"httpStatus": strconv.Itoa(e.StatusCode)},
	}
	var ids, appCodes []string
	for _, it := range e.Items {
		if it.ID != "" {
			ids = append(ids, it.ID)
		}
		if it.Code != "" && !slices.Contains(appCodes, it.Code) {
			appCodes = append(appCodes, it.Code)
		}
	}
	if len(ids) > 0 {
		info.Metadata["errorIds"] = strings.Join(ids, ",")
	}
	if len(appCodes) > 0 {
		info.Metadata["codes"] = strings.Join(appCodes, ",")
	}
	if len(e.Items) > 1 {
		info.Metadata["errorCount"] = strconv.Itoa(len(e.Items))
	}
	if e.Authenticate != "" {
		info.Metadata[ErrorInfoWWWAuthenticate] = e.Authenticate
	}
	addRateLimit(info.Metadata, e.RateLimit)
	details := []protoadapt.MessageV1{info}
	if e.RequestID != "" {
		details = append(details, requestInfo(e.RequestID))
	}

	var violations []*errdetails.BadRequest_FieldViolation
	for _, it := range e.Items {
		if it.Source == nil {
			continue
		}
		for _, f := range []string{it.Source.Parameter, it.Source.Pointer} {
			if f != "" {
				violations = append(violations, &errdetails.BadRequest_FieldViolation{
					Field: f, Description: it.Summary(), Reason: strings.ToUpper(it.Code),
				})
			}
		}
	}
	if len(violations) > 0 {
		details = append(details, &errdetails.BadRequest{FieldViolations: violations})
	}
	if retry > 0 {
		details = append(details, &errdetails.RetryInfo{RetryDelay: durationpb.New(retry)})
	}
	if e.StatusCode == http.StatusTooManyRequests {
		details = append(details, quotaFailure(e.RateLimit))
	}
	return withDetails(st, details...)
}

// reasonOf is the ErrorInfo reason of an upstream answer: its own code in
// UPPER_SNAKE_CASE (AIP-193), or, without one, a name for the HTTP status such
// as NOT_FOUND.
func reasonOf(e *upstream.Error) string {
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
