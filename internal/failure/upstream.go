package failure

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
	rpchttp "google.golang.org/genproto/googleapis/rpc/http"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/acme/plugin-facade/internal/upstream"
)

// MaxCarriedEnvelope bounds the upstream's Failure envelope carried in a
// status (its google.rpc.HttpResponse) to be passed on over REST as sent: a
// status travels in gRPC trailers, which clients bound (8 KiB by default for
// some). A larger envelope, rare, is not carried: REST callers then get an
// envelope the facade writes from the status, with the upstream's status and
// headers still as sent.
const MaxCarriedEnvelope = 4 << 10

// FromUpstream is the failure of a call the upstream client failed with err;
// meta describes the call's last answer, and domain is the upstream's host.
// The status keeps everything a caller needs: the upstream's words in the
// message, and in the details its error code (ErrorInfo), request id
// (RequestInfo), offending parameters (BadRequest), retry hint (RetryInfo,
// QuotaFailure), and the answer itself (HttpResponse) for the REST face.
func FromUpstream(err error, domain string, meta upstream.Meta) *Error {
	retry, _ := upstream.RetryHint(err) // zero for a failure that is not temporary
	answers := meta.Attempts + meta.Shared
	if a := answerReported(err, meta); a != nil {
		return &Error{st: answerStatus(a, domain, answers, retry), cause: err}
	}
	var (
		th *upstream.ThrottledError
		de *upstream.DecodeError
		te *upstream.TransportError
	)
	var st *status.Status
	switch {
	case errors.As(err, &th):
		st = throttledStatus(th, domain)
	case errors.As(err, &de):
		st = undecodableStatus(de, domain)
	case errors.As(err, &te):
		st = noAnswerStatus(te, domain, meta, retry)
	default:
		st = newError(nil, ReasonInternal, err.Error(), info(ReasonInternal, FacadeDomain, nil)).st
	}
	return &Error{st: st, cause: err}
}

// answerReported is the upstream answer a failure reports, nil for none: the
// call's error answer, or, when the rate-limit guard stopped a retry, the
// answer that was to be retried (the caller needs the upstream's own words;
// the guard's longer wait is the hint).
func answerReported(err error, meta upstream.Meta) *upstream.Error {
	if ue, ok := errors.AsType[*upstream.Error](err); ok {
		return ue
	}
	if _, ok := errors.AsType[*upstream.ThrottledError](err); ok {
		return meta.LastError // nil when the guard answered before any request
	}
	return nil
}

// answerStatus is the status of an upstream error answer. attempts, when more
// than one, is said in the message: the caller learns that retrying at once is
// not worth it. retry is the failure's hint (upstream.RetryHint), given as
// RetryInfo; zero for a failure that is not temporary.
func answerStatus(e *upstream.Error, domain string, attempts int, retry time.Duration) *status.Status {
	st := status.New(codeOfAnswer(e.StatusCode, e.Code()), answerMessage(e, attempts))
	details := []protoadapt.MessageV1{answerInfo(e, domain)}
	if e.RequestID != "" {
		details = append(details, requestInfo(e.RequestID))
	}
	if br := answerViolations(e); br != nil {
		details = append(details, br)
	}
	if retry > 0 {
		details = append(details, retryInfo(retry))
	}
	if e.StatusCode == http.StatusTooManyRequests {
		details = append(details, quotaFailure(e.RateLimit))
	}
	return withDetails(st, append(details, httpResponse(e))...)
}

// answerMessage is "Confluent Cloud: <the upstream's words> (HTTP 404,
// request id …, after 3 attempts)".
func answerMessage(e *upstream.Error, attempts int) string {
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
	// The client keeps the upstream's words valid UTF-8; a message must be,
	// whoever built the error.
	return strings.ToValidUTF8(msg+")", "\uFFFD")
}

// answerInfo is the ErrorInfo of an upstream error answer.
func answerInfo(e *upstream.Error, domain string) *errdetails.ErrorInfo {
	md := map[string]string{KeyHTTPStatus: strconv.Itoa(e.StatusCode)}
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
		md[KeyErrorIDs] = strings.Join(ids, ",")
	}
	if len(appCodes) > 0 {
		md[KeyCodes] = strings.Join(appCodes, ",")
	}
	if len(e.Items) > 1 {
		md[KeyErrorCount] = strconv.Itoa(len(e.Items))
	}
	if e.Authenticate != "" {
		md[KeyWWWAuthenticate] = e.Authenticate
	}
	addRateLimit(md, e.RateLimit)
	return info(answerReason(e), domain, md)
}

// answerViolations is a BadRequest with one violation for every source
// (parameter or pointer) of the envelope's errors; nil when none has one.
func answerViolations(e *upstream.Error) *errdetails.BadRequest {
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
	if len(violations) == 0 {
		return nil
	}
	return &errdetails.BadRequest{FieldViolations: violations}
}

// httpResponse is the upstream's answer as data in the status, for the REST
// face to pass on as sent, in this process or any other: its status, its
// documented headers, and its Failure envelope up to MaxCarriedEnvelope.
func httpResponse(e *upstream.Error) *rpchttp.HttpResponse {
	r := &rpchttp.HttpResponse{Status: int32(e.StatusCode), Reason: http.StatusText(e.StatusCode)}
	keys := make([]string, 0, len(e.Header))
	for k := range e.Header {
		keys = append(keys, k)
	}
	slices.Sort(keys) // the same bytes for the same answer
	for _, k := range keys {
		for _, v := range e.Header[k] {
			r.Headers = append(r.Headers, &rpchttp.HttpHeader{Key: k, Value: v})
		}
	}
	if len(e.Envelope) <= MaxCarriedEnvelope {
		r.Body = e.Envelope
	}
	return r
}

