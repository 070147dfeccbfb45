package fleet

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	promtestutil "github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/acme/plugin-facade/internal/fleet/fleettest"
	"github.com/acme/plugin-facade/internal/testutil"
	"github.com/acme/plugin-facade/internal/upstream"
	"github.com/acme/plugin-facade/internal/upstream/upstreamtest"
)

// testTimeout bounds Redis operations in tests: generous, so that a loaded
// machine running the tests under -race does not degrade the fleet.
const testTimeout = time.Second

func open(t *testing.T, url string, opts ...Option) *Fleet {
	t.Helper()
	f, err := Open(url, append([]Option{WithTimeout(testTimeout)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Close() })
	return f
}

// direct is a plain client of r, to look at what the fleet wrote.
func direct(t *testing.T, r *fleettest.Redis) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: r.Addr()})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// guard opens a fleet on url and returns its guard, with the client's own
// in-process store as its local copy.
func guard(t *testing.T, url string) *Guard {
	return open(t, url).Guard(upstream.NewMemoryGuardStore())
}

func TestGuardSharesWindows(t *testing.T) {
	r := fleettest.Start(t)
	a, b := guard(t, r.URL()), guard(t, r.URL())
	ctx := context.Background()
	const cred = "3f2a" // a credential id, as the client makes them

	if _, _, ok := b.Exhausted(ctx, cred); ok {
		t.Fatal("exhausted before anyone said so")
	}
	until := time.Now().Add(3 * time.Second)
	a.SetExhausted(ctx, cred, until, 1000)
	if _, _, ok := a.Exhausted(ctx, cred); !ok {
		t.Fatal("the replica that learned the window does not know it at once")
	}
	testutil.Eventually(t, time.Second, "the other replica learns the window", func() bool {
		_, _, ok := b.Exhausted(ctx, cred)
		return ok
	})
	got, limit, _ := b.Exhausted(ctx, cred)
	if d := got.Sub(until).Abs(); d > 100*time.Millisecond || limit != 1000 {
		t.Errorf("the other replica has the window until %v (off by %v), limit %d; want %v, 1000", got, d, limit, until)
	}

	// A replica that starts later reads the windows that still run.
	c := guard(t, r.URL())
	testutil.Eventually(t, time.Second, "a replica started later loads the window", func() bool {
		_, _, ok := c.Exhausted(ctx, cred)
		return ok
	})

	// The key expires with the window, and names the credential id only.
	ttl, err := direct(t, r).PTTL(ctx, "plugin-facade:guard:"+cred).Result()
	if err != nil || ttl <= 0 || ttl > 3*time.Second {
		t.Errorf("PTTL of the window's key = %v, %v; want within (0, 3s]", ttl, err)
	}

	// The upstream says requests remain: every replica forgets the window.
	b.ClearExhausted(ctx, cred)
	testutil.Eventually(t, time.Second, "the others forget a cleared window", func() bool {
		_, _, okA := a.Exhausted(ctx, cred)
		_, _, okC := c.Exhausted(ctx, cred)
		return !okA && !okC
	})
	if n, _ := direct(t, r).Exists(ctx, "plugin-facade:guard:"+cred).Result(); n != 0 {
		t.Error("the cleared window's key is still in Redis")
	}
}

func TestGuardWindowEnds(t *testing.T) {
	r := fleettest.Start(t)
	a, b := guard(t, r.URL()), guard(t, r.URL())
	ctx := context.Background()
	a.SetExhausted(ctx, "c1", time.Now().Add(300*time.Millisecond), 10)
	testutil.Eventually(t, time.Second, "the other replica learns the window", func() bool {
		_, _, ok := b.Exhausted(ctx, "c1")
		return ok
	})
	testutil.Eventually(t, 2*time.Second, "the window ends on both replicas and in Redis", func() bool {
		_, _, okA := a.Exhausted(ctx, "c1")
		_, _, okB := b.Exhausted(ctx, "c1")
		n, _ := direct(t, r).Exists(ctx, "plugin-facade:guard:c1").Result()
		return !okA && !okB && n == 0
	})
	// A window already over is not shared.
	a.SetExhausted(ctx, "c2", time.Now().Add(-time.Second), 10)
	if _, _, ok := a.Exhausted(ctx, "c2"); ok {
		t.Error("a window that ended is exhausted")
	}
}

