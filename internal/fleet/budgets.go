package fleet

import (
	"context"
	"time"

	"github.com/go-redis/redis_rate/v10"
)

// Budgets keeps callers' token buckets in Redis, so that a caller's share of
// the service's key is one across the fleet (internal/caller's fair share).
// It is redis_rate's GCRA, one key per caller, which expires once the bucket
// is full again. It implements caller.SharedBudgets.
type Budgets struct {
	f       *Fleet
	limiter *redis_rate.Limiter
}

// budgetKey holds a caller's bucket; name is already a hash.
func budgetKey(name string) string { return prefix + "budget:v1:" + name }

// Budgets returns the fleet's caller budgets.
func (f *Fleet) Budgets() *Budgets { return &Budgets{f: f, limiter: redis_rate.NewLimiter(f.rdb)} }

// Take spends one token of the bucket name (calls per period, as many at
// once). answered is false when Redis did not answer within the fleet's
// timeout (or the fleet is degraded): the caller then uses a local bucket.
func (b *Budgets) Take(ctx context.Context, name string, calls int, period time.Duration) (allowed bool, retryAfter time.Duration, answered bool) {
	var res *redis_rate.Result
	ok := b.f.do(ctx, "budget", func(ctx context.Context) error {
		var err error
		res, err = b.limiter.Allow(ctx, budgetKey(name), redis_rate.Limit{Rate: calls, Burst: calls, Period: period})
		return err
	})
	if !ok || res == nil {
		return false, 0, false
	}
	return res.Allowed > 0, max(res.RetryAfter, 0), true
}
