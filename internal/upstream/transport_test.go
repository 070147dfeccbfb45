package upstream

import (
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/acme/plugin-facade/internal/testutil"
)

// tlsUpstream is an upstream behind TLS, as Confluent Cloud is, answering
// minimal after latency, over HTTP/2 when http2 is set and HTTP/1.1 otherwise.
// It counts the connections it accepted and the most calls it had in flight
// at once.
type tlsUpstream struct {
	url         string
	conns       atomic.Int64
	inFlight    atomic.Int64
	maxInFlight atomic.Int64
	protos      sync.Map // request protocols seen
	roots       *tls.Config

	// With gather set (before the first request), each request is held
	// until gather of them are in flight at once (gathered closes), or
	// until the deadline, instead of for latency: a condition awaited,
	// which a loaded machine's slow handshakes cannot outrun.
	gather   int64
	gathered chan struct{}
	once     sync.Once
	deadline time.Time
}

// gatherUp holds the requests until n are in flight at once, for at most
// within from now.
func (u *tlsUpstream) gatherUp(n int64, within time.Duration) {
	u.gather, u.gathered, u.deadline = n, make(chan struct{}), time.Now().Add(within)
}

func startTLSUpstream(t *testing.T, http2 bool, latency time.Duration) *tlsUpstream {
	u := &tlsUpstream{}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := u.inFlight.Add(1)
		defer u.inFlight.Add(-1)
		for m := u.maxInFlight.Load(); n > m && !u.maxInFlight.CompareAndSwap(m, n); m = u.maxInFlight.Load() {
		}
		u.protos.Store(r.Proto, true)
		if u.gather > 0 {
			if n >= u.gather {
				u.once.Do(func() { close(u.gathered) })
			}
			select {
			case <-u.gathered:
			case <-time.After(time.Until(u.deadline)):
			}
		} else {
			time.Sleep(latency)
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, minimal)
	}))
	srv.EnableHTTP2 = http2
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // handshakes the test cuts short
	srv.Listener = countingListener{Listener: srv.Listener, n: &u.conns}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	u.url = srv.URL
	u.roots = &tls.Config{RootCAs: srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs}
	return u
}

type countingListener struct {
	net.Listener
	n *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

// client returns a client of u that trusts its certificate.
func (u *tlsUpstream) client(t *testing.T) *Client {
	c := newClient(t, u.url, WithRateLimitGuard(false))
	c.transport.(*coldStart).next.TLSClientConfig = u.roots
	return c
}

// burst makes n concurrent calls for distinct ids, so that none coalesce.
func burst(t *testing.T, c *Client, n int) {
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			if _, _, err := c.GetConnectorPlugin(t.Context(), testAuth, fmt.Sprintf("ccp-%d", i)); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
}

// TestColdBurstOverHTTP2SharesOneConnection: 200 concurrent first calls to an
// HTTP/2 upstream behind TLS (whose stream limit, Go's default of 250, takes
// them all) open a handful of connections, not one each; and so again once
// the pool has emptied.
func TestColdBurstOverHTTP2SharesOneConnection(t *testing.T) {
	const maxConns = 4
	u := startTLSUpstream(t, true, 40*time.Millisecond)
	c := u.client(t)
	burst(t, c, 200)
	if n := u.conns.Load(); n > maxConns {
		t.Errorf("a cold burst of 200 calls opened %d connections, want at most %d", n, maxConns)
	}
	if _, ok := u.protos.Load("HTTP/2.0"); !ok {
		t.Errorf("the calls were not made over HTTP/2")
	}
	t.Logf("cold burst: %d connections", u.conns.Load())

	c.Close() // as the idle timeout would
	waitFor(t, func() bool { return c.transport.(*coldStart).liveConns() == 0 })
	before := u.conns.Load()
	burst(t, c, 200)
	if n := u.conns.Load() - before; n > maxConns {
		t.Errorf("a burst on an emptied pool opened %d connections, want at most %d", n, maxConns)
	}
}

// TestColdBurstOverHTTP1KeepsItsConcurrency: an upstream that speaks only
// HTTP/1.1 over TLS is held back for its first handshake only; then calls run
// side by side, a connection each.
func TestColdBurstOverHTTP1KeepsItsConcurrency(t *testing.T) {
	u := startTLSUpstream(t, false, 100*time.Millisecond)
	// Half the burst in flight at once shows the calls side by side; a
	// gate that held them all behind the first handshake would let them
	// through one at a time, and never gather them.
	u.gatherUp(25, 10*time.Second)
	c := u.client(t)
	burst(t, c, 50)
	if _, ok := u.protos.Load("HTTP/1.1"); !ok {
		t.Fatalf("the calls were not made over HTTP/1.1")
	}
	if m := u.maxInFlight.Load(); m < 25 {
		t.Errorf("at most %d of 50 concurrent calls reached the upstream at once, want most of them", m)
	}
}

func (g *coldStart) liveConns() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.live
}

// waitFor awaits cond for up to five seconds.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	testutil.Eventually(t, 5*time.Second, "the condition", cond)
}