func TestCacheShared(t *testing.T) {
	r := fleettest.Start(t)
	a, b := open(t, r.URL()).Cache(), open(t, r.URL()).Cache()
	ctx := context.Background()

	if _, _, ok := b.Get(ctx, "k1"); ok {
		t.Fatal("a hit in an empty cache")
	}
	a.Set(ctx, "k1", []byte("answer"), 400*time.Millisecond)
	v, left, ok := b.Get(ctx, "k1")
	if !ok || string(v) != "answer" || left <= 0 || left > 400*time.Millisecond {
		t.Fatalf("the other replica gets %q, %v, %v; want the answer with at most 400ms left", v, left, ok)
	}
	if _, _, ok := b.Get(ctx, "k2"); ok {
		t.Error("a hit for another key (another credential or request)")
	}
	testutil.Eventually(t, 2*time.Second, "the entry expires", func() bool {
		_, _, ok := b.Get(ctx, "k1")
		n, _ := direct(t, r).Exists(ctx, "plugin-facade:cache:k1").Result()
		return !ok && n == 0
	})

	// An answer too large to share stays with the replica that fetched it
	// (in its client's own copy).
	big := bytes.Repeat([]byte("x"), MaxSharedValueBytes+1)
	a.Set(ctx, "big", big, time.Minute)
	if _, _, ok := b.Get(ctx, "big"); ok {
		t.Error("an answer over MaxSharedValueBytes was shared")
	}
}

func TestCacheClaim(t *testing.T) {
	r := fleettest.Start(t)
	a, b := open(t, r.URL()).Cache(), open(t, r.URL()).Cache()
	ctx := context.Background()
	if !a.Claim(ctx, "k", 300*time.Millisecond) {
		t.Fatal("the first claim is refused")
	}
	if b.Claim(ctx, "k", 300*time.Millisecond) || a.Claim(ctx, "k", 300*time.Millisecond) {
		t.Fatal("a second claim is granted while the first holds")
	}
	if !b.Claim(ctx, "other", 300*time.Millisecond) {
		t.Error("a claim of another key is refused")
	}
	testutil.Eventually(t, 2*time.Second, "the claim expires", func() bool { return b.Claim(ctx, "k", time.Minute) })

	// Filling the entry releases the claim: once the entry expires, the next
	// miss claims at once rather than waiting for the claim's ttl.
	if !a.Claim(ctx, "filled", time.Minute) {
		t.Fatal("the first claim is refused")
	}
	a.Set(ctx, "filled", []byte("v"), 200*time.Millisecond)
	// A caller who missed the entry just before it was filled is told to
	// wait for it, not to fill it again.
	if b.Claim(ctx, "filled", time.Minute) {
		t.Error("a claim is granted while the entry is there")
	}
	// Awaited through Claim itself: a Get that times out on a busy machine
	// reads as a miss while the entry is still there. Granted within 2s, the
	// claim did not wait for the first claim's minute.
	testutil.Eventually(t, 2*time.Second, "a claim once the filled entry expired", func() bool {
		return b.Claim(ctx, "filled", time.Minute)
	})

	// A claimant whose call failed releases its claim: the next caller
	// claims at once. Only the holder's release counts.
	if !a.Claim(ctx, "failed", time.Minute) {
		t.Fatal("the first claim is refused")
	}
	b.Release(ctx, "failed")
	if b.Claim(ctx, "failed", time.Minute) {
		t.Error("another replica's release freed a claim it did not hold")
	}
	a.Release(ctx, "failed")
	if !b.Claim(ctx, "failed", time.Minute) {
		t.Error("a released claim still holds")
	}
}

