package service

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	pluginv1 "github.com/acme/plugin-facade/gen/go/confluent/plugin/v1"
	"github.com/acme/plugin-facade/internal/failure"
	"github.com/acme/plugin-facade/internal/upstream"
)

// WatchRelay shares WatchPluginVersion's poll loops between the replicas of a
// fleet, so that a version watched on several replicas is polled by one: the
// replica that holds a watch key's lease polls and publishes each state; the
// others relay what it publishes to their own watchers, and one of them takes
// the lease over when its holder leaves or dies. Keys are hashes of the
// credential and the version, never either in clear.
//
// Implementations must be safe for concurrent use and never fail: when their
// backing store is unavailable, Lead answers true, so that each replica polls
// for its own watchers.
type WatchRelay interface {
	// Lead takes key's lease for ttl, or renews it when this replica holds it
	// already, and reports whether this replica holds it.
	Lead(ctx context.Context, key string, ttl time.Duration) bool
	// Resign gives key's lease up if this replica holds it.
	Resign(ctx context.Context, key string)
	// Publish sends msg to key's subscribers on the other replicas and keeps
	// it as key's latest state, for ttl and while the lease is renewed.
	Publish(ctx context.Context, key string, msg []byte, ttl time.Duration)
	// Subscribe delivers the messages other replicas publish for key until
	// ctx ends, starting with the latest state kept, if any. A reader that
	// falls behind gets the newest message rather than a backlog.
	Subscribe(ctx context.Context, key string) <-chan []byte
}

// WithWatchRelay shares the watches' poll loops with the other replicas of a
// fleet through r. Without it each replica polls for its own watchers.
func WithWatchRelay(r WatchRelay) Option {
	return func(c *config) { c.relay = r }
}

// leadership decides which replica polls a watched version. Without a relay
// this one always does. With one, the replica that holds the version's lease
// polls and publishes what it tells its watchers; the others tell theirs
// what it publishes, and ask for the lease every renewEvery, so that one of
// them polls on at once (without a duplicate: every replica remembers the
// last version its watchers got) when the holder leaves, and within two poll
// intervals when it dies.
type leadership struct {
	relay   WatchRelay // nil: this replica alone
	key     string
	leading bool
	relayed <-chan []byte // what the others publish; nil without a relay
}

// lead starts the leadership of k's loop, subscribing to what the other
// replicas publish until ctx ends.
func (s *Service) lead(ctx context.Context, k watchKey) *leadership {
	l := &leadership{relay: s.relay, key: hex.EncodeToString(k[:]), leading: s.relay == nil}
	if l.relay != nil {
		l.relayed = l.relay.Subscribe(ctx, l.key)
	}
	return l
}

// renew takes or renews the lease, and reports whether this replica has just
// taken over from another.
func (l *leadership) renew(ctx context.Context, base time.Duration) (tookOver bool) {
	if l.relay == nil {
		return false
	}
	lead := l.relay.Lead(ctx, l.key, leaseTTL(base))
	tookOver = lead && !l.leading
	l.leading = lead
	return tookOver
}

// publish gives the other replicas' watchers what this one's were told.
func (l *leadership) publish(ctx context.Context, ev *watchEvent, base time.Duration) {
	if l.relay == nil {
		return
	}
	if msg, err := encodeRelayed(ev); err == nil {
		l.relay.Publish(ctx, l.key, msg, leaseTTL(base))
	}
}

// sleep is how long the loop waits before it looks again: until the next
// poll is due, and no longer than the lease's renewal with a relay.
func (l *leadership) sleep(due time.Time, base time.Duration) time.Duration {
	switch {
	case l.relay == nil:
		return time.Until(due)
	case l.leading:
		return min(time.Until(due), renewEvery(base))
	default:
		return renewEvery(base)
	}
}

// resign gives the lease up, for another replica to take over at once.
func (l *leadership) resign(ctx context.Context) {
	if l.relay != nil {
		l.relay.Resign(ctx, l.key)
	}
}

