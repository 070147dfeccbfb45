package fleet

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"
)

// MaxSharedValueBytes is the largest answer the fleet's cache puts in Redis;
// a larger one is kept by the replica that fetched it only. The resources are
// a few KiB; this bounds what one entry can cost Redis.
const MaxSharedValueBytes = 64 << 10

func cacheKey(key string) string { return prefix + "cache:" + key }
func claimKey(key string) string { return prefix + "claim:" + key }

// Cache shares successful upstream answers, encoded by the client, across
// the fleet: an answer one replica fetched serves every replica until its TTL
// ends. It implements upstream.CacheStore and upstream.CacheClaimer. It keeps
// nothing of its own: each client keeps its copy of the entries it reads and
// writes (until the same instant as in Redis), and is the cache while Redis
// is unreachable.
//
// Entries are keyed by what the client gives, a hash of the credential's hash
// and the exact request, so that they are isolated per credential and hold
// neither in clear. They expire in Redis itself (PX), and each is at most
// MaxSharedValueBytes: Redis holds at most one entry per distinct request
// made within one TTL.
type Cache struct {
	f *Fleet
}

// Cache returns the fleet's cache.
func (f *Fleet) Cache() *Cache { return &Cache{f: f} }

// Get returns the entry of key from Redis, and the time it has left.
func (c *Cache) Get(ctx context.Context, key string) ([]byte, time.Duration, bool) {
	var (
		value *redis.StringCmd
		left  *redis.DurationCmd
	)
	if !c.f.do(ctx, "cache_get", func(ctx context.Context) error {
		pipe := c.f.rdb.Pipeline()
		value, left = pipe.Get(ctx, cacheKey(key)), pipe.PTTL(ctx, cacheKey(key))
		_, err := pipe.Exec(ctx)
		return err
	}) {
		return nil, 0, false
	}
	b, err1 := value.Bytes()
	d, err2 := left.Result()
	if err1 != nil || err2 != nil || d <= 0 {
		return nil, 0, false // missing (redis.Nil), or expiring as we read it
	}
	return b, d, true
}

// Set keeps value under key for ttl in Redis, unless it is larger than
// MaxSharedValueBytes (the replica that fetched it keeps it then).
func (c *Cache) Set(ctx context.Context, key string, value []byte, ttl time.Duration) {
	if ttl <= 0 {
		return
	}
	if len(value) > MaxSharedValueBytes {
		c.f.metrics.skipped.WithLabelValues("cache_set_too_large").Inc()
		return
	}
	c.f.do(ctx, "cache_set", func(ctx context.Context) error {
		pipe := c.f.rdb.Pipeline()
		pipe.Set(ctx, cacheKey(key), value, ttl)
		// The entry is filled: the next miss, once it expires, claims anew
		// rather than waiting for a claim nobody holds any more.
		pipe.Del(ctx, claimKey(key))
		_, err := pipe.Exec(ctx)
		return err
	})
}

// claim claims the entry (KEYS[1]) by its claim key (KEYS[2]) for this
// replica (ARGV[1]) for ARGV[2] milliseconds, unless the entry exists (it was
// filled since the caller missed it, and filling released the claim) or
// another caller holds the claim; 1 when claimed.
var claim = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 1
end
return 0`)

// Claim reports whether this caller should fill key's missing entry: true for
// the first caller fleet-wide within ttl, false while another holds the claim
// or once the entry is there (the caller's next Get finds it). When Redis does
// not answer it is true: each replica then fills its own.
func (c *Cache) Claim(ctx context.Context, key string, ttl time.Duration) bool {
	claimed := true
	c.f.do(ctx, "cache_claim", func(ctx context.Context) error {
		n, err := claim.Run(ctx, c.f.rdb, []string{cacheKey(key), claimKey(key)}, c.f.id, ttl.Milliseconds()).Int()
		claimed = err != nil || n == 1
		return err
	})
	return claimed
}

// unclaim deletes the claim key (KEYS[1]) if this replica (ARGV[1]) holds it.
var unclaim = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0`)

// Release gives up this replica's claim on key, whose call could not fill the
// entry: the next caller fleet-wide claims at once instead of waiting for an
// entry that will not come.
func (c *Cache) Release(ctx context.Context, key string) {
	c.f.do(ctx, "cache_release", func(ctx context.Context) error {
		return unclaim.Run(ctx, c.f.rdb, []string{claimKey(key)}, c.f.id).Err()
	})
}