func TestWatchLease(t *testing.T) {
	r := fleettest.Start(t)
	a, b := open(t, r.URL()).Watches(), open(t, r.URL()).Watches()
	ctx := context.Background()
	if !a.Lead(ctx, "w", 300*time.Millisecond) {
		t.Fatal("the first replica does not get a free lease")
	}
	if b.Lead(ctx, "w", 300*time.Millisecond) {
		t.Fatal("two replicas hold one lease")
	}
	// Renewed by its holder, the lease outlives its ttl.
	for range 4 {
		time.Sleep(100 * time.Millisecond)
		if !a.Lead(ctx, "w", 300*time.Millisecond) {
			t.Fatal("the holder lost the lease while renewing it")
		}
		if b.Lead(ctx, "w", 300*time.Millisecond) {
			t.Fatal("another replica took a renewed lease")
		}
	}
	// Given up, it goes to the next at once.
	b.Resign(ctx, "w") // not its lease: no effect
	if b.Lead(ctx, "w", 300*time.Millisecond) {
		t.Fatal("a replica resigned a lease it did not hold")
	}
	a.Resign(ctx, "w")
	if !b.Lead(ctx, "w", 300*time.Millisecond) {
		t.Fatal("a resigned lease is not free")
	}
	// Not renewed (its holder died), it expires.
	testutil.Eventually(t, 2*time.Second, "the lease of a dead holder expires", func() bool {
		return a.Lead(ctx, "w", time.Minute)
	})
}

func TestWatchRelay(t *testing.T) {
	r := fleettest.Start(t)
	a, b := open(t, r.URL()).Watches(), open(t, r.URL()).Watches()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	fromA := a.Subscribe(ctx, "w")
	fromB := b.Subscribe(ctx, "w")
	testutil.Eventually(t, 2*time.Second, "both replicas are subscribed", func() bool {
		n, _ := direct(t, r).PubSubNumSub(ctx, watchChannel("w")).Result()
		return n[watchChannel("w")] == 2
	})
	a.Publish(ctx, "w", []byte("PROCESSING"), time.Minute)
	if got := receive(t, fromB); got != "PROCESSING" {
		t.Fatalf("the other replica got %q", got)
	}
	select {
	case m := <-fromA:
		t.Fatalf("the publisher got its own message back: %q", m)
	case <-time.After(100 * time.Millisecond):
	}
	// A replica whose watchers join later gets the latest state at once.
	c := open(t, r.URL()).Watches()
	if got := receive(t, c.Subscribe(ctx, "w")); got != "PROCESSING" {
		t.Fatalf("a later subscriber got %q first; want the latest state", got)
	}
	// A slow reader gets the newest message, not a backlog.
	a.Publish(ctx, "w", []byte("one"), time.Minute)
	a.Publish(ctx, "w", []byte("READY"), time.Minute)
	time.Sleep(200 * time.Millisecond)
	if got := receive(t, fromB); got != "READY" {
		t.Errorf("a slow reader got %q; want the newest, READY", got)
	}
}

func receive(t *testing.T, ch <-chan []byte) string {
	t.Helper()
	select {
	case m := <-ch:
		return string(m)
	case <-time.After(2 * time.Second):
		t.Fatal("no message within 2s")
		return ""
	}
}

