package upstream

import (
	"context"
	"errors"
	"sync"
	"testing"
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
	for range callers {
		wg.Go(func() {
			_, _, err := c.GetConnectorPlugin(t.Context(), testAuth, "ccp-1")
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("a caller failed: %v", err)
		}
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

// TestOneCallerLeavingDoesNotFailTheOthers: the caller that started the shared
// request cancels; the others still get the answer.
func TestOneCallerLeavingDoesNotFailTheOthers(t *testing.T) {
	up := slowMinimal(t, 400*time.Millisecond)
	c := newClient(t, up.URL)
	first, cancelFirst := context.WithCancel(t.Context())
	firstErr := make(chan error, 1)
	go func() {
		_, _, err := c.GetConnectorPlugin(first, testAuth, "ccp-1")
		firstErr <- err
	}()
	time.Sleep(50 * time.Millisecond) // the first call's request is in flight
	var wg sync.WaitGroup
	errs := make(chan error, 5)
	for range 5 {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			_, _, err := c.GetConnectorPlugin(ctx, testAuth, "ccp-1")
			errs <- err
		})
	}
	time.Sleep(50 * time.Millisecond)
	cancelFirst()
	var te *TransportError
	if err := <-firstErr; !errors.As(err, &te) || !te.Canceled() {
		t.Errorf("the canceled caller got %v, want its cancellation", err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("a caller that stayed failed: %v", err)
		}
	}
	if n := up.Count(); n != 1 {
		t.Errorf("upstream received %d requests, want the 1 shared", n)
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
		up := slowMinimal(t, 0)
		c := newClient(t, up.URL, WithCache(50*time.Millisecond, 10))
		_, _, _ = c.GetConnectorPlugin(t.Context(), testAuth, "ccp-1")
		time.Sleep(200 * time.Millisecond)
		if _, meta, _ := c.GetConnectorPlugin(t.Context(), testAuth, "ccp-1"); meta.Cached || up.Count() != 2 {
			t.Errorf("an expired entry answered (cached %v, %d requests)", meta.Cached, up.Count())
		}
	})
	t.Run("bounded in size", func(t *testing.T) {
		up := slowMinimal(t, 0)
		c := newClient(t, up.URL, WithCache(time.Minute, 2))
		for _, id := range []string{"a", "b", "c", "a"} {
			_, _, _ = c.GetConnectorPlugin(t.Context(), testAuth, id)
		}
		if c.cache.(*memoryCache).lru.Len() != 2 || up.Count() != 4 {
			t.Errorf("cache holds %d entries after %d requests, want 2 after 4 (a was evicted by c)", c.cache.(*memoryCache).lru.Len(), up.Count())
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

// TestStuckSharedRequestIsLeftBehind: once a caller gives up on a shared
// request (it may be stuck), later callers send their own instead of joining
// it; callers already waiting leave at their own deadlines.
func TestStuckSharedRequestIsLeftBehind(t *testing.T) {
	up := upstreamtest.StartScript(t,
		upstreamtest.Response{Status: 200, Body: minimal, Delay: 10 * time.Second},
		upstreamtest.Response{Status: 200, Body: minimal})
	c := newClient(t, up.URL)
	call := func(deadline time.Duration) (time.Duration, error) {
		ctx, cancel := context.WithTimeout(t.Context(), deadline)
		defer cancel()
		start := time.Now()
		_, _, err := c.GetConnectorPlugin(ctx, testAuth, "ccp-1")
		return time.Since(start), err
	}
	var wg sync.WaitGroup
	wg.Go(func() { _, _ = call(500 * time.Millisecond) }) // starts the stuck request
	time.Sleep(200 * time.Millisecond)
	var joinerTook time.Duration
	var joinerErr error
	wg.Go(func() { joinerTook, joinerErr = call(500 * time.Millisecond) }) // joins it
	time.Sleep(500 * time.Millisecond)                                     // the first has given up
	took, err := call(5 * time.Second)
	if err != nil || took > 2*time.Second {
		t.Errorf("a caller after the first gave up: %v after %v, want a fresh request's answer", err, took)
	}
	wg.Wait()
	if joinerErr == nil || joinerTook > 1500*time.Millisecond {
		t.Errorf("the caller that joined the stuck request: %v after %v, want its own deadline (500ms)", joinerErr, joinerTook)
	}
	if up.Count() != 2 {
		t.Errorf("upstream received %d requests, want 2 (the stuck one and a fresh one)", up.Count())
	}
}
