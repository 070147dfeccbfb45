package upstream

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/acme/plugin-facade/internal/upstream/upstreamtest"
)

// slowMinimal is an upstream that takes a while to answer, so that calls
// overlap.
func slowMinimal(t *testing.T, delay time.Duration) *upstreamtest.Server {
	return upstreamtest.Start(t, upstreamtest.Response{Status: 200, Body: minimal, Delay: delay})
}

func TestConcurrentIdenticalCallsShareOneRequest(t *testing.T) {
	up := slowMinimal(t, 300*time.Millisecond)
	c := newClient(t, up.URL)
	const callers = 50
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	metas := make(chan Meta, callers)
	for range callers {
		wg.Go(func() {
			_, meta, err := c.GetConnectorPlugin(t.Context(), testAuth, "ccp-1")
			errs <- err
			metas <- meta
		})
	}
	wg.Wait()
	close(errs)
	close(metas)
	for err := range errs {
		if err != nil {
			t.Fatalf("a caller failed: %v", err)
		}
	}
	// Meta.Attempts counts the requests a call sent itself; the others
	// count the answer they took from it as Shared.
	sent, shared := 0, 0
	for m := range metas {
		if m.Attempts+m.Shared != 1 {
			t.Errorf("a caller's Meta: %d attempts, %d shared; want one answer in all", m.Attempts, m.Shared)
		}
		sent, shared = sent+m.Attempts, shared+m.Shared
	}
	if sent != up.Count() || shared != callers-sent {
		t.Errorf("callers say %d requests sent and %d answers shared; the upstream received %d requests", sent, shared, up.Count())
	}
	t.Logf("%d concurrent identical calls, %d upstream requests", callers, up.Count())
	// One request, or two if some callers arrived just as the first ended.
	if n := up.Count(); n > 2 {
		t.Errorf("%d concurrent identical calls made %d upstream requests, want at most 2", callers, n)
	}
}

func TestCoalescingKeepsCallersApart(t *testing.T) {
	tests := []struct {
		name     string
		a, b     func(context.Context, *Client) error
		wantSent int
	}{
		{
			name: "other credentials",
			a: func(ctx context.Context, c *Client) error {
				_, _, err := c.GetConnectorPlugin(ctx, testAuth, "ccp-1")
				return err
			},
			b: func(ctx context.Context, c *Client) error {
				_, _, err := c.GetConnectorPlugin(ctx, BasicAuth("OTHER", "x"), "ccp-1")
				return err
			},
			wantSent: 2,
		},
		{
			name: "another resource",
			a: func(ctx context.Context, c *Client) error {
				_, _, err := c.GetConnectorPlugin(ctx, testAuth, "ccp-1")
				return err
			},
			b: func(ctx context.Context, c *Client) error {
				_, _, err := c.GetConnectorPlugin(ctx, testAuth, "ccp-2")
				return err
			},
			wantSent: 2,
		},
		{
			name: "another environment",
			a: func(ctx context.Context, c *Client) error {
				_, _, err := c.GetPluginVersion(ctx, testAuth, "ccp-1", "ver-1", "env-1")
				return err
			},
			b: func(ctx context.Context, c *Client) error {
				_, _, err := c.GetPluginVersion(ctx, testAuth, "ccp-1", "ver-1", "env-2")
				return err
			},
			wantSent: 2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := slowMinimal(t, 200*time.Millisecond)
			c := newClient(t, up.URL)
			var wg sync.WaitGroup
			wg.Go(func() { _ = tt.a(t.Context(), c) })
			wg.Go(func() { _ = tt.b(t.Context(), c) })
			wg.Wait()
			if n := up.Count(); n != tt.wantSent {
				t.Errorf("upstream received %d requests, want %d", n, tt.wantSent)
			}
		})
	}
}

