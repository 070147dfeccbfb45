package service

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	pluginv1 "github.com/acme/plugin-facade/gen/go/confluent/plugin/v1"
	"github.com/acme/plugin-facade/internal/callinfo"
	"github.com/acme/plugin-facade/internal/failure"
	"github.com/acme/plugin-facade/internal/passthrough"
	"github.com/acme/plugin-facade/internal/upstream"
)

// WatchIntervals bound how often WatchPluginVersion polls the upstream.
type WatchIntervals struct {
	// Min and Max bound the poll interval a caller may ask for; Default is
	// used when it asks for none.
	Min, Default, Max time.Duration
	// Cap is the longest wait between two polls once the backoff has grown
	// (it never goes below the caller's interval).
	Cap time.Duration
	// MaxFailures is how many polls in a row may fail with a transient error
	// (the upstream unreachable, overloaded, rate-limiting) before the watch
	// ends with that error.
	MaxFailures int
}

// DefaultWatchIntervals are the bounds of a service without WithWatchIntervals.
var DefaultWatchIntervals = WatchIntervals{Min: time.Second, Default: 2 * time.Second, Max: time.Minute, Cap: 30 * time.Second, MaxFailures: 8}

// WithWatchIntervals sets the polling bounds of WatchPluginVersion; zero fields
// keep their defaults.
func WithWatchIntervals(w WatchIntervals) Option {
	return func(s *Service) {
		d := DefaultWatchIntervals
		if w.Min > 0 {
			d.Min = w.Min
		}
		if w.Default > 0 {
			d.Default = w.Default
		}
		if w.Max > 0 {
			d.Max = w.Max
		}
		if w.Cap > 0 {
			d.Cap = w.Cap
		}
		if w.MaxFailures > 0 {
			d.MaxFailures = w.MaxFailures
		}
		s.watchIntervals = d
	}
}

// interval is the caller's poll interval, within the bounds.
func (w WatchIntervals) interval(asked time.Duration) time.Duration {
	if asked <= 0 {
		return w.Default
	}
	return min(max(asked, w.Min), w.Max)
}

// WatchPluginVersion streams a plugin version until its phase is terminal.
//
// All the callers watching the same version with the same credential share one
// poll loop (see watches): each gets the version as last seen at once, then
// every change. The loop runs as long as one of them still watches.
func (s *Service) WatchPluginVersion(req *pluginv1.WatchPluginVersionRequest, stream grpc.ServerStreamingServer[pluginv1.CustomConnectPluginVersion]) error {
	ctx := stream.Context()
	vs := validate(
		field{"plugin_id", req.GetPluginId()},
		field{"id", req.GetId()},
		field{"environment", req.GetEnvironment()},
	)
	if d := req.GetPollInterval(); d != nil && (!d.IsValid() || d.AsDuration() < 0) {
		vs = append(vs, failure.Violation{Field: "poll_interval", Description: "must be a valid, non-negative duration", Reason: "INVALID_DURATION"})
	}
	if len(vs) > 0 {
		return failure.Invalid(vs...)
	}
	auth, err := s.credentials(ctx)
	if err != nil {
		return err
	}
	select {
	case <-s.ending:
		return errStreamsEnded
	default:
	}
	target := watchTarget{auth: auth, pluginID: req.GetPluginId(), id: req.GetId(), environment: req.GetEnvironment()}
	w := s.watches.join(s, target, s.watchIntervals.interval(req.GetPollInterval().AsDuration()))
	defer s.watches.leave(target.key(), w)

	headerSent := false
	for {
		select {
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case <-s.ending:
			return errStreamsEnded
		case <-w.ready:
		}
		ev := w.take()
		if ev == nil {
			continue
		}
		info := upstreamInfo(ev.meta)
		info.Attempts = ev.polls // the poll loop's requests so far
		callinfo.FromContext(ctx).Record(info)
		if !headerSent {
			headerSent = true
			if md := responseMetadata(ev.meta, ev.err); md.Len() > 0 {
				_ = stream.SendHeader(md)
			}
		}
		if ev.err != nil {
			return ev.err
		}
		passthrough.Attach(ctx, ev.version, ev.raw)
		if err := stream.Send(ev.version); err != nil {
			return err
		}
		if ev.final {
			return nil
		}
	}
}