// TestDegradesAndRecovers stops Redis under the fleet: every operation falls
// back to local state within the timeout, the fleet says it is degraded, and
// once Redis is back the replicas share again.
func TestDegradesAndRecovers(t *testing.T) {
	r := fleettest.Start(t)
	reg := prometheus.NewRegistry()
	var logs testutil.Buffer
	a := open(t, r.URL(), WithTimeout(50*time.Millisecond), WithRegisterer(reg), WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	b := open(t, r.URL(), WithTimeout(50*time.Millisecond))
	ga, gb := a.Guard(upstream.NewMemoryGuardStore()), b.Guard(upstream.NewMemoryGuardStore())
	ctx := context.Background()
	if a.Degraded() || a.Status() != "shared" {
		t.Fatalf("degraded with Redis up")
	}

	r.Stop()
	cache := a.Cache()
	start := time.Now()
	cache.Set(ctx, "k", []byte("v"), time.Minute)
	_, _, ok := cache.Get(ctx, "k") // a miss: the client's own copy is the cache now
	claimed := cache.Claim(ctx, "k2", time.Second)
	led := a.Watches().Lead(ctx, "w", time.Second)
	ga.SetExhausted(ctx, "c", time.Now().Add(time.Minute), 5)
	_, _, exhausted := ga.Exhausted(ctx, "c")
	if took := time.Since(start); took > time.Second {
		t.Errorf("operations against a stopped Redis took %v", took)
	}
	if ok || !claimed || !led || !exhausted {
		t.Errorf("local fallbacks: get %v, claim %v, lead %v, exhausted %v; want a miss, and true for the others",
			ok, claimed, led, exhausted)
	}
	testutil.Eventually(t, 2*time.Second, "the fleet says it is degraded", func() bool { return a.Degraded() && b.Degraded() })
	if a.Status() != "degraded" || promtestutil.ToFloat64(a.metrics.degraded) != 1 {
		t.Errorf("status %q, gauge %v; want degraded, 1", a.Status(), promtestutil.ToFloat64(a.metrics.degraded))
	}
	if !strings.Contains(logs.String(), "redis unreachable") {
		t.Errorf("no log line says Redis is unreachable:\n%s", logs.String())
	}

	if err := r.Restart(); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, "the fleet shares again", func() bool { return !a.Degraded() && !b.Degraded() })
	if promtestutil.ToFloat64(a.metrics.degraded) != 0 {
		t.Error("the gauge still says degraded")
	}
	// Pub/sub is subscribed again: a window one learns reaches the other.
	testutil.Eventually(t, 5*time.Second, "a window is shared after Redis came back", func() bool {
		ga.SetExhausted(ctx, "after", time.Now().Add(time.Minute), 5)
		time.Sleep(50 * time.Millisecond)
		_, _, ok := gb.Exhausted(ctx, "after")
		return ok
	})
	a.Cache().Set(ctx, "k3", []byte("v3"), time.Minute)
	if v, _, ok := b.Cache().Get(ctx, "k3"); !ok || string(v) != "v3" {
		t.Error("the cache is not shared after Redis came back")
	}
}

func TestOpenWithoutRedis(t *testing.T) {
	// A port nothing listens on: the fleet starts, degraded.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	f := open(t, "redis://"+addr, WithTimeout(50*time.Millisecond))
	if !f.Degraded() {
		t.Error("not degraded without a Redis")
	}
}

func TestPasswordNeverShown(t *testing.T) {
	const password = "s3cret-Pa55word"
	r := fleettest.StartWith(t, fleettest.Options{User: "facade", Password: password})
	var logs testutil.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))

	f := open(t, r.URL(), WithLogger(log))
	if f.Degraded() {
		t.Fatal("degraded with the right user and password")
	}
	f.Cache().Set(context.Background(), "k", []byte("v"), time.Minute)
	if v, _, ok := open(t, r.URL()).Cache().Get(context.Background(), "k"); !ok || string(v) != "v" {
		t.Error("nothing shared through an authenticated connection")
	}

	wrong := strings.Replace(r.URL(), password, password+"-wrong", 1)
	g := open(t, wrong, WithLogger(log))
	if !g.Degraded() {
		t.Error("not degraded with a wrong password")
	}
	for _, bad := range []string{
		"redis://facade:" + password + "@127.0.0.1:notaport/0",
		"redis://facade:" + password + "@127.0.0.1:6379/notadb",
		"http://facade:" + password + "@127.0.0.1:6379",
		"redis://facade:" + password + "@%zz",
	} {
		_, err := Open(bad)
		if err == nil {
			t.Errorf("Open(%q) accepted", bad)
			continue
		}
		if strings.Contains(err.Error(), password) {
			t.Errorf("the error of an invalid URL shows the password: %v", err)
		}
	}
	if out := logs.String(); strings.Contains(out, password) || !strings.Contains(out, "redis unreachable") {
		t.Errorf("logs show the password or miss the failure:\n%s", out)
	}
}