// TestSharedRequestEndsWhenEveryCallerHasLeft: nobody waits any more, so the
// upstream request is abandoned at once, as a lone caller's would be.
func TestSharedRequestEndsWhenEveryCallerHasLeft(t *testing.T) {
	up := upstreamtest.StartScript(t,
		upstreamtest.Response{Status: 200, Body: minimal, Delay: 10 * time.Second},
		upstreamtest.Response{Status: 200, Body: minimal})
	c := newClient(t, up.URL)
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() { _, _, _ = c.GetConnectorPlugin(ctx, testAuth, "ccp-1") })
	}
	wg.Wait()
	if !up.Abandoned(2 * time.Second) {
		t.Error("the shared upstream request went on after every caller had left")
	}
	// A new caller starts afresh rather than joining the abandoned request.
	if _, _, err := c.GetConnectorPlugin(t.Context(), testAuth, "ccp-1"); err != nil || up.Count() != 2 {
		t.Fatalf("a later call: %v after %d requests, want a fresh, second request", err, up.Count())
	}
}

func TestCache(t *testing.T) {
	t.Run("off by default", func(t *testing.T) {
		up := slowMinimal(t, 0)
		c := newClient(t, up.URL)
		for range 3 {
			if _, _, err := c.GetConnectorPlugin(t.Context(), testAuth, "ccp-1"); err != nil {
				t.Fatal(err)
			}
		}
		if up.Count() != 3 {
			t.Errorf("upstream received %d requests, want 3", up.Count())
		}
	})
	t.Run("answers from the cache within the TTL, per credential", func(t *testing.T) {
		up := slowMinimal(t, 0)
		c := newClient(t, up.URL, WithCache(time.Minute, 10))
		for range 3 {
			if _, _, err := c.GetConnectorPlugin(t.Context(), testAuth, "ccp-1"); err != nil {
				t.Fatal(err)
			}
		}
		_, meta, err := c.GetConnectorPlugin(t.Context(), testAuth, "ccp-1")
		if err != nil || !meta.Cached || meta.Attempts != 0 || meta.StatusCode != 200 {
			t.Fatalf("err %v, meta %+v; want a cached 200", err, meta)
		}
		if up.Count() != 1 {
			t.Errorf("upstream received %d requests, want 1", up.Count())
		}
		if _, meta, _ := c.GetConnectorPlugin(t.Context(), BasicAuth("OTHER", "x"), "ccp-1"); meta.Cached || up.Count() != 2 {
			t.Errorf("another credential was answered from the first one's cache")
		}
	})
	t.Run("expires", func(t *testing.T) {
		now := time.Unix(1_700_000_000, 0)
		c, err := newAnswerCache(time.Minute, 10, nil, func() time.Time { return now })
		if err != nil {
			t.Fatal(err)
		}
		a := &answer{status: 200}
		c.add(t.Context(), "k", a)
		now = now.Add(time.Minute - time.Nanosecond)
		if got, _ := c.get(t.Context(), "k", nil); got != a {
			t.Fatalf("within the TTL: %v, want the entry", got)
		}
		now = now.Add(time.Nanosecond)
		if got, _ := c.get(t.Context(), "k", nil); got != nil || c.local.Len() != 0 {
			t.Errorf("past the TTL: %v (%d entries), want a miss and the entry gone", got, c.local.Len())
		}
	})
	t.Run("bounded in size", func(t *testing.T) {
		up := slowMinimal(t, 0)
		c := newClient(t, up.URL, WithCache(time.Minute, 2))
		for _, id := range []string{"a", "b", "c", "a"} {
			_, _, _ = c.GetConnectorPlugin(t.Context(), testAuth, id)
		}
		if c.cache.local.Len() != 2 || up.Count() != 4 {
			t.Errorf("cache holds %d entries after %d requests, want 2 after 4 (a was evicted by c)", c.cache.local.Len(), up.Count())
		}
	})
	t.Run("a fresh read asks the upstream, and refreshes the entry", func(t *testing.T) {
		up := upstreamtest.StartScript(t, upstreamtest.Response{Status: 200, Header: http.Header{"X-Request-Id": {"first"}}, Body: minimal},
			upstreamtest.Response{Status: 200, Header: http.Header{"X-Request-Id": {"second"}}, Body: minimal})
		c := newClient(t, up.URL, WithCache(time.Minute, 10))
		_, _, _ = c.GetConnectorPlugin(t.Context(), testAuth, "ccp-1")
		_, meta, err := c.GetConnectorPlugin(t.Context(), testAuth, "ccp-1", Fresh())
		if err != nil || meta.Cached || meta.RequestID != "second" {
			t.Fatalf("fresh read: %+v, %v; want the upstream's second answer", meta, err)
		}
		if _, meta, _ := c.GetConnectorPlugin(t.Context(), testAuth, "ccp-1"); !meta.Cached || meta.RequestID != "second" {
			t.Errorf("the read after it: %+v, want the fresh answer, cached", meta)
		}
	})
	t.Run("failures are not cached", func(t *testing.T) {
		up := upstreamtest.Start(t, answerFailure(404, nil))
		c := newClient(t, up.URL, WithCache(time.Minute, 10))
		for range 2 {
			_, _, _ = c.GetConnectorPlugin(t.Context(), testAuth, "ccp-1")
		}
		if up.Count() != 2 {
			t.Errorf("upstream received %d requests, want 2", up.Count())
		}
	})
}

