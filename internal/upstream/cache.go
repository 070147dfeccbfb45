package upstream

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
)

// answerCache keeps successful answers for the client's cache TTL (WithCache).
// Failures are never cached.
type answerCache interface {
	// get returns the answer kept for key, or nil; claimed reports that this
	// caller is to fill the missing entry (see CacheClaimer).
	get(ctx context.Context, key string) (a *answer, claimed bool)
	// add keeps a for key.
	add(ctx context.Context, key string, a *answer)
	// release gives up the claim get gave, when the call could not fill it.
	release(ctx context.Context, key string)
}

// cachedAnswer is an entry of memoryCache: an answer, and until when it may be
// used. Expiry is checked on use, so the cache needs no goroutine of its own.
type cachedAnswer struct {
	answer *answer
	until  time.Time
}

// memoryCache is the cache of one process: a least-recently-used map of
// answers as they are, with no encoding.
type memoryCache struct {
	lru *lru.Cache[string, cachedAnswer]
	ttl time.Duration
	now func() time.Time
}

func newMemoryCache(ttl time.Duration, size int, now func() time.Time) *memoryCache {
	// lru.New fails only for a size below 1.
	l, _ := lru.New[string, cachedAnswer](max(size, 1))
	return &memoryCache{lru: l, ttl: ttl, now: now}
}

func (c *memoryCache) get(_ context.Context, key string) (*answer, bool) {
	e, ok := c.lru.Get(key)
	if !ok {
		return nil, false
	}
	if c.now().After(e.until) {
		c.lru.Remove(key)
		return nil, false
	}
	return e.answer, false
}

func (c *memoryCache) release(context.Context, string) {}

func (c *memoryCache) add(_ context.Context, key string, a *answer) {
	c.lru.Add(key, cachedAnswer{answer: a, until: c.now().Add(c.ttl)})
}

// storeCache keeps answers in a CacheStore, encoded. When the store is a
// CacheClaimer, one caller (fleet-wide) fills a missing entry while the others
// wait for it.
type storeCache struct {
	store CacheStore
	ttl   time.Duration
}

// Claims and the wait of a caller that did not get one: a claim outlives any
// upstream call made under the default timeout; a caller turned away polls for
// the entry at claimPoll, for at most claimWait, then calls the upstream itself.
const (
	claimTTL  = 30 * time.Second
	claimPoll = 5 * time.Millisecond
	claimWait = 2 * time.Second
)

func (c *storeCache) get(ctx context.Context, key string) (*answer, bool) {
	if a := c.load(ctx, key); a != nil {
		return a, false
	}
	claimer, ok := c.store.(CacheClaimer)
	if !ok {
		return nil, false
	}
	if claimer.Claim(ctx, key, claimTTL) {
		return nil, true
	}
	wait, cancel := context.WithTimeout(ctx, claimWait)
	defer cancel()
	tick := time.NewTicker(claimPoll)
	defer tick.Stop()
	for {
		select {
		case <-wait.Done():
			return nil, false
		case <-tick.C:
			if a := c.load(ctx, key); a != nil {
				return a, false
			}
		}
	}
}

func (c *storeCache) release(ctx context.Context, key string) {
	if claimer, ok := c.store.(CacheClaimer); ok {
		claimer.Release(ctx, key)
	}
}

func (c *storeCache) load(ctx context.Context, key string) *answer {
	b, ok := c.store.Get(ctx, key)
	if !ok {
		return nil
	}
	var e encodedAnswer
	if json.Unmarshal(b, &e) != nil {
		return nil
	}
	return &answer{status: e.Status, header: e.Header, body: e.Body}
}

// add keeps a with the headers the upstream documents (what Meta reports of
// it), not every header it came with.
func (c *storeCache) add(ctx context.Context, key string, a *answer) {
	b, err := json.Marshal(encodedAnswer{Status: a.status, Header: documentedHeaders(a.header), Body: a.body})
	if err == nil {
		c.store.Set(ctx, key, b, c.ttl)
	}
}

// encodedAnswer is an answer as a CacheStore keeps it.
type encodedAnswer struct {
	Status int         `json:"s"`
	Header http.Header `json:"h,omitempty"`
	Body   []byte      `json:"b"`
}
