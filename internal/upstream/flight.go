package upstream

import (
	"context"
	"sync"
)

// flights coalesces identical concurrent exchanges: callers that want the same
// request with the same credential while one is in flight wait for its answer
// instead of sending their own.
//
// It is golang.org/x/sync/singleflight's idea with two differences a server
// whose callers come and go needs, and one for speed:
//
//   - the shared exchange runs under a context of its own, detached from any
//     one caller's deadline or cancellation, so that a caller who leaves never
//     fails the others;
//   - it is canceled once every caller waiting for it has left, so that an
//     abandoned exchange stops at once, as a lone caller's would;
//   - the first caller runs the exchange on its own goroutine, where
//     singleflight's DoChan (the only form that lets a waiting caller leave
//     at its deadline) starts a goroutine per exchange whose stack then grows
//     through the HTTP call (docs/benchmarks.md has the cost).
type flights struct {
	mu    sync.Mutex
	calls map[requestID]*flight
}

// flight is one shared exchange and the callers waiting for it.
type flight struct {
	cancel  context.CancelFunc
	waiters int           // guarded by flights.mu
	done    chan struct{} // closed once ans and err are set
	ans     *answer
	err     error
}

// do returns the answer of fn for key, running fn once for all the callers
// that ask for key while it runs. Each caller stops waiting when its own ctx
// ends, with one exception: the first caller's goroutine runs fn, so when its
// ctx ends while others still wait, it returns when fn does (at the latest
// when the last of those has left too, which cancels fn). A caller whose ctx
// ended gets ctx.Err(). shared reports whether the answer came from an
// exchange another caller had started.
func (fs *flights) do(ctx context.Context, key requestID, fn func(context.Context) (*answer, error)) (a *answer, shared bool, err error) {
	fs.mu.Lock()
	if f := fs.calls[key]; f != nil {
		f.waiters++
		fs.mu.Unlock()
		select {
		case <-f.done:
			fs.leave(key, f, false)
			return f.ans, true, f.err
		case <-ctx.Done():
			fs.leave(key, f, true)
			return nil, true, ctx.Err()
		}
	}
	if fs.calls == nil {
		fs.calls = make(map[requestID]*flight)
	}
	fctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	f := &flight{cancel: cancel, waiters: 1, done: make(chan struct{})}
	fs.calls[key] = f
	fs.mu.Unlock()

	// When this caller's ctx ends it leaves like any other: the exchange goes
	// on while others wait for it, and is canceled otherwise.
	stop := context.AfterFunc(ctx, func() { fs.leave(key, f, true) })
	f.ans, f.err = fn(fctx)
	fs.mu.Lock()
	if fs.calls[key] == f {
		delete(fs.calls, key) // later callers start afresh
	}
	fs.mu.Unlock()
	close(f.done)
	if !stop() {
		return nil, false, ctx.Err() // this caller left while fn ran
	}
	fs.leave(key, f, false)
	return f.ans, false, f.err
}

// leave takes a caller off f; the last one to leave cancels f's exchange if it
// is still running. A caller that gives up (its deadline passed, or it was
// canceled) also closes f to newcomers: an exchange that outlasted one
// caller's patience may be stuck, and later callers send one of their own
// rather than join it, while those already waiting keep waiting.
func (fs *flights) leave(key requestID, f *flight, gaveUp bool) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	f.waiters--
	if (gaveUp || f.waiters == 0) && fs.calls[key] == f {
		delete(fs.calls, key)
	}
	if f.waiters == 0 {
		f.cancel()
	}
}
