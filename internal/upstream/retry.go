package upstream

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"syscall"
	"time"
)

// RetryPolicy says which failed calls are tried again and how long to wait in
// between. Only what is safe is retried: these are idempotent GETs, and only
// temporary failures (see Temporary) would succeed if tried again.
//
// A wait never runs past the caller's deadline: when the next wait does not fit
// in what is left of it, the call ends at once with the last failure, whose
// retry hint (RetryHint) tells the caller when to come back.
type RetryPolicy struct {
	// MaxAttempts is the most HTTP exchanges one call makes, the first
	// included; 1 turns retries off. Default 3.
	MaxAttempts int
	// BaseDelay is the backoff before the first retry; each further retry
	// doubles it, up to MaxDelay. The actual wait is drawn at random between
	// half the backoff and all of it (jitter), so that callers who failed
	// together do not come back together. Default 100ms.
	BaseDelay time.Duration
	// MaxDelay caps the backoff. Default 2s.
	MaxDelay time.Duration
	// MaxWait is the longest wait the upstream may ask for (Retry-After, or
	// the reset of an exhausted rate-limit window) that is honoured
	// in-process. A longer one is not waited for: the call ends with the
	// failure and its hint. Default 10s.
	MaxWait time.Duration
}

// DefaultRetryPolicy is the policy of a client without WithRetry.
var DefaultRetryPolicy = RetryPolicy{MaxAttempts: 3, BaseDelay: 100 * time.Millisecond, MaxDelay: 2 * time.Second, MaxWait: 10 * time.Second}

// validate refuses a negative field, which no default can mend.
func (p RetryPolicy) validate() error {
	if p.MaxAttempts < 0 || p.BaseDelay < 0 || p.MaxDelay < 0 || p.MaxWait < 0 {
		return fmt.Errorf("upstream: the retry policy %+v has a negative field", p)
	}
	return nil
}

// backoff is the jittered wait before retry number n (1 for the first retry).
func (c *Client) backoff(n int) time.Duration {
	d := c.retry.BaseDelay
	for i := 1; i < n && d < c.retry.MaxDelay; i++ {
		d *= 2
	}
	d = min(d, c.retry.MaxDelay)
	half := d / 2
	return half + time.Duration(c.jitter(int64(d-half)+1))
}

// retryWait decides whether a call tries again after err, its answers-th
// failure, and how long it waits first: the upstream's own hint when it gave
// one, plus a little jitter so that the callers it turned away do not come
// back in the same instant; the backoff otherwise. A window the guard learnt
// meanwhile from another call is for the next attempt's admit to answer. A
// temporary failure that is not retried (attempts spent, a hint longer than
// MaxWait, a wait that would outlast the caller's deadline) gets the hint, or
// else the backoff, as the caller's.
func (c *Client) retryWait(ctx context.Context, answers int, err error) (time.Duration, bool) {
	if !IsTemporary(err) {
		return 0, false
	}
	backoff := c.backoff(answers)
	hint := time.Duration(0)
	if e, ok := errors.AsType[*Error](err); ok {
		hint = e.RetryAfter // the guard's window for this answer, too
	}
	if answers >= c.retry.MaxAttempts || hint > c.retry.MaxWait {
		return cmp.Or(hint, backoff), false
	}
	wait := backoff
	if hint > 0 {
		wait = hint + time.Duration(c.jitter(int64(c.retry.BaseDelay)+1))
	}
	if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) <= wait {
		return cmp.Or(hint, backoff), false
	}
	return wait, true
}

// retryReason names why a temporary failure is retried, for metrics: the HTTP
// status, or "connection".
func retryReason(err error) string {
	if e, ok := errors.AsType[*Error](err); ok {
		return strconv.Itoa(e.StatusCode)
	}
	return "connection"
}

// Temporary reports whether the upstream's answer means "not now" (429, 502,
// 503, 504): the same call may succeed later. Any other answer would fail the
// same way again.
func (e *Error) Temporary() bool {
	switch e.StatusCode {
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// Temporary reports whether the upstream could not be reached, through no
// fault of the caller and without waiting out a timeout: the connection was
// refused, reset or closed before a whole answer arrived, or the upstream's
// name did not resolve. Such a GET had no effect and can be sent again, and
// may succeed later. Neither the caller's deadline or cancellation nor a
// network timeout is temporary: the caller's deadline is what ends a slow
// upstream.
func (e *TransportError) Temporary() bool {
	return e.ContextErr == nil && (connectionFailed(e.Err) || unresolved(e.Err))
}

// unresolved reports whether err is a failure to resolve the upstream's name
// (no such host, a resolver that failed), other than a lookup timing out.
func unresolved(err error) bool {
	dns, ok := errors.AsType[*net.DNSError](err)
	return ok && !dns.IsTimeout
}

// Temporary is true: the window resets (RetryAfter).
func (e *ThrottledError) Temporary() bool { return true }

// Temporary is false: the upstream broke its contract, and would again.
func (e *DecodeError) Temporary() bool { return false }

// IsTemporary reports whether err is a failure of a call that may succeed if
// made again later. It is the one rule the client's retries, the watch's
// polling and the caller's status (its retry hint) all follow.
func IsTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// RetryHint returns how long to wait before making a failed call again; ok is
// false when err is not temporary. It is the upstream's hint when it gave one
// (Retry-After, or the reset of an exhausted rate-limit window), the guard's
// window when the guard answered, and otherwise the backoff the client would
// have waited before its next attempt.
func RetryHint(err error) (time.Duration, bool) {
	if !IsTemporary(err) {
		return 0, false
	}
	if h, ok := errors.AsType[*hintedError](err); ok && h.after > 0 {
		return h.after, true
	}
	if t, ok := errors.AsType[*ThrottledError](err); ok {
		return t.RetryAfter, true
	}
	if e, ok := errors.AsType[*Error](err); ok && e.RetryAfter > 0 {
		return e.RetryAfter, true
	}
	return DefaultRetryPolicy.BaseDelay, true
}

// hintedError is a temporary failure the client gave up on, with the wait it
// would have made before trying again.
type hintedError struct {
	error
	after time.Duration
}

func (h *hintedError) Unwrap() error { return h.error }

func withRetryHint(err error, after time.Duration) error {
	if after <= 0 || !IsTemporary(err) {
		return err
	}
	return &hintedError{error: err, after: after}
}

// connectionFailed reports whether err is a connection that failed before a
// whole answer arrived: refused, reset, or closed early.
func connectionFailed(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, io.EOF) ||
		errors.Is(err, io.ErrUnexpectedEOF)
}

func isTransportError(err error) bool {
	_, ok := errors.AsType[*TransportError](err)
	return ok
}

// Seconds rounds d up to whole seconds, as Retry-After and X-RateLimit-Reset
// count: a wait is never announced shorter than it is.
func Seconds(d time.Duration) int {
	return int((d + time.Second - 1) / time.Second)
}
