// Package fleet keeps the state that the replicas of a fleet share, in Redis:
// the rate-limit guard's exhausted windows (Guard), the cache of upstream
// answers (Cache), and the lease and relay of the watches' poll loops
// (Watches). It knows Redis (through github.com/redis/go-redis/v9) and nothing
// of gRPC or of the upstream's HTTP: its types implement the small interfaces
// that package upstream and package service define. It only propagates: each
// piece of state has one local store, kept by its owner (the client's cache
// and guard windows, the service's poll loops), and the fleet carries what
// one replica's store learns to the others'. What it writes to Redis is a
// small versioned struct, so that replicas of two releases ignore what they
// cannot read.
//
// Every Redis operation is bounded by a short timeout (WithTimeout). When
// Redis is slow or down, each operation falls back to the replica's local
// state: callers never see an error caused by Redis, the fleet runs
// "degraded" (Degraded, the plugin_facade_fleet_degraded gauge), and the
// replicas share again once Redis answers.
package fleet

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// DefaultTimeout bounds each Redis operation without WithTimeout.
const DefaultTimeout = 50 * time.Millisecond

// prefix starts every key and channel the fleet uses, so that a Redis shared
// with other applications keeps ours apart (a database of its own, the /db of
// the URL, keeps them apart better).
const prefix = "plugin-facade:"

// checkEvery is how often the fleet pings Redis, to notice that it is down
// while idle, and that it is back while degraded.
const checkEvery = 500 * time.Millisecond

// Option configures a Fleet. Options apply to a private configuration, from
// which Open builds the fleet once every option has applied, filling in the
// defaults of what no option set and refusing what is invalid.
type Option func(*config)

// config is what the options set.
type config struct {
	timeout    time.Duration
	log        *slog.Logger
	registerer prometheus.Registerer
	tls        *tls.Config
}

// WithTimeout bounds each Redis operation; past it the operation falls back
// to local state. Default DefaultTimeout.
func WithTimeout(d time.Duration) Option { return func(c *config) { c.timeout = d } }

// WithLogger sets where the transitions between shared and degraded are
// logged, never with a password. Default: discard.
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.log = l } }

// WithRegisterer registers the fleet's metrics with r. Default: none.
func WithRegisterer(r prometheus.Registerer) Option { return func(c *config) { c.registerer = r } }

// WithTLS replaces the TLS configuration a rediss:// URL implies (to trust a
// private CA, say); the URL's host stays the server name unless cfg sets
// one. It has no effect on a redis:// URL.
func WithTLS(cfg *tls.Config) Option { return func(c *config) { c.tls = cfg } }

