package fleet

import (
	"context"
	"encoding/json"
	"time"

	"github.com/redis/go-redis/v9"
)

func leaseKey(key string) string     { return prefix + "watch:lease:" + key }
func latestKey(key string) string    { return prefix + "watch:latest:" + key }
func watchChannel(key string) string { return prefix + "watch:" + key }

// lead takes the lease (KEYS[1]) for this replica (ARGV[1]) for ARGV[2]
// milliseconds, or renews it, with the latest state (KEYS[2]), when this
// replica holds it already; 1 when it holds it.
var lead = redis.NewScript(`
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
  return 1
end
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0`)

// resign deletes the lease (KEYS[1]) if this replica (ARGV[1]) holds it.
var resign = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0`)

// Watches relays the watches' poll loops between replicas: per watch key, the
// replica holding the key's lease polls the upstream and publishes each
// state; every replica relays what it receives to its own watchers. It
// implements service.WatchRelay; the keys it is given are already hashes of
// the credential and the version.
//
// A lease is a key set with SET NX semantics and an expiry (PX), renewed by
// its holder. When the holder dies its lease expires, and the next replica to
// ask takes it. The latest state published is kept beside the lease, for the
// replicas whose watchers join later, and expires with it.
type Watches struct {
	f *Fleet
}

// Lead takes key's lease for ttl, or renews it when this replica holds it,
// and reports whether this replica holds it. When Redis does not answer it
// reports true: each replica then polls for its own watchers.
func (w *Watches) Lead(ctx context.Context, key string, ttl time.Duration) bool {
	held := true
	w.f.do(ctx, "watch_lead", func(ctx context.Context) error {
		n, err := lead.Run(ctx, w.f.rdb, []string{leaseKey(key), latestKey(key)}, w.f.id, ttl.Milliseconds()).Int()
		held = err != nil || n == 1
		return err
	})
	return held
}

// Resign gives key's lease up if this replica holds it, so that another
// replica can take over without waiting for it to expire.
func (w *Watches) Resign(ctx context.Context, key string) {
	w.f.do(ctx, "watch_resign", func(ctx context.Context) error {
		return resign.Run(ctx, w.f.rdb, []string{leaseKey(key)}, w.f.id).Err()
	})
}

// Publish sends msg to key's subscribers on the other replicas, and keeps it
// as key's latest state for ttl (renewed with the lease).
func (w *Watches) Publish(ctx context.Context, key string, msg []byte, ttl time.Duration) {
	payload, err := json.Marshal(watchMessage{V: watchFormat, From: w.f.id, State: msg})
	if err != nil {
		return
	}
	w.f.do(ctx, "watch_publish", func(ctx context.Context) error {
		pipe := w.f.rdb.Pipeline()
		pipe.Set(ctx, latestKey(key), payload, ttl)
		pipe.Publish(ctx, watchChannel(key), payload)
		_, err := pipe.Exec(ctx)
		return err
	})
}

// Subscribe delivers what other replicas publish for key until ctx ends,
// starting with the latest state kept, when there is one, and again after
// each reconnection to Redis. It keeps only the newest message for a reader
// that has not taken the last one yet: each is a whole state.
func (w *Watches) Subscribe(ctx context.Context, key string) <-chan []byte {
	out := make(chan []byte, 1)
	h := &handler{
		deliver: func(payload string) {
			if m, ok := decodeWatch([]byte(payload)); ok && m.From != w.f.id {
				offer(out, m.State)
			}
		},
		resync: func() {
			var payload []byte
			w.f.do(ctx, "watch_latest", func(ctx context.Context) (err error) {
				payload, err = w.f.rdb.Get(ctx, latestKey(key)).Bytes()
				return err
			})
			// This replica's own latest state too: its loop may have
			// restarted since it published it.
			if m, ok := decodeWatch(payload); ok {
				offer(out, m.State)
			}
		},
	}
	cancel := w.f.subscribe(watchChannel(key), h)
	context.AfterFunc(ctx, cancel)
	return out
}

// watchFormat is the version of watchMessage this replica writes and reads;
// another version's (a replica of another release, during a rolling
// upgrade) is ignored, and its watchers poll once the lease passes.
const watchFormat = 1

// watchMessage is what a watch's channel carries, and its latest key keeps:
// a state of the watch (opaque here: package service encodes it), and the
// replica that published it, which ignores its own messages.
type watchMessage struct {
	V     int    `json:"v"`
	From  string `json:"from"`
	State []byte `json:"state"`
}

func decodeWatch(payload []byte) (watchMessage, bool) {
	var m watchMessage
	if json.Unmarshal(payload, &m) != nil || m.V != watchFormat || len(m.State) == 0 {
		return watchMessage{}, false
	}
	return m, true
}

// offer puts m in ch, replacing a message nobody has taken yet.
func offer(ch chan []byte, m []byte) {
	for {
		select {
		case ch <- m:
			return
		default:
		}
		select {
		case <-ch:
		default:
		}
	}
}
