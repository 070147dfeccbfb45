package fleet

import (
	"context"
	"encoding/json"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/acme/plugin-facade/internal/upstream"
)

// maxReload bounds how many windows a replica reads from Redis when it
// subscribes; the local store bounds how many it keeps.
const maxReload = 10000

// guardChannel carries the windows replicas learn, to every replica.
const guardChannel = prefix + "guard"

// guardKey holds a credential's exhausted window (its limit) until the window
// resets, for replicas that start or reconnect while it lasts.
func guardKey(cred string) string { return prefix + "guard:" + cred }

// Guard is the fleet's rate-limit guard: it remembers, per credential id (a
// hash of the credential, never the credential), until when the upstream
// said that the credential's window is exhausted. It implements
// upstream.GuardStore.
//
// It answers from a local store, never waiting for Redis: the guard is asked
// before every upstream request. What one replica learns goes to the others
// through a queue written in the background: a key that expires when the
// window resets, for replicas that start later, and a message on guardChannel
// that each replica applies to its local store as it arrives (within a round
// trip to Redis). A replica that (re)subscribes, at start and after a
// reconnection to Redis, reloads the keys.
type Guard struct {
	f      *Fleet
	local  upstream.GuardStore
	writes chan guardWrite
}

// guardWrite is a window to share (clear false) or to forget (clear true).
type guardWrite struct {
	cred  string
	until time.Time
	limit int
	clear bool
}

// Guard returns the fleet's rate-limit guard, keeping its local copy in
// local (upstream.NewMemoryGuardStore, the client's own in-process store):
// the fleet only propagates what local learns. Call it once.
func (f *Fleet) Guard(local upstream.GuardStore) *Guard {
	g := &Guard{f: f, local: local, writes: make(chan guardWrite, 256)}
	f.done.Add(1)
	go g.write()
	f.subscribe(guardChannel, &handler{deliver: g.receive, resync: g.reload})
	return g
}

// Exhausted returns until when cred's window is exhausted and its limit (-1
// when unknown); ok is false when it is not known to be exhausted.
func (g *Guard) Exhausted(ctx context.Context, cred string) (until time.Time, limit int, ok bool) {
	return g.local.Exhausted(ctx, cred)
}

// SetExhausted records that cred's window is exhausted until until, here at
// once and on the other replicas shortly.
func (g *Guard) SetExhausted(ctx context.Context, cred string, until time.Time, limit int) {
	if !time.Now().Before(until) {
		return
	}
	g.local.SetExhausted(ctx, cred, until, limit)
	g.queue(guardWrite{cred: cred, until: until, limit: limit})
}

// ClearExhausted forgets cred's window, here and on the other replicas: the
// upstream said requests remain. When this replica knows of no window (the
// usual case: most answers say how many requests remain), it costs a lookup
// in the local store.
func (g *Guard) ClearExhausted(ctx context.Context, cred string) {
	if _, _, ok := g.local.Exhausted(ctx, cred); ok {
		g.local.ClearExhausted(ctx, cred)
		g.queue(guardWrite{cred: cred, clear: true})
	}
}

// queue hands w to the writer. When the queue is full (Redis is slower than
// the windows come), w is not shared: the others learn it from the upstream.
func (g *Guard) queue(w guardWrite) {
	select {
	case g.writes <- w:
	default:
		g.f.metrics.skipped.WithLabelValues("guard_write").Inc()
	}
}

// write shares the queued windows, a batch in one round trip.
func (g *Guard) write() {
	defer g.f.done.Done()
	batch := make([]guardWrite, 0, 64)
	for {
		select {
		case <-g.f.stop:
			return
		case w := <-g.writes:
			batch = append(batch[:0], w)
		}
	drain:
		for len(batch) < cap(batch) {
			select {
			case w := <-g.writes:
				batch = append(batch, w)
			default:
				break drain
			}
		}
		g.share(batch)
	}
}

