package upstream

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
)

// answerCache keeps successful answers for the client's cache TTL (WithCache)
// in this process, in one least-recently-used map of answers as they are
// (decoded, no encoding). With a shared store (WithCacheStore) it is also the
// replica's copy of the fleet's entries: a miss here asks the store, an
// answer kept here is given to the store, and an entry read from the store is
// kept here until the instant it expires there. Failures are never cached.
type answerCache struct {
	local  *lru.Cache[string, cachedAnswer]
	ttl    time.Duration
	now    func() time.Time
	shared CacheStore // nil: this process only
}

// cachedAnswer is an entry of the local map: an answer, and until when it may
// be used. Expiry is checked on use, so the cache needs no goroutine of its own.
type cachedAnswer struct {
	answer *answer
	until  time.Time
}

func newAnswerCache(ttl time.Duration, size int, shared CacheStore, now func() time.Time) (*answerCache, error) {
	l, err := lru.New[string, cachedAnswer](size)
	if err != nil {
		return nil, err // a size below 1, which config.validate refuses first
	}
	return &answerCache{local: l, ttl: ttl, now: now, shared: shared}, nil
}

// Claims and the wait of a caller that did not get one: a claim outlives any
// upstream call made under the default timeout; a caller turned away polls for
// the entry at claimPoll, for at most claimWait, then calls the upstream itself.
// The identical calls of this process wait in the same flight (fetch), so one
// of them polls.
const (
	claimTTL  = 30 * time.Second
	claimPoll = 5 * time.Millisecond
	claimWait = 2 * time.Second
)

// get returns the answer kept for key, or nil; claimed reports that this
// caller is to fill the missing entry (see CacheClaimer). decode is applied to
// an answer read from the shared store before it is kept here.
func (c *answerCache) get(ctx context.Context, key string, decode func(*answer)) (a *answer, claimed bool) {
	if e, ok := c.local.Get(key); ok {
		if c.now().Before(e.until) {
			return e.answer, false
		}
		c.local.Remove(key)
	}
	if c.shared == nil {
		return nil, false
	}
	if a := c.load(ctx, key, decode); a != nil {
		return a, false
	}
	claimer, ok := c.shared.(CacheClaimer)
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
			if a := c.load(ctx, key, decode); a != nil {
				return a, false
			}
		}
	}
}

// add keeps a for key, here and in the shared store.
func (c *answerCache) add(ctx context.Context, key string, a *answer) {
	c.local.Add(key, cachedAnswer{answer: a, until: c.now().Add(c.ttl)})
	if c.shared == nil {
		return
	}
	// The headers the upstream documents (what Meta reports of it), not
	// every header it came with.
	b, err := json.Marshal(encodedAnswer{V: encodedAnswerVersion, Status: a.status, Header: documentedHeaders(a.header), Body: a.body})
	if err == nil {
		c.shared.Set(ctx, key, b, c.ttl)
	}
}

// release gives up the claim get gave, when the call could not fill it.
func (c *answerCache) release(ctx context.Context, key string) {
	if claimer, ok := c.shared.(CacheClaimer); ok {
		claimer.Release(ctx, key)
	}
}

// load reads key's entry from the shared store, and keeps it here as long as
// the store does.
func (c *answerCache) load(ctx context.Context, key string, decode func(*answer)) *answer {
	b, left, ok := c.shared.Get(ctx, key)
	if !ok {
		return nil
	}
	var e encodedAnswer
	if json.Unmarshal(b, &e) != nil || e.V != encodedAnswerVersion {
		return nil // another version's entry: a miss, which this one fills
	}
	a := &answer{status: e.Status, header: e.Header, body: e.Body}
	decode(a)
	c.local.Add(key, cachedAnswer{answer: a, until: c.now().Add(left)})
	return a
}

// encodedAnswerVersion is the version of encodedAnswer this build writes and
// reads; an entry of another version is a miss.
const encodedAnswerVersion = 1

// encodedAnswer is an answer as a CacheStore keeps it.
type encodedAnswer struct {
	V      int         `json:"v"`
	Status int         `json:"s"`
	Header http.Header `json:"h,omitempty"`
	Body   []byte      `json:"b"`
}
