package server

import (
	"net"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	pluginv1 "github.com/acme/plugin-facade/gen/go/confluent/plugin/v1"
	"github.com/acme/plugin-facade/internal/sandbox"
	"github.com/acme/plugin-facade/internal/service"
	"github.com/acme/plugin-facade/internal/upstream"
)

// countingListener counts the connections it accepts.
type countingListener struct {
	net.Listener
	accepted atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.accepted.Add(1)
	}
	return c, err
}

// startCountedStack is the facade in front of a sandbox whose listener counts
// the TCP connections the facade opens to it.
func startCountedStack(t *testing.T) (*stack, *countingListener) {
	t.Helper()
	sb := sandbox.New(sandbox.WithRateLimit(0, 0), sandbox.WithSyntheticIDs())
	up := httptest.NewUnstartedServer(sb)
	counted := &countingListener{Listener: up.Listener}
	up.Listener = counted
	up.Start()
	t.Cleanup(up.Close)
	uc, err := upstream.New(up.URL)
	if err != nil {
		t.Fatal(err)
	}
	return startServer(t, service.New(uc, service.WithDefaultCredentials(sandboxKey)), sb), counted
}

// Each call reads a plugin of its own, so that nothing between the caller and
// the upstream (a cache, coalescing) can save an upstream call.
func getDistinct(s *stack, t testing.TB, n int) error {
	_, err := s.client.GetConnectorPlugin(t.Context(), &pluginv1.GetConnectorPluginRequest{Id: sandbox.SyntheticPluginPrefix + strconv.Itoa(n)})
	return err
}

func TestSequentialCallsReuseOneUpstreamConnection(t *testing.T) {
	s, counted := startCountedStack(t)
	const calls = 1000
	for i := range calls {
		if err := getDistinct(s, t, i); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	got := counted.accepted.Load()
	t.Logf("%d sequential calls opened %d upstream connections", calls, got)
	if got > 2 {
		t.Errorf("%d sequential calls opened %d upstream connections, want at most 2", calls, got)
	}
	if n := s.sandbox.Requests(); n != calls {
		t.Errorf("the upstream saw %d requests, want %d", n, calls)
	}
}

func TestConcurrentCallsDoNotOpenAConnectionEach(t *testing.T) {
	s, counted := startCountedStack(t)
	const workers, each = 32, 25
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				if err := getDistinct(s, t, w*each+i); err != nil {
					t.Errorf("worker %d call %d: %v", w, i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	got := counted.accepted.Load()
	t.Logf("%d calls from %d concurrent callers opened %d upstream connections", workers*each, workers, got)
	// At most one connection per call in flight, with slack for a dial that
	// loses the race to a connection coming back to the pool.
	if got > 2*workers {
		t.Errorf("%d calls from %d callers opened %d upstream connections, want at most %d", workers*each, workers, got, 2*workers)
	}
}
