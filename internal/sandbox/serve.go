package sandbox

import (
	"fmt"
	"net"
	"net/http"
	"time"
)

// listening is the state of a started Server.
type listening struct {
	srv  *http.Server
	done chan struct{} // closed when Serve has returned
}

// Start builds a simulator like New and serves it in the background on
// 127.0.0.1 with a port chosen by the kernel. Call Close to stop it.
func Start(opts ...Option) (*Server, error) {
	s := New(opts...)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("sandbox: listen on loopback: %w", err)
	}
	l := &listening{done: make(chan struct{})}
	l.srv = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       10 * time.Second, // the whole request, body included
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
		_ = l.srv.Serve(ln) // returns once Close has closed the listener
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

// Close stops a server started with Start at once: it closes the listener and
// every connection, in flight or idle. A simulator has nothing worth draining,
// and its users (tests, the --sandbox process) have finished their calls by the
// time they close it. Closing a Server that is not serving is a no-op.
func (s *Server) Close() error {
	s.mu.Lock()
	l := s.live
	s.live = nil
	s.mu.Unlock()
	if l == nil {
		return nil
	}
	err := l.srv.Close()
	<-l.done
	if err != nil {
		return fmt.Errorf("sandbox: close: %w", err)
	}
	return nil
}
