package service

import (
	"context"
	"sync"
	"time"
)

// The fan-out of a watch: one poll loop per watched version and credential
// (watchKey), and for each caller watching it a mailbox (watcher) that the
// loop's events are put in. What the loop polls and when is poll.go's; which
// replica of a fleet polls is relay.go's.

// watcher is one caller's mailbox. It keeps only the latest event: each is a
// whole version, so a slow caller misses intermediate states rather than
// falling behind, and never misses the final one.
type watcher struct {
	interval time.Duration
	ready    chan struct{} // has a value while an event waits

	mu      sync.Mutex
	pending *watchEvent
}

// put leaves ev for the caller, replacing one it has not taken yet. The
// token in ready is sent and drained under the same lock as pending changes,
// so a token always means an event is waiting.
func (w *watcher) put(ev *watchEvent) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.pending = ev
	select {
	case w.ready <- struct{}{}:
	default: // a token is there already, for this event now
	}
}

// take returns the waiting event, or nil if there is none.
func (w *watcher) take() *watchEvent {
	w.mu.Lock()
	defer w.mu.Unlock()
	select {
	case <-w.ready:
	default:
	}
	ev := w.pending
	w.pending = nil
	return ev
}

// watches is the set of running poll loops, one per watchKey.
type watches struct {
	mu    sync.Mutex
	loops map[watchKey]*pollLoop
}

// pollLoop polls one version for its watchers. Its fields are guarded by
// watches.mu.
type pollLoop struct {
	watchers map[*watcher]struct{}
	latest   *watchEvent // the last event sent, for watchers who join later
	cancel   context.CancelFunc
}

// join adds a watcher of t, starting a poll loop when none runs for it. A loop
// that has seen the version already gives it to the newcomer at once.
func (ws *watches) join(s *Service, t watchTarget, interval time.Duration) *watcher {
	return ws.joinLoop(t.key(), interval, func(ctx context.Context, k watchKey, l *pollLoop) {
		s.poll(ctx, k, l, clientSource{s: s, t: t})
	})
}

// joinLoop adds a watcher to k's loop, starting it with run when none runs.
func (ws *watches) joinLoop(k watchKey, interval time.Duration, run func(context.Context, watchKey, *pollLoop)) *watcher {
	w := &watcher{interval: interval, ready: make(chan struct{}, 1)}
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if ws.loops == nil {
		ws.loops = make(map[watchKey]*pollLoop)
	}
	l := ws.loops[k]
	if l == nil {
		// The loop outlives the watcher that started it: it ends when the
		// last watcher leaves, or when the version is terminal.
		ctx, cancel := context.WithCancel(context.Background())
		l = &pollLoop{watchers: map[*watcher]struct{}{}, cancel: cancel}
		ws.loops[k] = l
		go run(ctx, k, l)
	}
	l.watchers[w] = struct{}{}
	if l.latest != nil {
		w.put(l.latest)
	}
	return w
}

// leave removes a watcher; the last one to leave stops the loop.
func (ws *watches) leave(k watchKey, w *watcher) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	l := ws.loops[k]
	if l == nil {
		return // the loop has ended
	}
	delete(l.watchers, w)
	if len(l.watchers) == 0 {
		l.cancel()
		delete(ws.loops, k)
	}
}

// broadcast gives ev, with its response metadata, to every watcher of l. A
// final event also ends l, in the same critical section, so that nobody joins
// a loop that has ended.
func (ws *watches) broadcast(k watchKey, l *pollLoop, ev *watchEvent) {
	ev.header = responseMetadata(ev.meta, ev.err)
	ws.mu.Lock()
	defer ws.mu.Unlock()
	l.latest = ev
	for w := range l.watchers {
		w.put(ev)
	}
	if ev.final && ws.loops[k] == l {
		delete(ws.loops, k)
	}
}

// interval is the shortest poll interval l's watchers asked for.
func (ws *watches) interval(l *pollLoop) time.Duration {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	d := time.Duration(0)
	for w := range l.watchers {
		if d == 0 || w.interval < d {
			d = w.interval
		}
	}
	return d
}
