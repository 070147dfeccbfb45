package upstream

import (
	"context"
	"crypto/sha256"
	"sync"

	"golang.org/x/sync/singleflight"
)

// flightKey identifies one exact upstream request with one credential: a
// hash of both, so that neither is kept in memory in clear.
type flightKey [sha256.Size]byte

func newFlightKey(cred credKey, url string) flightKey {
	h := sha256.New()
	h.Write(cred[:])
	h.Write([]byte(url))
	var k flightKey
	h.Sum(k[:0])
	return k
}

// flights coalesces identical concurrent exchanges: callers that want the same
// request with the same credential while one is in flight wait for its answer
// instead of sending their own. singleflight does the sharing; flights adds
// what it lacks for a server whose callers come and go:
//
//   - the shared exchange runs under a context of its own, detached from any
//     one caller's deadline or cancellation, so that a caller who leaves never
//     fails the others;
//   - it is canceled once every caller waiting for it has left, so that an
//     abandoned exchange stops at once, as a lone caller's would.
type flights struct {
	group singleflight.Group

	mu      sync.Mutex
	pending map[string]*flight
}

// flight is one shared exchange and the callers waiting for it.
type flight struct {
	ctx     context.Context
	cancel  context.CancelFunc
	waiters int
}

// do returns the answer of fn for key, running fn once for all the callers
// that ask for key while it runs. Each caller stops waiting when its own ctx
// ends. shared reports whether the answer was another caller's.
func (fs *flights) do(ctx context.Context, key flightKey, fn func(context.Context) (*answer, error)) (a *answer, shared bool, err error) {
	k := string(key[:])
	fs.mu.Lock()
	if fs.pending == nil {
		fs.pending = make(map[string]*flight)
	}
	f := fs.pending[k]
	if f == nil {
		fctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		f = &flight{ctx: fctx, cancel: cancel}
		fs.pending[k] = f
	}
	f.waiters++
	// Joining under the lock keeps pending and the group in step: a caller
	// that finds f in pending joins f's exchange, never a new one.
	ch := fs.group.DoChan(k, func() (any, error) {
		a, err := fn(f.ctx)
		fs.mu.Lock()
		if fs.pending[k] == f {
			delete(fs.pending, k)
		}
		fs.mu.Unlock()
		f.cancel()
		return a, err
	})
	fs.mu.Unlock()

	select {
	case r := <-ch:
		fs.leave(k, f)
		a, _ := r.Val.(*answer)
		return a, r.Shared, r.Err
	case <-ctx.Done():
		fs.leave(k, f)
		return nil, false, ctx.Err()
	}
}

// leave takes a caller off f; the last one to leave cancels f's exchange if it
// is still running, and makes sure that no later caller joins it.
func (fs *flights) leave(k string, f *flight) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	f.waiters--
	if f.waiters > 0 {
		return
	}
	f.cancel()
	if fs.pending[k] == f {
		delete(fs.pending, k)
		fs.group.Forget(k)
	}
}