// The tests below drive flights itself, without HTTP, in a synctest bubble:
// fake time, and synctest.Wait to know that every caller is blocked where
// the test expects it, with no sleep.

// exchangeStub is a shared exchange the test ends: it answers when release
// is closed, or fails with its context's error when that ends first.
type exchangeStub struct {
	started  chan struct{}
	release  chan struct{}
	canceled bool
}

func newExchangeStub() *exchangeStub {
	return &exchangeStub{started: make(chan struct{}, 8), release: make(chan struct{})}
}

func (x *exchangeStub) fn(ctx context.Context) (*answer, error) {
	x.started <- struct{}{}
	select {
	case <-x.release:
		return &answer{status: 200}, nil
	case <-ctx.Done():
		x.canceled = true
		return nil, ctx.Err()
	}
}

type flightResult struct {
	a      *answer
	shared bool
	err    error
}

func goDo(fs *flights, ctx context.Context, key requestID, fn func(context.Context) (*answer, error)) chan flightResult {
	out := make(chan flightResult, 1)
	go func() {
		a, shared, err := fs.do(ctx, key, fn)
		out <- flightResult{a, shared, err}
	}()
	return out
}

// TestOneCallerLeavingDoesNotFailTheOthers: the caller that started the shared
// exchange cancels; the others still get its answer.
func TestOneCallerLeavingDoesNotFailTheOthers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var fs flights
		x := newExchangeStub()
		first, cancelFirst := context.WithCancel(t.Context())
		firstDone := goDo(&fs, first, requestID{1}, x.fn)
		synctest.Wait() // the exchange runs
		var others []chan flightResult
		for range 5 {
			others = append(others, goDo(&fs, t.Context(), requestID{1}, x.fn))
		}
		synctest.Wait() // they have joined it
		cancelFirst()
		close(x.release)
		if r := <-firstDone; !errors.Is(r.err, context.Canceled) {
			t.Errorf("the canceled caller got %v, want its cancellation", r.err)
		}
		for _, o := range others {
			if r := <-o; r.err != nil || r.a == nil || !r.shared {
				t.Errorf("a caller that stayed got %+v, want the shared answer", r)
			}
		}
		if n := len(x.started); n != 1 || x.canceled {
			t.Errorf("%d exchanges (canceled %v), want the 1 shared, answered", n, x.canceled)
		}
	})
}

// TestLastCallerLeavingCancelsTheExchange: nobody waits any more, so the
// exchange is canceled at once, as a lone caller's would be.
func TestLastCallerLeavingCancelsTheExchange(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var fs flights
		x := newExchangeStub()
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		var results []chan flightResult
		for range 3 {
			results = append(results, goDo(&fs, ctx, requestID{1}, x.fn))
		}
		for _, r := range results {
			if r := <-r; !errors.Is(r.err, context.DeadlineExceeded) {
				t.Errorf("a caller got %v, want its deadline", r.err)
			}
		}
		synctest.Wait()
		if !x.canceled {
			t.Error("the exchange went on after every caller had left")
		}
	})
}

