package sandbox

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"
)

// closeTimeout bounds the graceful part of Close: a test or a --sandbox
// process must not hang on a client that keeps a request open.
const closeTimeout = 3 * time.Second

// listening is the state of a started Server.
type listening struct {
	srv  *http.Server
	ln   net.Listener
	done chan struct{} // closed when Serve has returned

	mu sync.Mutex
	// fresh holds accepted connections that have not sent a request yet.
	// http.Server.Shutdown waits 5s before treating them as idle, longer
	// than closeTimeout; clients with a connection pool open such
	// connections whenever they dial in parallel, so Close closes them
	// itself.
	fresh map[net.Conn]struct{}
}

func (l *listening) trackConn(c net.Conn, state http.ConnState) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if state == http.StateNew {
		l.fresh[c] = struct{}{}
	} else {
		delete(l.fresh, c)
	}
}

// Start builds a simulator like New and serves it in the background on
// 127.0.0.1 with a port chosen by the kernel. Call Close to stop it.
func Start(opts ...Option) (*Server, error) {
	s := New(opts...)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("sandbox: listen on loopback: %w", err)
	}
	l := &listening{
		ln:    &onceCloseListener{Listener: ln},
		done:  make(chan struct{}),
		fresh: map[net.Conn]struct{}{},
	}
	l.srv = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		ConnState:         l.trackConn,
		// Otherwise "OPTIONS *" is answered by net/http without reaching
		// ServeHTTP, and Requests would miss it.
		DisableGeneralOptionsHandler: true,
	}
	s.mu.Lock()
	s.live = l
	s.url = "http://" + ln.Addr().String()
	s.mu.Unlock()
	go func() {
		defer close(l.done)
		_ = l.srv.Serve(l.ln) // returns once Close has closed the listener
	}()
	return s, nil
}

// URL returns the base URL of a started server, such as
// "http://127.0.0.1:41234", without a trailing slash. It returns "" for a
// Server built with New, and keeps returning the old address after Close.
func (s *Server) URL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.url
}

// Close stops a server started with Start: it stops accepting connections,
// lets in-flight requests finish for up to a few seconds and then cuts them
// off. Closing a Server that is not serving is a no-op.
func (s *Server) Close() error {
	s.mu.Lock()
	l := s.live
	s.live = nil
	s.mu.Unlock()
	if l == nil {
		return nil
	}

	// Once Serve has returned, no connection can be accepted any more, so
	// the set of fresh connections is final.
	_ = l.ln.Close()
	<-l.done
	l.mu.Lock()
	for c := range l.fresh {
		_ = c.Close()
	}
	l.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	if err := l.srv.Shutdown(ctx); err != nil {
		return fmt.Errorf("sandbox: shut down: %w", errors.Join(err, l.srv.Close()))
	}
	return nil
}

// onceCloseListener lets both Close and http.Server.Shutdown close the
// listener without the second close reporting an error.
type onceCloseListener struct {
	net.Listener
	once sync.Once
	err  error
}

func (l *onceCloseListener) Close() error {
	l.once.Do(func() { l.err = l.Listener.Close() })
	return l.err
}
