package upstream

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"net/http/httptrace"
	"sync"
	"sync/atomic"
)

// newTransport returns the client's pooled transport: the standard library's
// defaults, but keeping as many idle connections to the one upstream host as
// to all hosts together (the default keeps 2 per host, which under load means
// a new TLS handshake for most HTTP/1.1 calls), behind a coldStart gate.
func newTransport() http.RoundTripper {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = t.MaxIdleConns
	g := &coldStart{next: t}
	dial := t.DialContext
	t.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		g.opened()
		return &countedConn{Conn: c, closed: g.closed}, nil
	}
	return g
}

// coldStart keeps a burst of calls on a cold pool from opening a connection
// each. net/http cannot know that an https upstream speaks HTTP/2 before a
// TLS handshake says so, so every request that finds no connection dials its
// own: a burst of 200 first calls opens about as many TLS connections, where
// one HTTP/2 connection carries them all. This happens at start-up, and again
// whenever the pool has emptied (idle connections are closed after 90s).
//
// So while no connection to the upstream is open, the first https request
// goes alone and the others wait until it is answered. If its connection
// speaks HTTP/2 they then share it; if it speaks HTTP/1.1 they go as soon as
// the handshake says so, and the gate opens for good, since HTTP/1.1 needs a
// connection per concurrent call.
// Plain-HTTP upstreams are never held back.
type coldStart struct {
	next *http.Transport

	// warm is http1 || live > 0 && warming == nil, kept by every change of
	// them: what most requests need to know, without taking mu.
	warm atomic.Bool

	mu      sync.Mutex
	live    int           // open connections
	http1   bool          // the upstream answered a TLS handshake without h2
	warming chan struct{} // closed when the request leading a cold start has its connection
}

func (g *coldStart) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme != "https" || g.warm.Load() {
		return g.next.RoundTrip(req)
	}
	g.mu.Lock()
	switch {
	case g.http1 || g.live > 0 && g.warming == nil:
		g.mu.Unlock()
		return g.next.RoundTrip(req)
	case g.warming != nil:
		warming := g.warming
		g.mu.Unlock()
		select {
		case <-warming:
		case <-req.Context().Done():
			return nil, req.Context().Err()
		}
		return g.next.RoundTrip(req)
	}
	warming := make(chan struct{})
	g.warming = warming
	g.update()
	g.mu.Unlock()

	var once sync.Once
	release := func() {
		once.Do(func() {
			g.mu.Lock()
			defer g.mu.Unlock()
			g.warming = nil
			g.update()
			close(warming)
		})
	}
	// The others go once the leader's answer has come (or it failed): by
	// then the server's HTTP/2 SETTINGS have arrived, so the connection's
	// real stream limit is known. Released earlier, on the client's initial
	// assumption of 100 streams, a burst larger than that would dial a
	// connection for each request past it.
	defer release()
	trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) {
		if tc, ok := info.Conn.(*tls.Conn); ok && tc.ConnectionState().NegotiatedProtocol != "h2" {
			g.mu.Lock()
			g.http1 = true
			g.update()
			g.mu.Unlock()
			release()
		}
	}}
	return g.next.RoundTrip(req.WithContext(httptrace.WithClientTrace(req.Context(), trace)))
}

// CloseIdleConnections lets Client.Close reach the pool.
func (g *coldStart) CloseIdleConnections() { g.next.CloseIdleConnections() }

func (g *coldStart) opened() {
	g.mu.Lock()
	g.live++
	g.update()
	g.mu.Unlock()
}

func (g *coldStart) closed() {
	g.mu.Lock()
	g.live--
	g.update()
	g.mu.Unlock()
}

// update sets warm from the state; call it with mu held after each change.
func (g *coldStart) update() {
	g.warm.Store(g.http1 || g.live > 0 && g.warming == nil)
}

// countedConn tells coldStart when it closes.
type countedConn struct {
	net.Conn
	once   sync.Once
	closed func()
}

func (c *countedConn) Close() error {
	c.once.Do(c.closed)
	return c.Conn.Close()
}