// TestStuckExchangeIsLeftBehind: once a caller gives up on a shared exchange
// (it may be stuck), later callers start their own instead of joining it;
// callers already waiting leave at their own deadlines.
func TestStuckExchangeIsLeftBehind(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var fs flights
		stuck := newExchangeStub()
		withTimeout := func(d time.Duration) context.Context {
			ctx, cancel := context.WithTimeout(t.Context(), d)
			t.Cleanup(cancel)
			return ctx
		}
		start := time.Now()
		first := goDo(&fs, withTimeout(500*time.Millisecond), requestID{1}, stuck.fn)
		time.Sleep(200 * time.Millisecond)
		joiner := goDo(&fs, withTimeout(500*time.Millisecond), requestID{1}, stuck.fn)
		<-first // the first gives up at 500ms
		fresh := newExchangeStub()
		close(fresh.release)
		if r := <-goDo(&fs, t.Context(), requestID{1}, fresh.fn); r.err != nil || r.shared {
			t.Errorf("a caller after the first gave up: %+v, want an exchange of its own", r)
		}
		r := <-joiner
		if took := time.Since(start); !errors.Is(r.err, context.DeadlineExceeded) || took != 700*time.Millisecond {
			t.Errorf("the joiner: %v after %v, want its own deadline at 700ms", r.err, took)
		}
		if len(fresh.started) != 1 {
			t.Errorf("%d fresh exchanges, want 1", len(fresh.started))
		}
	})
}

// claimStore is a CacheStore and CacheClaimer in memory, as a shared store
// behaves for one replica.
type claimStore struct {
	mu       sync.Mutex
	entries  map[string][]byte
	claims   map[string]bool
	released int
}

func (s *claimStore) Get(_ context.Context, key string) ([]byte, time.Duration, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.entries[key]
	return b, time.Minute, ok
}

func (s *claimStore) Set(_ context.Context, key string, value []byte, _ time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.entries[key] = value
	delete(s.claims, key)
}

func (s *claimStore) Claim(_ context.Context, key string, _ time.Duration) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.claims[key] {
		return false
	}
	s.claims[key] = true
	return true
}

func (s *claimStore) Release(_ context.Context, key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.claims, key)
	s.released++
}

// TestFailedFillReleasesItsClaim: a caller that claimed a missing entry and
// failed gives the claim up, so the next caller fills it at once instead of
// waiting claimWait for an entry that would never come.
func TestFailedFillReleasesItsClaim(t *testing.T) {
	up := upstreamtest.StartScript(t, answerFailure(500, nil), ok200)
	store := &claimStore{entries: map[string][]byte{}, claims: map[string]bool{}}
	c := newClient(t, up.URL, WithCache(time.Minute, 10), WithCacheStore(store))
	if _, _, err := c.GetConnectorPlugin(t.Context(), testAuth, "ccp-1"); err == nil {
		t.Fatal("the first call succeeded; want the scripted 500")
	}
	start := time.Now()
	if _, meta, err := c.GetConnectorPlugin(t.Context(), testAuth, "ccp-1"); err != nil || meta.Cached {
		t.Fatalf("the second call: %v (cached %v), want the upstream's answer", err, meta.Cached)
	}
	if took := time.Since(start); took >= claimWait {
		t.Errorf("the second call took %v: it waited for the failed caller's claim", took)
	}
	if _, meta, err := c.GetConnectorPlugin(t.Context(), testAuth, "ccp-1"); err != nil || !meta.Cached {
		t.Errorf("the third call: %v (cached %v), want the cached answer", err, meta.Cached)
	}
	if store.released != 1 || up.Count() != 2 {
		t.Errorf("%d releases, %d upstream requests; want 1 and 2", store.released, up.Count())
	}
}