// errStreamsEnded ends the watches of a server that is shutting down. It is
// UNAVAILABLE, which a client retries: the watch resumes on another replica
// (or this one, restarted) from the version as it is then.
var errStreamsEnded = status.Error(codes.Unavailable, "the server is shutting down: watch again to resume")

// EndStreams ends every watch at once with UNAVAILABLE, and refuses new ones
// the same way: a server shutting down calls it before it waits for the
// calls in flight, which a watch would otherwise hold open for as long as
// the version takes to change.
func (s *Service) EndStreams() {
	s.endOnce.Do(func() { close(s.ending) })
}

// watchTarget is what a watcher watches, with whose credential.
type watchTarget struct {
	auth                      upstream.Authorization
	pluginID, id, environment string
}

// watchKey identifies a poll loop: a hash of the credential and the version,
// so that callers with different credentials never share one.
type watchKey [sha256.Size]byte

func (t watchTarget) key() watchKey {
	fp := t.auth.Fingerprint()
	h := sha256.New()
	h.Write(fp[:])
	for _, s := range []string{t.pluginID, t.id, t.environment} {
		h.Write([]byte{0})
		h.Write([]byte(s))
	}
	var k watchKey
	h.Sum(k[:0])
	return k
}

// watchEvent is what a poll loop tells its watchers: a new version, or the
// error that ends the watch.
type watchEvent struct {
	version *pluginv1.CustomConnectPluginVersion
	raw     []byte // the version's JSON as the upstream sent it
	err     error  // a status error; ends the watch
	final   bool   // the version's phase is terminal, or err is set
	meta    upstream.Meta
	polls   int // upstream requests the loop has made so far
}

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
	w := &watcher{interval: interval, ready: make(chan struct{}, 1)}
	k := t.key()
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
		go s.poll(ctx, k, l, t)
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

// broadcast gives ev to every watcher of l. A final event also ends l, in the
// same critical section, so that nobody joins a loop that has ended.
func (ws *watches) broadcast(k watchKey, l *pollLoop, ev *watchEvent) {
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

// poll is the loop of one watched version: poll, tell the watchers what
// changed, wait, and again, until the phase is terminal, a permanent error
// ends the watch, or ctx ends (every watcher has left).
//
// With a relay, the replicas of a fleet share the loop: only the replica that
// holds the version's lease polls, and publishes what it tells its watchers;
// the others tell theirs what it publishes, and ask for the lease every
// renewEvery, so that one of them polls on at once (without a duplicate:
// every replica remembers the last version its watchers got) when the holder
// leaves, and within two poll intervals when it dies.
func (s *Service) poll(ctx context.Context, k watchKey, l *pollLoop, t watchTarget) {
	defer l.cancel()
	var (
		st      pollState
		due     time.Time        // of the next poll; zero: at once
		leading = s.relay == nil // whether this replica polls
		relayed <-chan []byte    // what the others publish; nil without a relay
		rk      = hex.EncodeToString(k[:])
	)
	if s.relay != nil {
		relayed = s.relay.Subscribe(ctx, rk)
		defer s.relay.Resign(context.WithoutCancel(ctx), rk)
	}
	for {
		base := s.watches.interval(l)
		if base == 0 {
			return // every watcher left between two polls
		}
		if s.relay != nil {
			lead := s.relay.Lead(ctx, rk, leaseTTL(base))
			if lead && !leading {
				due = time.Time{} // taking over: poll now
			}
			leading = lead
		}
		if leading && !time.Now().Before(due) {
			ev, wait, done := s.pollOnce(ctx, t, &st, base)
			if ctx.Err() != nil {
				return
			}
			if ev != nil {
				s.watches.broadcast(k, l, ev)
				if s.relay != nil {
					if msg, err := encodeRelayed(ev); err == nil {
						s.relay.Publish(ctx, rk, msg, leaseTTL(base))
					}
				}
			}
			if done {
				return
			}
			due = time.Now().Add(wait)
		}
		var sleep time.Duration
		switch {
		case s.relay == nil:
			sleep = time.Until(due)
		case leading:
			sleep = min(time.Until(due), renewEvery(base))
		default:
			sleep = renewEvery(base)
		}
		if s.sleep(ctx, sleep, relayed, func(msg []byte) bool { return s.relayed(k, l, &st, msg, base) }) {
			return
		}
	}
}

// sleep waits for d, handing what another replica publishes meanwhile to
// relay. It reports whether the loop is over: ctx ended, or relay said so.
func (s *Service) sleep(ctx context.Context, d time.Duration, relayed <-chan []byte, relay func([]byte) bool) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case <-timer.C:
			return false
		case <-ctx.Done():
			return true
		case msg := <-relayed:
			if relay(msg) {
				return true
			}
		}
	}
}

