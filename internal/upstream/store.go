package upstream

import (
	"context"
	"time"
)

// The client keeps two kinds of state about the upstream: the rate-limit guard's
// windows and, with WithCache, successful answers. Each has one store in this
// process (the guard's windows, the cache's LRU). A fleet of replicas reading
// with the same credential can share them as well (the upstream's budget
// belongs to the credential, not to a replica) through stores such as
// internal/fleet's, set with WithGuardStore (which keeps its local copy in the
// store NewMemoryGuardStore returns) and WithCacheStore (which the client's LRU
// stands in front of). The interfaces use only standard types.

// GuardStore keeps the rate-limit guard's windows, per credential id (a hex
// SHA-256 of the credential, never the credential). Implementations must be
// safe for concurrent use, fast (Exhausted is asked before every upstream
// request), and never fail: when their backing store is unavailable they
// answer from local state.
type GuardStore interface {
	// Exhausted returns until when cred's window is exhausted and the window's
	// limit (-1 when unknown); ok is false when it is not known to be exhausted.
	Exhausted(ctx context.Context, cred string) (until time.Time, limit int, ok bool)
	// SetExhausted records that cred's window is exhausted until until.
	SetExhausted(ctx context.Context, cred string, until time.Time, limit int)
	// ClearExhausted forgets cred's window: the upstream said requests remain.
	ClearExhausted(ctx context.Context, cred string)
}

// CacheStore shares successful upstream answers, encoded by the client, for a
// TTL: the client keeps its own copy of what it reads and writes (one LRU, of
// WithCache's size), and asks the store on a miss. Keys are hashes of the
// credential and the exact request, so entries of different credentials
// never meet. Like GuardStore, it never fails: a store that cannot answer
// reports a miss.
type CacheStore interface {
	// Get returns key's value and how long it has left to live.
	Get(ctx context.Context, key string) (value []byte, ttl time.Duration, ok bool)
	Set(ctx context.Context, key string, value []byte, ttl time.Duration)
}

// CacheClaimer, when a CacheStore implements it, lets one caller fleet-wide
// fill a missing entry while the others wait for it: Claim returns true for the
// caller that should call the upstream (and then Set), and false while another
// holds the claim (held for at most ttl). A caller turned away polls Get for a
// while (see claimWait) before calling the upstream itself, while the
// identical calls of its process wait with it. A claimant whose
// call fails calls Release, so that the next caller claims at once instead of
// waiting for an entry that will not come.
type CacheClaimer interface {
	Claim(ctx context.Context, key string, ttl time.Duration) bool
	Release(ctx context.Context, key string)
}
