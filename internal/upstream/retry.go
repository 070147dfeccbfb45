package upstream

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"syscall"
	"time"
)

// RetryPolicy says which failed calls are tried again and how long to wait in
// between. Only what is safe is retried: these are idempotent GETs, and only
// answers that say "not now" (429, 502, 503, 504) or a connection that failed
// before a whole answer arrived (refused, reset, cut short). Other 4xx and 5xx
// answers would fail the same way again.
//
// A wait never runs past the caller's deadline: when the next wait does not fit
// in what is left of it, the call ends at once with the last failure, whose
// retry hint tells the caller when to come back.
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
	// the X-RateLimit-Reset of a 429) that is honoured in-process. A longer
	// one is not waited for: the call ends with the failure and its hint.
	// Default 10s.
	MaxWait time.Duration
}

// DefaultRetryPolicy is the policy of a client without WithRetry.
var DefaultRetryPolicy = RetryPolicy{MaxAttempts: 3, BaseDelay: 100 * time.Millisecond, MaxDelay: 2 * time.Second, MaxWait: 10 * time.Second}

func (p RetryPolicy) withDefaults() RetryPolicy {
	d := DefaultRetryPolicy
	if p.MaxAttempts > 0 {
		d.MaxAttempts = p.MaxAttempts
	}
	if p.BaseDelay > 0 {
		d.BaseDelay = p.BaseDelay
	}
	if p.MaxDelay > 0 {
		d.MaxDelay = p.MaxDelay
	}
	if p.MaxWait > 0 {
		d.MaxWait = p.MaxWait
	}
	return d
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

// call makes the GET of u with auth, retrying what is safe to retry, and
// decodes the resource into out. Meta describes the last answer, whatever the
// outcome.
func (c *Client) call(ctx context.Context, auth Authorization, route string, u *url.URL, out resource) (Meta, error) {
	meta := Meta{RateLimit: noRateLimit}
	if auth.IsZero() {
		return meta, errors.New("upstream: no credentials to send")
	}
	key := credentialKey(auth)
	fkey := newFlightKey(key, u.String())
	// left is the error of a call whose caller's ctx ended: while it waited
	// for a shared exchange, or between two attempts.
	left := func() error {
		return &TransportError{Method: http.MethodGet, Path: u.EscapedPath(), Err: ctx.Err(), ContextErr: ctx.Err()}
	}
	if a := c.cached(fkey); a != nil {
		meta.describe(a)
		meta.Cached = true
		return meta, c.decode(a, out)
	}
	for {
		if c.guard != nil {
			if t := c.guard.check(key); t != nil {
				meta.RateLimit = t.RateLimit
				return meta, t
			}
		}
		meta.Attempts++
		a, err := c.flights.do(ctx, fkey, func(ctx context.Context) (*answer, error) {
			return c.exchange(ctx, auth, route, u)
		})
		if err != nil && ctx.Err() != nil && !isTransportError(err) {
			err = left() // the shared exchange went on for others
		}
		if a != nil {
			meta.describe(a)
			if c.hooks.RateLimit != nil && meta.RateLimit != noRateLimit {
				c.hooks.RateLimit(route, meta.RateLimit)
			}
			if c.guard != nil {
				c.guard.observe(key, a.status, meta.RateLimit, meta.RetryAfter)
			}
			if a.status >= 200 && a.status <= 299 {
				err := c.decode(a, out)
				if err == nil && c.cache != nil {
					c.cache.Add(fkey, cached{a, time.Now().Add(c.cacheTTL)})
				}
				return meta, err
			}
			e := newError(a)
			meta.LastError = e
			err = e
		}

		reason, retryable := retryReason(err)
		if !retryable || meta.Attempts >= c.retry.MaxAttempts {
			return meta, err
		}
		wait := c.backoff(meta.Attempts)
		hint := time.Duration(0)
		if e, ok := err.(*Error); ok {
			hint = e.RetryAfter
		}
		if c.guard != nil {
			// The window the guard keeps for this credential may outlast
			// the answer's own hint (a 429 whose reset is later than its
			// Retry-After, or one without either); retrying before it ends
			// would only meet the guard.
			if t := c.guard.check(key); t != nil {
				hint = max(hint, t.RetryAfter)
			}
		}
		if hint > 0 {
			if hint > c.retry.MaxWait {
				return meta, err
			}
			// The upstream said when; a little jitter keeps the callers it
			// turned away from coming back in the same instant.
			wait = hint + time.Duration(c.jitter(int64(c.retry.BaseDelay)+1))
		}
		if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) <= wait {
			return meta, err
		}
		if c.hooks.Retry != nil {
			c.hooks.Retry(route, reason)
		}
		timer := time.NewTimer(wait)
		select {
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop()
			return meta, left()
		}
	}
}

// retryReason says whether a failed exchange may be tried again, and names the
// reason for metrics: the HTTP status, or "connection".
func retryReason(err error) (string, bool) {
	var (
		e  *Error
		te *TransportError
	)
	switch {
	case errors.As(err, &e):
		switch e.StatusCode {
		case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			return strconv.Itoa(e.StatusCode), true
		}
	case errors.As(err, &te) && te.ContextErr == nil && connectionFailed(te.Err):
		return "connection", true
	}
	return "", false
}

// connectionFailed reports whether err is a connection that failed before a
// whole answer arrived: refused, reset, or closed early. Such a GET had no
// effect and can be sent again. (A timeout is not among them: the caller's
// deadline is what ends a slow upstream.)
func connectionFailed(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, io.EOF) ||
		errors.Is(err, io.ErrUnexpectedEOF)
}

func isTransportError(err error) bool {
	var te *TransportError
	return errors.As(err, &te)
}

// describe sets what m says of the last answer from a.
func (m *Meta) describe(a *answer) {
	m.StatusCode = a.status
	m.RequestID = headerText(a.header, headerRequestID)
	m.RateLimit = parseRateLimit(a.header)
	m.RetryAfter, _ = parseSeconds(a.header.Get(headerRetryAfter))
}

// cached is a cache entry: a successful answer, and until when it may be used.
// (Expiry is checked on use, so the cache needs no goroutine of its own.)
type cached struct {
	answer *answer
	until  time.Time
}

// cached returns the cached answer for key, or nil.
func (c *Client) cached(key flightKey) *answer {
	if c.cache == nil {
		return nil
	}
	e, ok := c.cache.Get(key)
	if !ok {
		return nil
	}
	if time.Now().After(e.until) {
		c.cache.Remove(key)
		return nil
	}
	return e.answer
}
