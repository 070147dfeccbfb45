// Package upstreamtest provides a scripted upstream for tests: a real HTTP server
// on loopback that answers requests with scripted statuses, headers and bodies,
// and records what it received. Tests of the client and of the service use it to
// play one upstream answer at a time, such as an example from the API pages.
package upstreamtest

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// Response is what the server answers.
type Response struct {
	Status int
	Header http.Header
	Body   string
	// Delay holds the answer back (until the request's context ends, if sooner),
	// to exercise deadlines.
	Delay time.Duration
}

// Server is a running scripted upstream. It stops when the test ends.
type Server struct {
	// URL is the base URL of the server, such as http://127.0.0.1:41234.
	URL string

	script    []Response
	abandoned chan struct{} // one value per request whose context ended during Delay
	mu        sync.Mutex
	requests  []*http.Request
}

// Start starts a server that answers every request with resp (Content-Type
// application/json unless resp.Header says otherwise).
func Start(t testing.TB, resp Response) *Server {
	t.Helper()
	return StartScript(t, resp)
}

// StartScript starts a server that answers the n-th request with script[n], and
// every request past the end of the script with its last response.
func StartScript(t testing.TB, script ...Response) *Server {
	t.Helper()
	if len(script) == 0 {
		t.Fatal("upstreamtest: empty script")
	}
	s := &Server{script: script, abandoned: make(chan struct{}, 64)}
	srv := httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(srv.Close)
	s.URL = srv.URL
	return s
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	resp := s.script[min(len(s.requests), len(s.script)-1)]
	s.requests = append(s.requests, r.Clone(context.Background()))
	s.mu.Unlock()
	if resp.Delay > 0 {
		select {
		case <-time.After(resp.Delay):
		case <-r.Context().Done():
			select {
			case s.abandoned <- struct{}{}:
			default:
			}
			return
		}
	}
	w.Header().Set("Content-Type", "application/json")
	for k, vs := range resp.Header {
		w.Header()[k] = vs
	}
	w.WriteHeader(resp.Status)
	_, _ = w.Write([]byte(resp.Body))
}

// Count returns how many requests the server has received.
func (s *Server) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.requests)
}

// CountFrom returns how many requests the server has received with the
// User-Agent ua: from one of several clients that share it.
func (s *Server) CountFrom(ua string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, r := range s.requests {
		if r.UserAgent() == ua {
			n++
		}
	}
	return n
}

// Last returns the latest request, failing the test if there was none.
func (s *Server) Last(t testing.TB) *http.Request {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.requests) == 0 {
		t.Fatal("the upstream received no request")
	}
	return s.requests[len(s.requests)-1]
}

// Abandoned reports whether, within wait, the client gave up a request that
// the server was holding back (Response.Delay): proof that the client's
// deadline or cancellation reached the upstream call.
func (s *Server) Abandoned(wait time.Duration) bool {
	select {
	case <-s.abandoned:
		return true
	case <-time.After(wait):
		return false
	}
}
