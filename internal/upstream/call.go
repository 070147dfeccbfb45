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
// identities under which successful answers are cached and identical
// concurrent calls share one fetch.
type request struct {
	auth  Authorization
	cred  string // credentialID(auth)
	route string // a Route* constant
	url   *url.URL
	id    requestID // the exact request with its credential: the cache's key
	// flight is id for a call that may be answered from the cache, and a
	// different key for a fresh one (Fresh), so that a fresh call never
	// joins a fetch that may be answered from the cache.
	flight requestID
	fresh  bool
	// asSent is that of the call that made the request (AsSent): a fetch
	// shared with other calls checks the answer for all (checkAnswer), and
	// decodes the fields at once unless this call needs none.
	asSent bool
}

// requestID identifies one exact request with one credential: a hash of
// both, so that neither is kept in memory in clear.
type requestID [sha256.Size]byte

func (c *Client) newRequest(auth Authorization, route string, u *url.URL, rc readConfig) *request {
	r := &request{auth: auth, cred: credentialID(auth), route: route, url: u, fresh: rc.fresh, asSent: rc.asSent}
	h := sha256.New()
	h.Write([]byte(r.cred))
	h.Write([]byte(u.String()))
	h.Sum(r.id[:0])
	r.flight = r.id
	if r.fresh {
		r.flight = sha256.Sum256(append(r.id[:], "fresh"...))
	}
	return r
}

// cacheKey is the request's key in the cache.
func (r *request) cacheKey() string { return hex.EncodeToString(r.id[:]) }

// ReadOption changes how one read is answered.
type ReadOption func(*readConfig)

type readConfig struct {
	fresh  bool
	asSent bool
}

// Fresh makes the read ask the upstream, never the cache: a watch's poll must
// see the version as it is now, not as a unary read cached it. Its answer
// still refreshes the cache for the reads that come after it.
func Fresh() ReadOption { return func(rc *readConfig) { rc.fresh = true } }

// AsSent makes the read give the resource's JSON as the upstream sent it
// (Raw) and leave its other fields zero, for a caller that passes the JSON on
// and reads nothing else of it (the REST face): the answer is checked to be
// the resource, but its fields are decoded only once a read needs them.
func AsSent() ReadOption { return func(rc *readConfig) { rc.asSent = true } }

func readConfigOf(opts []ReadOption) readConfig {
	var rc readConfig
	for _, o := range opts {
		o(&rc)
	}
	return rc
}

// call makes the GET of u with auth and decodes the resource into out. Each
// attempt is, in order: the rate-limit guard; then one fetch shared with the
// identical calls of this process in flight (coalescing), which is the cache
// and, when it has no answer, one exchange; then what the answer teaches the
// guard. A success was decoded and cached by its fetch, once for all who
// share it; a temporary failure is tried again after the wait retryWait
// decides. Meta describes the last answer, whatever the outcome.
func (c *Client) call(ctx context.Context, auth Authorization, route string, u *url.URL, out resource, rc readConfig) (meta Meta, err error) {
	meta = Meta{RateLimit: noRateLimit}
	if c.hooks.Call != nil {
		defer func() { c.hooks.Call(route, meta, err) }()
	}
	if auth.IsZero() {
		return meta, errNoCredentials
	}
	r := c.newRequest(auth, route, u, rc)
	for {
		if t := c.admit(ctx, r); t != nil {
			meta.RateLimit = t.RateLimit
			return meta, t
		}
		// A caller already gone (a reset stream, a closed connection) starts
		// no upstream request: it would only spend the credential's budget.
		// (net/http's transport refuses a done context too; this says so
		// here, before a shared fetch is set up for nobody.)
		if ctx.Err() != nil {
			return meta, callerLeft(ctx, r)
		}
		a, err := c.fetchShared(ctx, r, &meta)
		if err == nil && a.ok() {
			return meta, c.decode(a, route, out, rc)
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

// admit returns the guard's refusal while the credential's window is exhausted.
func (c *Client) admit(ctx context.Context, r *request) *ThrottledError {
	if c.guard == nil {
		return nil
	}
	return c.guard.check(ctx, r.cred)
}

// fetchShared fetches r (fetch), or joins the fetch an identical call of this
// process has in flight, and records the answer in meta, the hooks and the
// guard. Its error is a *TransportError: no answer arrived.
func (c *Client) fetchShared(ctx context.Context, r *request, meta *Meta) (*answer, error) {
	a, shared, err := c.flights.do(ctx, r.flight, func(ctx context.Context) (*answer, error) {
		return c.fetch(ctx, r)
	})
	switch {
	case shared:
		meta.Shared++
	case a == nil || !a.cached:
		meta.Attempts++
	}
	if err != nil {
		if ctx.Err() != nil && !isTransportError(err) {
			return nil, callerLeft(ctx, r) // the shared fetch went on for others
		}
		return nil, err
	}
	meta.describe(a)
	meta.Cached = a.cached
	if a.cached {
		return a, nil // what it said of the window was learnt when it was fetched
	}
	if c.hooks.RateLimit != nil && meta.RateLimit != noRateLimit {
		c.hooks.RateLimit(r.route, meta.RateLimit)
	}
	if c.guard != nil {
		c.guard.observe(ctx, r.cred, a.status, meta.RateLimit, meta.RetryAfter)
	}
	return a, nil
}

// fetch answers r from the cache when it may (not Fresh) and the cache has
// the answer, and otherwise with one exchange, whose success it caches once
// it decodes. A fleet cache may have another replica fill a missing entry
// meanwhile: fetch then waits for it, and the identical calls of this
// process wait with it, in the same flight. A 2xx answer leaves fetch
// checked (checkAnswer), once for all who share it.
func (c *Client) fetch(ctx context.Context, r *request) (*answer, error) {
	claimed := false
	if c.cache != nil && !r.fresh {
		var a *answer
		decode := func(a *answer) { c.checkAnswer(r.route, a, r.asSent) }
		a, claimed = c.cache.get(ctx, r.cacheKey(), decode)
		if c.hooks.Cache != nil {
			c.hooks.Cache(r.route, a != nil)
		}
		if a != nil {
			hit := *a
			hit.cached = true
			return &hit, nil
		}
	}
	a, err := c.exchange(ctx, r)
	if err == nil && a.ok() {
		c.checkAnswer(r.route, a, r.asSent)
		if a.isResource() {
			c.drift.inspect(r.route, a.body)
		}
	}
	filled := c.cache != nil && err == nil && a.isResource()
	if filled {
		c.cache.add(ctx, r.cacheKey(), a)
	} else if claimed {
		// A claimant that ends without an answer to cache gives its claim
		// up, even once its callers have left.
		c.cache.release(context.WithoutCancel(ctx), r.cacheKey())
	}
	return a, err
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