func TestTLS(t *testing.T) {
	dir := t.TempDir()
	roots := selfSigned(t, dir)
	r := fleettest.StartWith(t, fleettest.Options{TLSCert: filepath.Join(dir, "cert.pem"), TLSKey: filepath.Join(dir, "key.pem")})
	if !strings.HasPrefix(r.URL(), "rediss://") {
		t.Fatalf("URL %q", r.URL())
	}
	f := open(t, r.URL(), WithTLS(&tls.Config{RootCAs: roots}))
	if f.Degraded() {
		t.Fatal("degraded over TLS with a trusted certificate")
	}
	// Without trusting the certificate, the connection is refused.
	g := open(t, r.URL(), WithTimeout(200*time.Millisecond))
	if !g.Degraded() {
		t.Error("connected to a server whose certificate no root vouches for")
	}
}

// selfSigned writes a certificate for 127.0.0.1 and its key into dir, as
// cert.pem and key.pem, and returns a pool trusting it.
func selfSigned(t *testing.T, dir string) *x509.CertPool {
	ca := testutil.NewCA(t, "redis-test CA")
	testutil.WritePEM(t, ca.Issue(t, "redis-test"), filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"))
	return ca.Pool
}

// TestCacheMissJoinsTheLocalFlight is issue 15's defect 8: while replica A
// fills a missing entry, the callers of replica B that want it wait in one
// flight, of which one asks Redis, instead of each polling Redis.
func TestCacheMissJoinsTheLocalFlight(t *testing.T) {
	r := fleettest.Start(t)
	up := upstreamtest.Start(t, upstreamtest.Response{Status: 200, Delay: 500 * time.Millisecond,
		Body: `{"api_version":"connect/v1","kind":"CustomConnectorPlugin","id":"ccp-1"}`})
	client := func() *upstream.Client {
		f := open(t, r.URL())
		c, err := upstream.New(up.URL, upstream.WithCache(time.Minute, 16), upstream.WithCacheStore(f.Cache()))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	a, b := client(), client()
	auth := upstream.BasicAuth("KEY", "SECRET")
	ctx := t.Context()
	go func() { _, _, _ = a.GetConnectorPlugin(ctx, auth, "ccp-1") }()
	testutil.Eventually(t, 5*time.Second, "replica A claims the entry", func() bool {
		keys, _ := direct(t, r).Keys(ctx, "plugin-facade:claim:*").Result()
		return len(keys) == 1
	})

	const callers = 10
	metas := make(chan upstream.Meta, callers)
	for range callers {
		go func() {
			_, meta, err := b.GetConnectorPlugin(ctx, auth, "ccp-1")
			if err != nil {
				t.Error(err)
			}
			metas <- meta
		}()
	}
	joined := 0
	for range callers {
		meta := <-metas
		if !meta.Cached || meta.Attempts != 0 {
			t.Errorf("a caller of B: %+v, want the entry A filled", meta)
		}
		joined += meta.Shared
	}
	if joined != callers-1 {
		t.Errorf("%d of B's %d callers joined the one waiting for the entry, want %d", joined, callers, callers-1)
	}
	if up.Count() != 1 {
		t.Errorf("the upstream got %d requests, want 1", up.Count())
	}
}

// TestMessagesOfAnotherFormatAreIgnored: a replica of another release,
// whose messages are of another format, teaches this one nothing; one of
// this format does.
func TestMessagesOfAnotherFormatAreIgnored(t *testing.T) {
	r := fleettest.Start(t)
	g := guard(t, r.URL())
	ctx := context.Background()
	publish := func(m guardMessage) {
		t.Helper()
		if err := direct(t, r).Publish(ctx, guardChannel, encodeGuard(m)).Err(); err != nil {
			t.Fatal(err)
		}
	}
	testutil.Eventually(t, 5*time.Second, "a window of this format is applied", func() bool {
		publish(guardMessage{V: guardFormat + 1, From: "other", Cred: "future", LeftMS: 60000, Limit: 1})
		publish(guardMessage{V: guardFormat, From: "other", Cred: "now", LeftMS: 60000, Limit: 1})
		_, _, ok := g.Exhausted(ctx, "now")
		return ok
	})
	if _, _, ok := g.Exhausted(ctx, "future"); ok {
		t.Error("a window of another format was applied")
	}
}