// leaseTTL is how long a watch's lease outlives its holder's last renewal,
// and renewEvery how often the holder renews it and the others ask for it:
// the lease of a replica that died passes on within two poll intervals.
func leaseTTL(base time.Duration) time.Duration   { return base * 3 / 2 }
func renewEvery(base time.Duration) time.Duration { return base / 2 }

// relayFormat is the version of relayed that this replica writes and reads.
// A message of another version (from a replica of another release, during a
// rolling upgrade) is ignored: this replica's watchers then wait for the lease
// and poll themselves.
const relayFormat = 1

// relayed is a watch event as replicas tell each other: the version, or the
// failure that ends the watch as its google.rpc.Status (which carries all a
// failure renders from, the upstream's answer too: see package failure), and
// what the upstream's answer said, for the response metadata.
type relayed struct {
	Format     int           `json:"format"`
	Version    []byte        `json:"version,omitempty"` // a CustomConnectPluginVersion, binary proto
	Raw        []byte        `json:"raw,omitempty"`     // the version's JSON, as the upstream sent it to the polling replica
	Status     []byte        `json:"status,omitempty"`  // a google.rpc.Status, binary proto
	Final      bool          `json:"final,omitempty"`
	HTTPStatus int           `json:"http_status,omitempty"`
	RequestID  string        `json:"request_id,omitempty"`
	RateLimit  [3]int64      `json:"rate_limit"` // limit, remaining, reset (ns); -1 when absent
	RetryAfter time.Duration `json:"retry_after,omitempty"`
}

// encodeRelayed serializes ev for the other replicas.
func encodeRelayed(ev *watchEvent) ([]byte, error) {
	rl := ev.meta.RateLimit
	r := relayed{
		Format:     relayFormat,
		Final:      ev.final,
		HTTPStatus: ev.meta.StatusCode,
		RequestID:  ev.meta.RequestID,
		RateLimit:  [3]int64{int64(rl.Limit), int64(rl.Remaining), int64(rl.Reset)},
		RetryAfter: ev.meta.RetryAfter,
	}
	var err error
	if ev.err != nil {
		r.Status, err = proto.Marshal(status.Convert(ev.err).Proto())
	} else {
		r.Version, err = proto.Marshal(ev.version)
		r.Raw = ev.raw
	}
	if err != nil {
		return nil, err
	}
	return json.Marshal(r)
}

// decodeRelayed reads what another replica published. Its polls are this
// replica's own: a relayed state cost it no upstream request.
func decodeRelayed(msg []byte, polls int) (*watchEvent, error) {
	var r relayed
	if err := json.Unmarshal(msg, &r); err != nil {
		return nil, err
	}
	if r.Format != relayFormat {
		return nil, fmt.Errorf("a relayed watch state of format %d, not %d", r.Format, relayFormat)
	}
	ev := &watchEvent{
		final: r.Final,
		polls: polls,
		meta: upstream.Meta{
			StatusCode: r.HTTPStatus,
			RequestID:  r.RequestID,
			RateLimit:  upstream.RateLimit{Limit: int(r.RateLimit[0]), Remaining: int(r.RateLimit[1]), Reset: time.Duration(r.RateLimit[2])},
			RetryAfter: r.RetryAfter,
		},
	}
	if r.Status != nil {
		st := &spb.Status{}
		if err := proto.Unmarshal(r.Status, st); err != nil {
			return nil, err
		}
		if st.GetCode() == 0 {
			return nil, errors.New("a relayed failure with status OK")
		}
		ev.err, ev.final = failure.FromStatus(status.FromProto(st)), true
		return ev, nil
	}
	ev.version, ev.raw = &pluginv1.CustomConnectPluginVersion{}, r.Raw
	if err := proto.Unmarshal(r.Version, ev.version); err != nil {
		return nil, err
	}
	return ev, nil
}
