package caller

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"math"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/time/rate"

	"github.com/acme/plugin-facade/internal/upstream"
)

// The fair share of the service's own key.
//
// Rule: each caller has a token bucket holding S = max(1, floor(F × L))
// tokens and refilling S tokens per W, where L and W are the key's rate-limit
// window as the upstream describes it (X-RateLimit-Limit, and the longest
// X-RateLimit-Reset seen: the length of a fresh window), and F is the share
// (--caller-share, DefaultShare). A call that uses the service's own key (no
// credential of its own) is admitted while its caller's bucket holds a token,
// and then pays one token per request it sent upstream (answers from the
// cache or from an identical call's request cost nothing; a bucket may go
// into debt by what calls admitted together sent, which later calls wait
// out). A watch pays one token when it opens. A caller whose bucket is empty
// gets RESOURCE_EXHAUSTED with the wait until its next token, without the
// upstream being called, while others go on. So ceil(1/F) callers spending
// their whole shares are needed to exhaust the key; the rate-limit guard
// still stands behind the shares for the key as a whole. A caller-policy
// rule's rate replaces the bucket's size and period for the callers it names.
//
// Until an answer has described the key's window there is nothing to share,
// and calls are not counted. With a fleet (--redis-url) the buckets live in
// Redis (redis_rate, the same GCRA everywhere; there a bucket pays what it
// holds, never going into debt); while Redis does not answer each replica
// falls back to buckets of its own.

// DefaultShare is the part of the service key's window that one caller may
// spend by default.
const DefaultShare = 0.2

// maxBudgets bounds how many callers' local buckets a replica keeps (least
// recently used out first; a caller evicted starts with a full bucket).
const maxBudgets = 10000

// maxWindow bounds the window length learned from X-RateLimit-Reset.
const maxWindow = time.Hour

// SharedBudgets keeps callers' token buckets where every replica sees them
// (fleet.Budgets, in Redis), each of calls tokens refilled calls per period.
// Peek says whether key's bucket holds a token, or how long until it will,
// taking none; Spend takes up to n. answered is false when the store could
// not say, and the replica then uses its local bucket.
type SharedBudgets interface {
	Peek(ctx context.Context, key string, calls int, period time.Duration) (ok bool, retryAfter time.Duration, answered bool)
	Spend(ctx context.Context, key string, n, calls int, period time.Duration) (answered bool)
}

// shares holds the service key's window and the callers' buckets.
type shares struct {
	fraction float64
	key      [32]byte // the service key's fingerprint, to recognise its answers
	// keyHeader is the header value of that fingerprint, once seen.
	keyHeader atomic.Pointer[string]
	shared    SharedBudgets

	mu     sync.Mutex
	limit  int
	window time.Duration

	local *lru.Cache[string, *rate.Limiter]
}

func newShares(fraction float64, key upstream.Authorization, shared SharedBudgets) *shares {
	c, _ := lru.New[string, *rate.Limiter](maxBudgets) // only a non-positive size fails
	return &shares{fraction: fraction, key: key.Fingerprint(), shared: shared, local: c}
}

// observe learns the key's window from an answer's headers.
func (s *shares) observe(rl upstream.RateLimit) {
	if rl.Limit <= 0 && rl.Reset <= 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if rl.Limit > 0 {
		s.limit = rl.Limit
	}
	if rl.Reset > s.window {
		s.window = min(rl.Reset, maxWindow)
	}
}

// budget is a caller's bucket: own is its policy rule's rate, if any. ok is
// false while there is nothing to share.
func (s *shares) budget(own *Rate) (Rate, bool) {
	if own != nil {
		return *own, true
	}
	s.mu.Lock()
	limit, window := s.limit, s.window
	s.mu.Unlock()
	if limit <= 0 || window <= 0 {
		return Rate{}, false
	}
	return Rate{Calls: max(1, int(math.Floor(s.fraction*float64(limit)))), Period: window}, true
}

// admit reports whether the caller's bucket holds a token, or how long until
// it will; sharing is false while there is nothing to share.
func (s *shares) admit(ctx context.Context, name string, own *Rate) (b Rate, sharing bool, retryAfter time.Duration, ok bool) {
	b, sharing = s.budget(own)
	if !sharing {
		return b, false, 0, true
	}
	if s.shared != nil {
		if ok, wait, answered := s.shared.Peek(ctx, budgetKey(name), b.Calls, b.Period); answered {
			return b, true, wait, ok
		}
	}
	l := s.limiter(name, b)
	tokens := l.Tokens()
	if tokens >= 1 {
		return b, true, 0, true
	}
	return b, true, time.Duration((1 - tokens) / float64(l.Limit()) * float64(time.Second)), false
}

// spend takes n tokens (the requests a call sent) from the caller's bucket b.
// A local bucket may go into debt, by at most its size.
func (s *shares) spend(ctx context.Context, name string, b Rate, n int) {
	if n <= 0 {
		return
	}
	if s.shared != nil && s.shared.Spend(ctx, budgetKey(name), n, b.Calls, b.Period) {
		return
	}
	s.limiter(name, b).ReserveN(time.Now(), min(n, b.Calls))
}

// limiter is the caller's local bucket, sized b.
func (s *shares) limiter(name string, b Rate) *rate.Limiter {
	every := rate.Every(b.Period / time.Duration(b.Calls))
	l, found := s.local.Get(name)
	if !found {
		l = rate.NewLimiter(every, b.Calls)
		if prev, had, _ := s.local.PeekOrAdd(name, l); had {
			l = prev
		}
	}
	if l.Limit() != every || l.Burst() != b.Calls { // the window or the rule changed
		l.SetLimit(every)
		l.SetBurst(b.Calls)
	}
	return l
}

// budgetKey is a caller's bucket name: a hash of its identity, short and of
// one length whatever the identity.
func budgetKey(name string) string {
	sum := sha256.Sum256([]byte(name))
	return hex.EncodeToString(sum[:16])
}

// transport learns the key's window from every answer to a request sent with
// the service's own key, whichever call sent it.
type transport struct {
	next   http.RoundTripper
	shares *shares
}

func (t transport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(req)
	if err == nil && t.shares.isKey(req.Header.Get("Authorization")) {
		t.shares.observe(upstream.WindowOf(resp.Header))
	}
	return resp, err
}

// isKey reports whether an Authorization header value is the service's key:
// its fingerprint, hashed once; later requests compare the string the client
// sends every time.
func (s *shares) isKey(header string) bool {
	if k := s.keyHeader.Load(); k != nil {
		return header == *k
	}
	if sha256.Sum256([]byte(header)) != s.key {
		return false
	}
	s.keyHeader.Store(&header)
	return true
}