func newConfig(opts []Option) (config, error) {
	var c config
	for _, opt := range opts {
		opt(&c)
	}
	if c.timeout < 0 {
		return c, fmt.Errorf("the Redis timeout (%v) must be positive", c.timeout)
	}
	c.timeout = cmp.Or(c.timeout, DefaultTimeout)
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

// Fleet is one replica's connection to the fleet's shared state. Create it
// with Open; it is safe for concurrent use.
type Fleet struct {
	rdb      *redis.Client
	timeout  time.Duration
	log      *slog.Logger
	id       string // this replica, to tell its own messages apart
	password string // to scrub from the errors it logs
	shown    string // the URL without its password, for logs

	degraded atomic.Bool
	metrics  metrics

	ps   *redis.PubSub
	mu   sync.Mutex
	subs map[string]map[*handler]struct{} // channel → its handlers on this replica

	watches *Watches

	stop chan struct{}
	done sync.WaitGroup
}

// handler is one local receiver of a channel's messages: deliver gets each
// message (it must not block), resync is called each time the channel is
// (re)subscribed, after a reconnection as at first.
type handler struct {
	deliver func(payload string)
	resync  func()
}

// Open parses a redis:// or rediss:// URL (redis.ParseURL: user and password,
// host and port, /db) and connects to it. Only an invalid URL is an error:
// an unreachable Redis is not, the fleet starts degraded and shares once
// Redis answers. Errors never show the URL's password.
func Open(rawURL string, opts ...Option) (*Fleet, error) {
	opt, shown, password, err := parseURL(rawURL)
	if err != nil {
		return nil, err
	}
	o, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	// A Redis that does not answer within the timeout is as good as down:
	// no retries, no long dials, no waiting for a connection of the pool.
	opt.DialTimeout = max(o.timeout, 250*time.Millisecond) // a TLS handshake takes a few round trips
	opt.DialerRetries = 1
	opt.ReadTimeout, opt.WriteTimeout, opt.PoolTimeout = o.timeout, o.timeout, o.timeout
	opt.ContextTimeoutEnabled = true
	opt.MaxRetries = -1
	opt.MinIdleConns = 2
	opt.ClientName = "plugin-facade"
	opt.DisableIdentity = true
	opt.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	if opt.TLSConfig != nil && o.tls != nil {
		cfg := o.tls.Clone()
		if cfg.ServerName == "" {
			cfg.ServerName = opt.TLSConfig.ServerName
		}
		opt.TLSConfig = cfg
	}

	f := &Fleet{
		rdb:      redis.NewClient(opt),
		timeout:  o.timeout,
		log:      o.log,
		id:       newID(),
		password: password,
		shown:    shown,
		subs:     make(map[string]map[*handler]struct{}),
		stop:     make(chan struct{}),
	}
	f.metrics = newMetrics(o.registerer)
	f.ps = f.rdb.Subscribe(context.Background())
	f.watches = &Watches{f: f}

	// Whether Redis answers now decides how the fleet starts; the first
	// answer is worth a few timeouts, the process is starting anyway.
	ctx, cancel := context.WithTimeout(context.Background(), max(4*o.timeout, time.Second))
	err = f.rdb.Ping(ctx).Err()
	cancel()
	f.setDegraded(err)

	f.done.Add(2)
	go f.check()
	go f.receive()
	return f, nil
}

// Redacted is a Redis URL as logs may show it: without its password ("" for
// "", "invalid" for what is not a URL).
func Redacted(rawURL string) string {
	if rawURL == "" {
		return ""
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return "invalid"
	}
	return u.Redacted()
}

// parseURL parses a Redis URL with redis.ParseURL, and returns it as logs
// may show it (without its password), and its password.
func parseURL(rawURL string) (opt *redis.Options, shown, password string, err error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, "", "", errors.New("not a valid URL") // url.Error repeats the input, password included
	}
	shown = Redacted(rawURL)
	password, _ = u.User.Password()
	if u.Scheme != "redis" && u.Scheme != "rediss" {
		return nil, "", "", fmt.Errorf("%q: the scheme must be redis or rediss (TLS)", shown)
	}
	opt, err = redis.ParseURL(rawURL)
	if err != nil {
		return nil, "", "", fmt.Errorf("%q: %s", shown, scrub(err.Error(), password, rawURL, shown))
	}
	return opt, shown, password, nil
}

// Close stops the fleet's goroutines and closes its connections. The
// watches' leases it held expire on their own (see Watches.Resign).
func (f *Fleet) Close() error {
	close(f.stop)
	err := errors.Join(f.ps.Close(), f.rdb.Close())
	f.done.Wait()
	return err
}

// Watches is the fleet's relay of watch poll loops.
func (f *Fleet) Watches() *Watches { return f.watches }

// Degraded reports whether Redis is unreachable, so that each replica runs
// on its local state alone.
func (f *Fleet) Degraded() bool { return f.degraded.Load() }

// Status says in a word how the fleet's state is kept, for the readiness
// probe: "shared" through Redis, or "degraded" (local state only).
func (f *Fleet) Status() string {
	if f.Degraded() {
		return "degraded"
	}
	return "shared"
}

// do runs one Redis operation within the timeout, and reports whether it
// succeeded (redis.Nil, a missing key, is a success). While the fleet is
// degraded it does not try: the checker finds out when Redis is back, and
// callers meanwhile lose no time to a Redis that does not answer.
func (f *Fleet) do(ctx context.Context, op string, fn func(ctx context.Context) error) bool {
	select {
	case <-f.stop:
		return false // closed: what is left (a watch resigning at shutdown) uses local state
	default:
	}
	if f.degraded.Load() {
		f.metrics.skipped.WithLabelValues(op).Inc()
		return false
	}
	rctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	err := fn(rctx)
	if err == nil || errors.Is(err, redis.Nil) {
		return true
	}
	if ctx.Err() != nil {
		return false // the caller left: not Redis's fault
	}
	f.metrics.errors.WithLabelValues(op).Inc()
	f.setDegraded(err)
	return false
}

// check pings Redis every checkEvery, so that the fleet notices it is down
// while nothing else asks, and back while degraded.
func (f *Fleet) check() {
	defer f.done.Done()
	t := time.NewTicker(checkEvery)
	defer t.Stop()
	for {
		select {
		case <-f.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), f.timeout)
		err := f.rdb.Ping(ctx).Err()
		cancel()
		if err != nil {
			f.metrics.errors.WithLabelValues("ping").Inc()
		}
		f.setDegraded(err)
	}
}

