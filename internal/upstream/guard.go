package upstream

import (
	"crypto/sha256"
	"fmt"
	"sync"
	"time"
)

// maxGuarded bounds how many credentials the guard remembers. Past it,
// windows that have reset are forgotten; a process serving more credentials
// than this at once only loses some guarding, never correctness.
const maxGuarded = 10000

// credentialKey identifies a credential without holding it: a hash of the
// Authorization header value.
type credKey [sha256.Size]byte

func credentialKey(a Authorization) credKey {
	return sha256.Sum256([]byte(a.headerValue()))
}

// guard remembers, per credential, until when the upstream's rate-limit window
// is exhausted, as the upstream's own headers said: X-RateLimit-Remaining 0
// with X-RateLimit-Reset, or a 429 with Retry-After.
type guard struct {
	now func() time.Time

	mu        sync.Mutex
	exhausted map[credKey]exhaustedWindow
}

type exhaustedWindow struct {
	until time.Time
	limit int
}

func newGuard(now func() time.Time) *guard {
	return &guard{now: now, exhausted: make(map[credKey]exhaustedWindow)}
}

// observe updates the credential's window from an answer.
func (g *guard) observe(key credKey, status int, rl RateLimit, retryAfter time.Duration) {
	var wait time.Duration
	switch {
	case status == 429:
		wait = max(retryAfter, rl.Reset, time.Second)
	case rl.Remaining == 0 && rl.Reset > 0:
		wait = rl.Reset
	case rl.Remaining > 0:
		g.mu.Lock()
		delete(g.exhausted, key)
		g.mu.Unlock()
		return
	default:
		return
	}
	now := g.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.exhausted) >= maxGuarded {
		for k, w := range g.exhausted {
			if !now.Before(w.until) {
				delete(g.exhausted, k)
			}
		}
	}
	if len(g.exhausted) < maxGuarded {
		g.exhausted[key] = exhaustedWindow{until: now.Add(wait), limit: rl.Limit}
	}
}

// check returns a *ThrottledError while the credential's window is exhausted,
// and nil otherwise.
func (g *guard) check(key credKey) *ThrottledError {
	now := g.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	w, ok := g.exhausted[key]
	if !ok {
		return nil
	}
	if !now.Before(w.until) {
		delete(g.exhausted, key)
		return nil
	}
	left := w.until.Sub(now)
	return &ThrottledError{
		RetryAfter: left,
		RateLimit:  RateLimit{Limit: w.limit, Remaining: 0, Reset: left.Round(time.Second)},
	}
}

// ThrottledError means the call was not sent: the upstream said that this
// credential's rate-limit window is exhausted, and it has not reset yet.
type ThrottledError struct {
	// RetryAfter is how long until the window resets.
	RetryAfter time.Duration
	// RateLimit is the window as last described by the upstream.
	RateLimit RateLimit
}

func (e *ThrottledError) Error() string {
	return fmt.Sprintf("the Confluent Cloud rate limit for these credentials is exhausted; it resets in %s", e.RetryAfter.Round(time.Second))
}
