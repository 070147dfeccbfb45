package service

import (
	"context"
	"crypto/sha256"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

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
	return func(c *config) { c.watchIntervals = w }
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
	if vs := watchViolations(req); len(vs) > 0 {
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
	return s.stream(ctx, w, stream)
}

// stream sends the caller what its mailbox w gets, until the version is
// terminal, the watch fails, the caller leaves or the server shuts down.
//
// The goroutine running it, grpc-go's for the call, only waits: each event is
// sent by a goroutine of its own that ends with the send. This one lasts as
// long as the watch, and the runtime halves a goroutine's stack only while
// less than a quarter of it is in use, which the call chain this one blocks
// under (grpc-go's frames and the interceptors') exceeds once its stack has
// doubled; the deeper chain of a send (the interceptors' stream wrappers,
// encoding, the transport) run here would double it for the watch's life.
// The events of one watch are still sent one at a time and in order, and a
// caller slow to read holds up only its own watch.
func (s *Service) stream(ctx context.Context, w *watcher, stream grpc.ServerStreamingServer[pluginv1.CustomConnectPluginVersion]) error {
	first := true
	done := make(chan sent, 1)
	for {
		select {
		case <-ctx.Done():
			return failure.FromContext(ctx.Err())
		case <-s.ending:
			return errStreamsEnded
		case <-w.ready:
		}
		ev := w.take()
		if ev == nil {
			continue
		}
		go func(first bool) {
			var r sent
			defer func() {
				if p := recover(); p != nil {
					r.panicked, r.value = true, p
				}
				done <- r
			}()
			r.err = send(ctx, ev, first, stream)
		}(first)
		first = false
		// The stream is the sender's until it is done: no return before.
		r := <-done
		if r.panicked {
			panic(r.value) // for the recovery interceptor, as if sent here
		}
		if r.err != nil || ev.final {
			return r.err
		}
	}
}

// sent is how a send ended.
type sent struct {
	err      error
	panicked bool
	value    any // what it panicked with
}

// send sends one event: the response metadata with the first, then the
// version, or the error that ends the watch, which the caller gets as the
// call's status when stream returns it.
func send(ctx context.Context, ev *watchEvent, first bool, stream grpc.ServerStreamingServer[pluginv1.CustomConnectPluginVersion]) error {
	info := upstreamInfo(ev.meta)
	info.Attempts = ev.polls // the poll loop's requests so far
	callinfo.FromContext(ctx).Record(info)
	if first {
		if ev.header.Len() > 0 {
			_ = stream.SendHeader(ev.header)
		}
	}
	if ev.err != nil {
		return ev.err
	}
	passthrough.Attach(ctx, ev.version, ev.raw)
	return stream.Send(ev.version)
}

// errStreamsEnded ends the watches of a server that is shutting down. It is
// UNAVAILABLE, which a client retries: the watch resumes on another replica
// (or this one, restarted) from the version as it is then.
var errStreamsEnded = failure.Facade(failure.ReasonShuttingDown, "the server is shutting down: watch again to resume")

// EndStreams ends every watch at once with UNAVAILABLE, and refuses new ones
// the same way: a server shutting down calls it before it waits for the
// calls in flight, which a watch would otherwise hold open for as long as
// the version takes to change.
func (s *Service) EndStreams() {
	s.endOnce.Do(func() { close(s.ending) })
}

// watchViolations are every invalid field of a watch request, the poll
// interval with the identifiers.
func watchViolations(req *pluginv1.WatchPluginVersionRequest) []failure.Violation {
	vs := validate(
		field{"plugin_id", req.GetPluginId()},
		field{"id", req.GetId()},
		field{"environment", req.GetEnvironment()},
	)
	if d := req.GetPollInterval(); d != nil && (!d.IsValid() || d.AsDuration() < 0) {
		vs = append(vs, failure.Violation{Field: "poll_interval", Description: "must be a valid, non-negative duration", Reason: "INVALID_DURATION"})
	}
	return vs
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
	// header is the response metadata of meta and err, which a watcher
	// sends with the first event it gets. It is made once for all the
	// watchers (broadcast) and shared: each stream keeps the one it sent
	// until it ends, and nothing changes it.
	header metadata.MD
}

// terminal reports whether a version's phase will not change any more.
func terminal(v *pluginv1.CustomConnectPluginVersion) bool {
	switch v.GetStatus().GetPhase() {
	case pluginv1.VersionPhase_VERSION_PHASE_READY, pluginv1.VersionPhase_VERSION_PHASE_FAILED:
		return true
	}
	return false
}
