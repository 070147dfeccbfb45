package fleet

import (
	"context"
	"time"

	"github.com/go-redis/redis_rate/v10"
)

// Budgets keeps callers' token buckets in Redis, so that a caller's share of
// the service's key is one across the fleet (internal/caller's fair share).
// It is redis_rate's GCRA, one key per caller, which expires once the bucket
// is full again. It implements caller.SharedBudgets: a call peeks at its
// caller's bucket when it starts, and spends what it sent upstream when it
// ends.
type Budgets struct {
	f       *Fleet
	limiter *redis_rate.Limiter
}

// budgetKey holds a caller's bucket; name is already a hash.
func budgetKey(name string) string { return prefix + "budget:v1:" + name }

// Budgets returns the fleet's caller budgets.
func (f *Fleet) Budgets() *Budgets { return &Budgets{f: f, limiter: redis_rate.NewLimiter(f.rdb)} }

// Peek says whether the bucket name (calls per period, as many at once)
// holds a token, or how long until it will; it takes none. answered is false
// when Redis did not answer within the fleet's timeout (or the fleet is
// degraded): the caller then uses a local bucket.
func (b *Budgets) Peek(ctx context.Context, name string, calls int, period time.Duration) (ok bool, retryAfter time.Duration, answered bool) {
	var res *redis_rate.Result
	if !b.do(ctx, func(ctx context.Context, l redis_rate.Limit) (err error) {
		res, err = b.limiter.AllowN(ctx, budgetKey(name), l, 0) // a cost of 0 reads the bucket
		return err
	}, calls, period) || res == nil {
		return false, 0, false
	}
	if res.Remaining >= 1 {
		return true, 0, true
	}
	// Less than one token: the next comes when the bucket, full after
	// ResetAfter, holds one more than calls-1 tokens short of full.
	wait := res.ResetAfter - time.Duration(calls-1)*period/time.Duration(calls)
	if res.RetryAfter > 0 {
		wait = res.RetryAfter
	}
	return false, max(wait, time.Millisecond), true
}

// Spend takes up to n tokens from the bucket name (what it holds, when less).
func (b *Budgets) Spend(ctx context.Context, name string, n, calls int, period time.Duration) (answered bool) {
	return b.do(ctx, func(ctx context.Context, l redis_rate.Limit) error {
		_, err := b.limiter.AllowAtMost(ctx, budgetKey(name), l, n)
		return err
	}, calls, period)
}

func (b *Budgets) do(ctx context.Context, op func(context.Context, redis_rate.Limit) error, calls int, period time.Duration) bool {
	l := redis_rate.Limit{Rate: calls, Burst: calls, Period: period}
	return b.f.do(ctx, "budget", func(ctx context.Context) error { return op(ctx, l) })
}
