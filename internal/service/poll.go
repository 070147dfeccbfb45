package service

import (
	"context"
	"time"

	"google.golang.org/protobuf/proto"

	pluginv1 "github.com/acme/plugin-facade/gen/go/confluent/plugin/v1"
	"github.com/acme/plugin-facade/internal/upstream"
)

// The poll policy of a watch: when to read the version again (the caller's
// interval, doubled while nothing changes up to Cap; longer after a transient
// failure, and never into a rate-limit window the upstream said is
// exhausted), what to tell the watchers (each change once), and when to stop
// (a terminal phase, a permanent failure, MaxFailures transient ones in a
// row). The loop reads through a source, so that its tests run it in a
// testing/synctest bubble with fake time.

// source reads the watched version once.
type source interface {
	read(ctx context.Context) (*upstream.PluginVersion, upstream.Meta, error)
}

// clientSource reads t from the upstream, fresh (never an answer cached for
// unary reads, which would hide the change the watch waits for), each read
// bounded by the upstream timeout.
type clientSource struct {
	s *Service
	t watchTarget
}

func (c clientSource) read(ctx context.Context) (*upstream.PluginVersion, upstream.Meta, error) {
	d := c.s.timeout
	if d <= 0 {
		d = DefaultUpstreamTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	return c.s.client.GetPluginVersion(ctx, c.t.auth, c.t.pluginID, c.t.id, c.t.environment, upstream.Fresh())
}

// poll is the loop of one watched version: poll (when this replica leads),
// tell the watchers what changed, wait, and again, until the phase is
// terminal, a permanent error ends the watch, or ctx ends (every watcher has
// left). Between polls it relays what the leading replica publishes.
func (s *Service) poll(ctx context.Context, k watchKey, l *pollLoop, src source) {
	defer l.cancel()
	s.watchObserver.loop(1)
	defer s.watchObserver.loop(-1)
	var (
		st  pollState
		due time.Time // of the next poll; zero: at once
		ld  = s.lead(ctx, k)
	)
	defer ld.resign(context.WithoutCancel(ctx))
	for {
		base := s.watches.interval(l)
		if base == 0 {
			return // every watcher left between two polls
		}
		if ld.renew(ctx, base) {
			due = time.Time{} // taking over: poll now
		}
		if ld.leading && !time.Now().Before(due) {
			ev, wait, done := s.pollOnce(ctx, src, &st, base)
			if ctx.Err() != nil {
				return
			}
			if ev != nil {
				s.watches.broadcast(k, l, ev)
				ld.publish(ctx, ev, base)
			}
			if done {
				return
			}
			due = time.Now().Add(wait)
		}
		if s.wait(ctx, ld.sleep(due, base), ld.relayed, func(msg []byte) bool { return s.relayed(k, l, &st, msg, base) }) {
			return
		}
	}
}

// wait waits for d, handing what another replica publishes meanwhile to
// relay. It reports whether the loop is over: ctx ended, or relay said so.
func (s *Service) wait(ctx context.Context, d time.Duration, relayed <-chan []byte, relay func([]byte) bool) bool {
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

// pollOnce polls once. It returns the event for the watchers when there is
// news (a changed version, or the error that ends the watch), the wait
// before the next poll, and whether the loop is over.
func (s *Service) pollOnce(ctx context.Context, src source, st *pollState, base time.Duration) (ev *watchEvent, wait time.Duration, done bool) {
	longest := max(s.watchIntervals.Cap, base)
	v, meta, err := src.read(ctx)
	if ctx.Err() != nil {
		return nil, 0, true
	}
	s.watchObserver.poll(err == nil)
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