// share writes a batch of windows in one round trip: each a key, for the
// replicas that start later, and a message, for those running.
func (g *Guard) share(batch []guardWrite) {
	g.f.do(context.Background(), "guard_write", func(ctx context.Context) error {
		pipe := g.f.rdb.Pipeline()
		for _, w := range batch {
			m := guardMessage{V: guardFormat, From: g.f.id, Cred: w.cred, Clear: w.clear}
			if w.clear {
				pipe.Del(ctx, guardKey(w.cred))
			} else {
				// The time left rather than the instant, so that replicas
				// whose clocks disagree still agree on the window.
				left := time.Until(w.until).Round(time.Millisecond)
				if left <= 0 {
					continue
				}
				m.LeftMS, m.Limit = left.Milliseconds(), w.limit
				pipe.Set(ctx, guardKey(w.cred), encodeGuard(guardWindow{V: guardFormat, Limit: w.limit}), left)
			}
			pipe.Publish(ctx, guardChannel, encodeGuard(m))
		}
		_, err := pipe.Exec(ctx)
		return err
	})
}

// guardFormat is the version of the guard's messages and keys this replica
// writes and reads; another version's (a replica of another release, during
// a rolling upgrade) is ignored: that replica's windows are then learnt from
// the upstream.
const guardFormat = 1

// guardMessage is what guardChannel carries: a window a replica learnt (the
// time it has left, and its limit), or that it forgot (Clear).
type guardMessage struct {
	V      int    `json:"v"`
	From   string `json:"from"` // the replica, which ignores its own messages
	Cred   string `json:"cred"` // a credential id, never a credential
	Clear  bool   `json:"clear,omitempty"`
	LeftMS int64  `json:"left_ms,omitempty"`
	Limit  int    `json:"limit,omitempty"`
}

// guardWindow is the value of a guard key, which expires with the window.
type guardWindow struct {
	V     int `json:"v"`
	Limit int `json:"limit"`
}

func encodeGuard(v any) string {
	b, _ := json.Marshal(v) // small structs of plain fields: never fails
	return string(b)
}

// receive applies a window another replica shared.
func (g *Guard) receive(payload string) {
	var m guardMessage
	if json.Unmarshal([]byte(payload), &m) != nil || m.V != guardFormat || m.From == g.f.id || m.Cred == "" {
		return
	}
	ctx := context.Background()
	switch {
	case m.Clear:
		g.local.ClearExhausted(ctx, m.Cred)
	case m.LeftMS > 0:
		g.local.SetExhausted(ctx, m.Cred, time.Now().Add(time.Duration(m.LeftMS)*time.Millisecond), m.Limit)
	}
}

// reload reads the windows that are exhausted now from their keys: when this
// replica subscribes, at start and after a reconnection, it may have missed
// their messages.
func (g *Guard) reload() {
	var cursor uint64
	for loaded := 0; loaded < maxReload; {
		var keys []string
		if !g.f.do(context.Background(), "guard_reload", func(ctx context.Context) (err error) {
			keys, cursor, err = g.f.rdb.Scan(ctx, cursor, guardKey("*"), 500).Result()
			return err
		}) {
			return
		}
		if len(keys) > 0 {
			g.load(keys)
			loaded += len(keys)
		}
		if cursor == 0 {
			return
		}
	}
}

// load reads the windows of keys (their limit and time left) into the local
// copy.
func (g *Guard) load(keys []string) {
	type got struct {
		cred  string
		left  time.Duration
		limit int
	}
	var windows []got
	g.f.do(context.Background(), "guard_reload", func(ctx context.Context) error {
		pipe := g.f.rdb.Pipeline()
		ttls := make([]*redis.DurationCmd, len(keys))
		limits := make([]*redis.StringCmd, len(keys))
		for i, k := range keys {
			ttls[i], limits[i] = pipe.PTTL(ctx, k), pipe.Get(ctx, k)
		}
		// A key that expired since the scan answers redis.Nil, which do
		// takes for a success.
		_, err := pipe.Exec(ctx)
		for i, k := range keys {
			left, err1 := ttls[i].Result()
			b, err2 := limits[i].Bytes()
			var w guardWindow
			if err1 == nil && err2 == nil && left > 0 && json.Unmarshal(b, &w) == nil && w.V == guardFormat {
				windows = append(windows, got{strings.TrimPrefix(k, guardKey("")), left, w.Limit})
			}
		}
		return err
	})
	now := time.Now()
	for _, w := range windows {
		g.local.SetExhausted(context.Background(), w.cred, now.Add(w.left), w.limit)
	}
}