// answerReason is the ErrorInfo reason of an upstream answer: its own code in
// UPPER_SNAKE_CASE (AIP-193), or, without one, a name for the HTTP status
// such as NOT_FOUND.
func answerReason(e *upstream.Error) string {
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

// throttledStatus is the answer of the rate-limit guard, given without calling
// the upstream.
func throttledStatus(th *upstream.ThrottledError, domain string) *status.Status {
	secs := upstream.Seconds(th.RetryAfter)
	st := status.New(facadeKinds[ReasonRateLimited].code, fmt.Sprintf(
		"the Confluent Cloud API rate limit for these credentials is exhausted; retry in %ds "+
			"(answered by plugin-facade without calling Confluent Cloud)", secs))
	md := map[string]string{KeyHTTPStatus: strconv.Itoa(http.StatusTooManyRequests), KeyAnsweredBy: FacadeDomain}
	addRateLimit(md, th.RateLimit)
	return withDetails(st, info(ReasonRateLimited, domain, md),
		retryInfo(time.Duration(secs)*time.Second), quotaFailure(th.RateLimit))
}

// undecodableStatus is the status of a 2xx answer that is not the resource.
func undecodableStatus(de *upstream.DecodeError, domain string) *status.Status {
	reason, what := ReasonUndecodable, "a body this service cannot read: "+de.Err.Error()
	if errors.Is(de, upstream.ErrBodyTooLarge) {
		reason, what = ReasonTooLarge, "a body larger than this service accepts"
	}
	msg := fmt.Sprintf("Confluent Cloud answered HTTP %d with %s", de.StatusCode, what)
	if de.RequestID != "" {
		msg += " (request id " + de.RequestID + ")"
	}
	details := []protoadapt.MessageV1{info(reason, domain, map[string]string{KeyHTTPStatus: strconv.Itoa(de.StatusCode)})}
	if de.RequestID != "" {
		details = append(details, requestInfo(de.RequestID))
	}
	return withDetails(status.New(facadeKinds[reason].code, msg), details...)
}

// noAnswerStatus is the status of a call that ended without an answer of its
// own: a deadline, a cancellation, a connection that failed. When the upstream
// had answered an earlier attempt with an error (a 503 before the retry that
// timed out, say), the status keeps what it said: its words in the message, its
// HTTP status and reason in the ErrorInfo, its request id, and its retry hint
// when longer than retry (the hint of this failure; zero for none).
func noAnswerStatus(te *upstream.TransportError, domain string, meta upstream.Meta, retry time.Duration) *status.Status {
	reason, msg := noAnswerReason(te, meta.Attempts+meta.Shared)
	in := info(reason, domain, nil)
	details := []protoadapt.MessageV1{in}
	if e := meta.LastError; e != nil {
		msg += "; before that it answered: " + answerMessage(e, 0)
		in.Metadata[KeyHTTPStatus] = strconv.Itoa(e.StatusCode)
		in.Metadata[KeyLastReason] = answerReason(e)
		if e.RequestID != "" {
			details = append(details, requestInfo(e.RequestID))
		}
		if e.RetryAfter > retry && retry > 0 {
			retry = e.RetryAfter
		}
	}
	if meta.Attempts > 0 {
		in.Metadata[KeyAttempts] = strconv.Itoa(meta.Attempts)
	}
	if retry > 0 {
		details = append(details, retryInfo(retry))
	}
	return withDetails(status.New(facadeKinds[reason].code, msg), details...)
}

// noAnswerReason is the reason and message of a call that got no answer.
func noAnswerReason(te *upstream.TransportError, answers int) (reason, msg string) {
	switch {
	case te.Canceled():
		return ReasonCanceled, "the call was canceled before Confluent Cloud answered"
	case te.DeadlineExceeded():
		return ReasonTimeout, "Confluent Cloud did not answer before the deadline"
	}
	// Only the root cause ("connection refused", "no such host"): the layers
	// above it name internal addresses. The service logs it whole.
	msg = "Confluent Cloud is unreachable, try again later: " + rootCause(te.Err)
	if answers > 1 {
		msg += fmt.Sprintf(" (%d attempts)", answers)
	}
	return ReasonUnreachable, msg
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
		md[KeyRateLimitLimit] = strconv.Itoa(rl.Limit)
	}
	if rl.Remaining >= 0 {
		md[KeyRateLimitRemaining] = strconv.Itoa(rl.Remaining)
	}
	if rl.Reset >= 0 {
		md[KeyRateLimitReset] = strconv.Itoa(upstream.Seconds(rl.Reset))
	}
}

func requestInfo(id string) *errdetails.RequestInfo {
	return &errdetails.RequestInfo{RequestId: id, ServingData: "Confluent Cloud X-Request-Id"}
}

func retryInfo(d time.Duration) *errdetails.RetryInfo {
	return &errdetails.RetryInfo{RetryDelay: durationpb.New(d)}
}
