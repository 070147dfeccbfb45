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
	reasonUndecodable  = "UPSTREAM_RESPONSE_UNDECODABLE"
	reasonTooLarge     = "UPSTREAM_RESPONSE_TOO_LARGE"
	reasonThrottled    = "RATE_LIMIT_EXHAUSTED"
	reasonUnclassified = "UPSTREAM_ERROR"
)

// defaultRetryDelay is the RetryInfo of an UNAVAILABLE or RESOURCE_EXHAUSTED
// answer for which the upstream gave no hint of its own.
const defaultRetryDelay = time.Second

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
	switch {
	case errors.As(err, &ue):
		return upstreamErrorStatus(ue, domain, meta.Attempts).Err()
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
		code, msg := codes.Canceled, "the call was canceled before Confluent Cloud answered"
		if te.DeadlineExceeded() {
			code, msg = codes.DeadlineExceeded, "Confluent Cloud did not answer before the deadline"
		}
		return afterEarlierAnswer(status.New(code, msg), domain, meta).Err()
	case errors.As(err, &te):
		// Only the root cause ("connection refused", "no such host"): the
		// layers above it name internal addresses. Service.fail logs it whole.
		msg := "Confluent Cloud is unreachable, try again later: " + rootCause(te.Err)
		if meta.Attempts > 1 {
			msg += fmt.Sprintf(" (%d attempts)", meta.Attempts)
		}
		st := withDetails(status.New(codes.Unavailable, msg),
			&errdetails.ErrorInfo{Reason: reasonUnreachable, Domain: domain},
			&errdetails.RetryInfo{RetryDelay: durationpb.New(defaultRetryDelay)})
		return afterEarlierAnswer(st, domain, meta).Err()
	default:
		return status.Error(codes.Internal, err.Error())
	}
}

// afterEarlierAnswer adds to st, a failure without an answer of its own, what
// the upstream said in the call's last error answer (a 503 before the retry that
// timed out, say): its words in the message and its request id.
func afterEarlierAnswer(st *status.Status, domain string, meta upstream.Meta) *status.Status {
	e := meta.LastError
	if e == nil {
		return st
	}
	earlier := upstreamErrorStatus(e, domain, 0)
	p := st.Proto()
	p.Message += "; before that it answered: " + earlier.Message()
	out := status.FromProto(p)
	if e.RequestID != "" && !hasDetail[*errdetails.RequestInfo](out) {
		out = withDetails(out, requestInfo(e.RequestID))
	}
	return out
}

func hasDetail[T any](st *status.Status) bool {
	for _, d := range st.Details() {
		if _, ok := d.(T); ok {
			return true
		}
	}
	return false
}

// throttledStatus is the answer of the rate-limit guard, given without calling
// the upstream.
func throttledStatus(th *upstream.ThrottledError, domain string) *status.Status {
	secs := int((th.RetryAfter + time.Second - 1) / time.Second)
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
		md["rateLimitResetSeconds"] = strconv.Itoa(int(rl.Reset.Seconds()))
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
// is not worth it.
func upstreamErrorStatus(e *upstream.Error, domain string, attempts int) *status.Status {
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
		Reason:   reason(e),
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
		info.Metadata["wwwAuthenticate"] = e.Authenticate
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
	if code == codes.ResourceExhausted || code == codes.Unavailable {
		delay := e.RetryAfter
		if delay <= 0 {
			delay = defaultRetryDelay
		}
		details = append(details, &errdetails.RetryInfo{RetryDelay: durationpb.New(delay)})
	}
	if e.StatusCode == http.StatusTooManyRequests {
		details = append(details, quotaFailure(e.RateLimit))
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
