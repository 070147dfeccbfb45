package upstream

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/url"
	"time"
)

// errNoCredentials is the error of a call without an Authorization.
var errNoCredentials = errors.New("upstream: no credentials to send")

// request is one call's GET: what it asks for, with which credential, and the
// identity under which identical concurrent calls share an exchange and
// successful answers are cached.
type request struct {
	auth  Authorization
	cred  string // credentialID(auth)
	route string // a Route* constant
	url   *url.URL
	id    requestID
}

// requestID identifies one exact request with one credential: a hash of
// both, so that neither is kept in memory in clear.
type requestID [sha256.Size]byte

func (c *Client) newRequest(auth Authorization, route string, u *url.URL) *request {
	r := &request{auth: auth, cred: credentialID(auth), route: route, url: u}
	h := sha256.New()
	h.Write([]byte(r.cred))
	h.Write([]byte(u.String()))
	h.Sum(r.id[:0])
	return r
}

// cacheKey is the request's key in the cache.
func (r *request) cacheKey() string { return hex.EncodeToString(r.id[:]) }

// call makes the GET of u with auth and decodes the resource into out. Its
// steps, in order: the cache; then, for each attempt, the rate-limit guard,
// one exchange shared with identical concurrent calls, and what the answer
// teaches the guard; a success is decoded and cached; a temporary failure is
// tried again after the wait retryWait decides. Meta describes the last
// answer, whatever the outcome.
func (c *Client) call(ctx context.Context, auth Authorization, route string, u *url.URL, out resource) (Meta, error) {
	meta := Meta{RateLimit: noRateLimit}
	if auth.IsZero() {
		return meta, errNoCredentials
	}
	r := c.newRequest(auth, route, u)
	a, claimed := c.fromCache(ctx, r)
	if a != nil {
		meta.describe(a)
		meta.Cached = true
		return meta, c.decode(a, out)
	}
	filled := false
	if claimed {
		// A claimant that ends without an answer to cache gives its claim
		// up, even once its caller has left.
		defer func() {
			if !filled {
				c.cache.release(context.WithoutCancel(ctx), r.cacheKey())
			}
		}()
	}
	for {
		if t := c.admit(ctx, r); t != nil {
			meta.RateLimit = t.RateLimit
			return meta, t
		}
		// A caller already gone (a reset stream, a closed connection) starts
		// no upstream request: it would only spend the credential's budget.
		if ctx.Err() != nil {
			return meta, callerLeft(ctx, r)
		}
		a, err := c.exchangeShared(ctx, r, &meta)
		if err == nil && a.ok() {
			if err := c.decode(a, out); err != nil {
				return meta, err
			}
			filled = c.toCache(ctx, r, a)
			return meta, nil
		}
		if a != nil {
			meta.LastError = newError(a)
			err = meta.LastError
		}
		wait, retry := c.retryWait(ctx, meta.Attempts+meta.Shared, err)
		if !retry {
			return meta, withRetryHint(err, wait)
		}
		if c.hooks.Retry != nil {
			c.hooks.Retry(route, retryReason(err))
		}
		if err := sleep(ctx, wait); err != nil {
			return meta, callerLeft(ctx, r)
		}
	}
}

func (c *Client) fromCache(ctx context.Context, r *request) (*answer, bool) {
	if c.cache == nil {
		return nil, false
	}
	return c.cache.get(ctx, r.cacheKey())
}

// toCache keeps a success, and reports whether it did.
func (c *Client) toCache(ctx context.Context, r *request, a *answer) bool {
	if c.cache == nil {
		return false
	}
	c.cache.add(ctx, r.cacheKey(), a)
	return true
}

// admit returns the guard's refusal while the credential's window is exhausted.
func (c *Client) admit(ctx context.Context, r *request) *ThrottledError {
	if c.guard == nil {
		return nil
	}
	return c.guard.check(ctx, r.cred)
}

// exchangeShared makes one exchange of r, or joins the one an identical call
// has in flight, and records the answer in meta, the hooks and the guard. Its
// error is a *TransportError: no answer arrived.
func (c *Client) exchangeShared(ctx context.Context, r *request, meta *Meta) (*answer, error) {
	a, shared, err := c.flights.do(ctx, r.id, func(ctx context.Context) (*answer, error) {
		return c.exchange(ctx, r)
	})
	if shared {
		meta.Shared++
	} else {
		meta.Attempts++
	}
	if err != nil {
		if ctx.Err() != nil && !isTransportError(err) {
			return nil, callerLeft(ctx, r) // the shared exchange went on for others
		}
		return nil, err
	}
	meta.describe(a)
	if c.hooks.RateLimit != nil && meta.RateLimit != noRateLimit {
		c.hooks.RateLimit(r.route, meta.RateLimit)
	}
	if c.guard != nil {
		c.guard.observe(ctx, r.cred, a.status, meta.RateLimit, meta.RetryAfter)
	}
	return a, nil
}

// callerLeft is the error of a call whose caller's ctx ended while it waited:
// for a shared exchange, or between two attempts.
func callerLeft(ctx context.Context, r *request) error {
	return &TransportError{Method: http.MethodGet, Path: r.url.EscapedPath(), Err: ctx.Err(), ContextErr: ctx.Err()}
}

// sleep waits for d, or until ctx ends (then it returns ctx.Err()).
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// describe sets what m says of the last answer from a.
func (m *Meta) describe(a *answer) {
	m.StatusCode = a.status
	m.RequestID = headerText(a.header, headerRequestID)
	m.RateLimit = parseRateLimit(a.header)
	m.RetryAfter, _ = parseSeconds(a.header.Get(headerRetryAfter))
}