// relayed tells l's watchers a state another replica published, unless they
// have it already, and reports whether it ends the watch.
func (s *Service) relayed(k watchKey, l *pollLoop, st *pollState, msg []byte, base time.Duration) bool {
	ev, err := decodeRelayed(msg, st.polls)
	if err != nil {
		s.log.Warn("ignoring an undecodable watch state from another replica", "error", err.Error())
		return false
	}
	if ev.err == nil {
		if st.last != nil && proto.Equal(st.last, ev.version) {
			return false
		}
		ev.final = ev.final || terminal(ev.version)
		st.last, st.backoff = ev.version, base
	}
	s.watches.broadcast(k, l, ev)
	return ev.final
}

// pollState is what a poll loop remembers from one poll to the next.
type pollState struct {
	last     *pluginv1.CustomConnectPluginVersion // the last version the watchers got
	backoff  time.Duration                        // the wait grows while nothing changes
	failures int                                  // transient failures in a row
	polls    int                                  // upstream requests made so far
}

// pollOnce polls the upstream once. It returns the event for the watchers
// when there is news (a changed version, or the error that ends the watch),
// the wait before the next poll, and whether the loop is over.
func (s *Service) pollOnce(ctx context.Context, t watchTarget, st *pollState, base time.Duration) (ev *watchEvent, wait time.Duration, done bool) {
	longest := max(s.watchIntervals.Cap, base)
	pctx, cancel := s.pollContext(ctx)
	// Fresh: an answer cached for unary reads would hide the change the
	// watch waits for for as long as the cache keeps it.
	v, meta, err := s.client.GetPluginVersion(pctx, t.auth, t.pluginID, t.id, t.environment, upstream.Fresh())
	cancel()
	if ctx.Err() != nil {
		return nil, 0, true
	}
	st.polls += meta.Attempts
	switch {
	case err == nil:
		st.failures = 0
		pv := pluginVersionToProto(v)
		final := terminal(pv)
		if st.last == nil || !proto.Equal(st.last, pv) {
			st.last, st.backoff = pv, base
			ev = &watchEvent{version: pv, raw: v.Raw, final: final, meta: meta, polls: st.polls}
		} else {
			st.backoff = min(2*st.backoff, longest)
		}
		if final {
			return ev, 0, true
		}
		wait = st.backoff
	case !upstream.IsTemporary(err) || st.failures+1 >= s.watchIntervals.MaxFailures:
		return &watchEvent{err: s.failure(ctx, meta, err), final: true, meta: meta, polls: st.polls}, 0, true
	default:
		// Temporary: the client has retried already; wait longer and
		// poll again, no sooner than the failure's hint.
		st.failures++
		st.backoff = min(2*max(st.backoff, base), longest)
		hint, _ := upstream.RetryHint(err)
		wait = max(st.backoff, hint)
	}
	// Polite: never poll into a rate-limit window the upstream said is
	// exhausted.
	if rl := meta.RateLimit; rl.Exhausted() && rl.Reset > wait {
		wait = rl.Reset
	}
	return ev, wait, false
}

// pollContext bounds one poll by the upstream timeout (DefaultUpstreamTimeout
// without one).
func (s *Service) pollContext(ctx context.Context) (context.Context, context.CancelFunc) {
	d := s.timeout
	if d <= 0 {
		d = DefaultUpstreamTimeout
	}
	return context.WithTimeout(ctx, d)
}

// terminal reports whether a version's phase will not change any more.
func terminal(v *pluginv1.CustomConnectPluginVersion) bool {
	switch v.GetStatus().GetPhase() {
	case pluginv1.VersionPhase_VERSION_PHASE_READY, pluginv1.VersionPhase_VERSION_PHASE_FAILED:
		return true
	}
	return false
}