// setDegraded records whether Redis answered, logging each change.
func (f *Fleet) setDegraded(err error) {
	was := f.degraded.Swap(err != nil)
	if err != nil {
		f.metrics.degraded.Set(1)
		if !was {
			f.log.Warn("redis unreachable: each replica runs on its local state until it answers",
				"redis", f.shown, "error", f.scrub(err))
		}
		return
	}
	f.metrics.degraded.Set(0)
	if was {
		f.log.Info("redis reachable: the fleet shares its state", "redis", f.shown)
	}
}

// subscribe adds h to the handlers of channel, subscribing this replica to
// it when h is the first. The returned function removes h.
func (f *Fleet) subscribe(channel string, h *handler) (cancel func()) {
	f.mu.Lock()
	hs := f.subs[channel]
	first := hs == nil
	if first {
		hs = make(map[*handler]struct{})
		f.subs[channel] = hs
	}
	hs[h] = struct{}{}
	f.mu.Unlock()
	if first {
		// Even when this fails the channel stays in the subscription's
		// set, and go-redis subscribes to it again on reconnecting.
		f.psDo("subscribe", func(ctx context.Context) error { return f.ps.Subscribe(ctx, channel) })
	} else if h.resync != nil {
		go h.resync()
	}
	return func() {
		f.mu.Lock()
		delete(hs, h)
		last := len(hs) == 0 && f.subs[channel] != nil
		if last {
			delete(f.subs, channel)
		}
		f.mu.Unlock()
		if last {
			f.psDo("unsubscribe", func(ctx context.Context) error { return f.ps.Unsubscribe(ctx, channel) })
		}
	}
}

// psDo runs a (un)subscription within the timeout. Its failure does not
// degrade the fleet: the checker decides that.
func (f *Fleet) psDo(op string, fn func(ctx context.Context) error) {
	ctx, cancel := context.WithTimeout(context.Background(), f.timeout)
	defer cancel()
	if err := fn(ctx); err != nil {
		f.metrics.errors.WithLabelValues(op).Inc()
	}
}

// receive hands each message of the subscribed channels to their handlers,
// and tells them when a channel is subscribed again after a reconnection,
// when they may have missed messages.
func (f *Fleet) receive() {
	defer f.done.Done()
	ch := f.ps.ChannelWithSubscriptions(
		redis.WithChannelSize(1024),
		redis.WithChannelHealthCheckInterval(time.Second),
		redis.WithChannelPingTimeout(f.timeout),
		redis.WithChannelReconnectTimeout(max(f.timeout, 250*time.Millisecond)),
		redis.WithChannelSendTimeout(time.Second),
	)
	for m := range ch {
		switch m := m.(type) {
		case *redis.Message:
			for _, h := range f.handlers(m.Channel) {
				h.deliver(m.Payload)
			}
		case *redis.Subscription:
			if m.Kind != "subscribe" {
				continue
			}
			for _, h := range f.handlers(m.Channel) {
				if h.resync != nil {
					go h.resync()
				}
			}
		}
	}
}

func (f *Fleet) handlers(channel string) []*handler {
	f.mu.Lock()
	defer f.mu.Unlock()
	hs := make([]*handler, 0, len(f.subs[channel]))
	for h := range f.subs[channel] {
		hs = append(hs, h)
	}
	return hs
}

// scrub removes the password from what Redis or the client said.
func (f *Fleet) scrub(err error) string {
	return scrub(err.Error(), f.password, "", "")
}

func scrub(s, password, rawURL, shown string) string {
	if rawURL != "" {
		s = strings.ReplaceAll(s, rawURL, shown)
	}
	if password != "" {
		s = strings.ReplaceAll(s, password, "xxxxx")
	}
	return s
}

// newID names this replica in the messages it publishes and the leases it
// holds.
func newID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}

// metrics are the fleet's Prometheus metrics.
type metrics struct {
	degraded prometheus.Gauge
	errors   *prometheus.CounterVec
	skipped  *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) metrics {
	m := metrics{
		degraded: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "plugin_facade_fleet_degraded",
			Help: "1 while Redis is unreachable and this replica runs on its local state alone (no shared rate-limit guard, cache or watch polling), else 0.",
		}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "plugin_facade_fleet_redis_errors_total",
			Help: "Redis operations that failed or timed out, by operation; each fell back to local state.",
		}, []string{"op"}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "plugin_facade_fleet_redis_skipped_total",
			Help: "Redis operations not tried because the fleet was degraded, by operation; each used local state.",
		}, []string{"op"}),
	}
	if reg != nil {
		reg.MustRegister(m.degraded, m.errors, m.skipped)
	}
	return m
}
