package upstream

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"
)

// guard answers for the upstream while a credential's rate-limit window is
// exhausted, as the upstream's own headers said: a 429, or
// X-RateLimit-Remaining 0 with X-RateLimit-Reset. Until the window resets,
// calls with that credential get a *ThrottledError without an upstream request,
// which would only be refused. Its windows live in a GuardStore.
type guard struct {
	store GuardStore
	now   func() time.Time
}

// observe updates the credential's window from an answer: its status, its
// rate-limit window and its Retry-After (zero when absent). Only an answer
// that speaks of the window teaches the guard anything (speaksOfWindow).
func (g *guard) observe(ctx context.Context, cred string, status int, rl RateLimit, retryAfter time.Duration) {
	switch {
	case !speaksOfWindow(status):
	case status == http.StatusTooManyRequests || rl.Exhausted():
		g.store.SetExhausted(ctx, cred, g.now().Add(retryAfterOf(status, rl, retryAfter)), rl.Limit)
	case rl.Remaining > 0:
		g.store.ClearExhausted(ctx, cred)
	}
}

// speaksOfWindow reports whether an answer of this status describes the
// rate-limit window of the credential it was sent with. A 401 or 403 refused
// the credential (an unknown key is not rate-limited as the caller's is):
// whatever X-RateLimit-* headers came with it, learning from them would
// answer that credential's next call 429 instead of the upstream's own 401.
func speaksOfWindow(status int) bool {
	return status != http.StatusUnauthorized && status != http.StatusForbidden
}

// check returns a *ThrottledError while the credential's window is exhausted,
// and nil otherwise.
func (g *guard) check(ctx context.Context, cred string) *ThrottledError {
	until, limit, ok := g.store.Exhausted(ctx, cred)
	if !ok {
		return nil
	}
	left := until.Sub(g.now())
	if left <= 0 {
		return nil
	}
	return &ThrottledError{
		RetryAfter: left,
		RateLimit:  RateLimit{Limit: limit, Remaining: 0, Reset: left},
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
	return fmt.Sprintf("the Confluent Cloud rate limit for these credentials is exhausted; it resets in %ds", Seconds(e.RetryAfter))
}

// maxGuarded bounds how many credentials memoryGuardStore remembers. Past it,
// windows that have reset are forgotten; a process serving more credentials
// than this at once only loses some guarding, never correctness.
const maxGuarded = 10000

// memoryGuardStore is the GuardStore of one process.
type memoryGuardStore struct {
	now func() time.Time

	mu        sync.Mutex
	exhausted map[string]exhaustedWindow
}

type exhaustedWindow struct {
	until time.Time
	limit int
}

// NewMemoryGuardStore returns the GuardStore of one process, which a client
// uses unless given another. Shared stores use it as their local state.
func NewMemoryGuardStore() GuardStore { return newMemoryGuardStore(time.Now) }

func newMemoryGuardStore(now func() time.Time) *memoryGuardStore {
	return &memoryGuardStore{now: now, exhausted: make(map[string]exhaustedWindow)}
}

func (s *memoryGuardStore) Exhausted(_ context.Context, cred string) (time.Time, int, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	w, ok := s.exhausted[cred]
	if !ok {
		return time.Time{}, 0, false
	}
	if !s.now().Before(w.until) {
		delete(s.exhausted, cred)
		return time.Time{}, 0, false
	}
	return w.until, w.limit, true
}

func (s *memoryGuardStore) SetExhausted(_ context.Context, cred string, until time.Time, limit int) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.exhausted) >= maxGuarded {
		for k, w := range s.exhausted {
			if !now.Before(w.until) {
				delete(s.exhausted, k)
			}
		}
	}
	if len(s.exhausted) < maxGuarded {
		s.exhausted[cred] = exhaustedWindow{until: until, limit: limit}
	}
}

func (s *memoryGuardStore) ClearExhausted(_ context.Context, cred string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.exhausted, cred)
}
