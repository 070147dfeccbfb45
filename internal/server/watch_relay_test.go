package server

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"

	"github.com/acme/plugin-facade/internal/fleet"
	"github.com/acme/plugin-facade/internal/fleet/fleettest"
	"github.com/acme/plugin-facade/internal/service"
	"github.com/acme/plugin-facade/internal/upstream"
)

// TestRelayedWatchFailureIsTheSameBytes runs two replicas sharing one real
// redis-server: one polls the upstream for a REST watch, the other relays what
// it publishes to its own REST watcher of the same version. The watch ends
// with the upstream's failure, and both watchers must read the same response:
// status, headers (the upstream's WWW-Authenticate on a 401, not the facade's
// default) and body, byte for byte (defect 2 of issue 15: the relaying replica
// made an envelope up from a plain status).
func TestRelayedWatchFailureIsTheSameBytes(t *testing.T) {
	tests := []struct {
		name   string
		status int
		header http.Header
		body   string
	}{
		{"404", http.StatusNotFound, http.Header{"X-Request-Id": {"req-404"}}, readExample(t, "failure_404.json")},
		{"401", http.StatusUnauthorized, http.Header{"X-Request-Id": {"req-401"},
			"Www-Authenticate": {`Basic realm="Confluent Cloud", error="invalid_key"`}}, readExample(t, "failure_401.json")},
	}
	rs := fleettest.Start(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			flushRedis(t, rs.URL())
			release := make(chan struct{})
			polled := make(chan struct{}, 1)
			var requests atomic.Int32
			up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				requests.Add(1)
				polled <- struct{}{}
				<-release // until both replicas watch
				for k, v := range tt.header {
					w.Header()[k] = v
				}
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tt.status)
				_, _ = io.WriteString(w, tt.body)
			}))
			t.Cleanup(up.Close)
			t.Cleanup(func() { closeOnce(release) })
			poller, relayer := relayReplica(t, up.URL, rs.URL()), relayReplica(t, up.URL, rs.URL())

			// A 60s interval: the relaying replica asks for the lease every 30s,
			// long after the test is over, so it relays and never polls.
			path := "/ccpm/v1/plugins/ccp-1/versions/ver-1:watch?environment=env-1&poll_interval=60s"
			first := watchAsync(poller.httpURL + path)
			select {
			case <-polled: // the poller holds the lease and waits for the answer
			case <-time.After(10 * time.Second):
				t.Fatal("the first replica did not poll")
			}
			second := watchAsync(relayer.httpURL + path)
			waitSubscribers(t, rs.URL(), 2)
			close(release)

			a, b := <-first, <-second
			if a.err != nil || b.err != nil {
				t.Fatalf("watching: %v, %v", a.err, b.err)
			}
			if n := requests.Load(); n != 1 {
				t.Fatalf("the upstream got %d requests, want 1: the second replica must relay, not poll", n)
			}
			if a.status != tt.status || !strings.Contains(string(a.body), `{"error":`) {
				t.Errorf("poller: %d %s, want %d and the error line", a.status, a.body, tt.status)
			}
			if got, want := a.header.Get("Www-Authenticate"), tt.header.Get("Www-Authenticate"); got != want {
				t.Errorf("poller WWW-Authenticate %q, want the upstream's %q", got, want)
			}
			a.header.Del("Date")
			b.header.Del("Date")
			if diff := cmp.Diff(a, b, cmp.AllowUnexported(watchResponse{})); diff != "" {
				t.Errorf("the relaying replica answers otherwise (-poller +relayer):\n%s", diff)
			}
		})
	}
}

// relayReplica is a facade replica sharing the fleet state at redisURL.
func relayReplica(t *testing.T, upstreamURL, redisURL string) *stack {
	t.Helper()
	fl, err := fleet.Open(redisURL, fleet.WithTimeout(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = fl.Close() })
	uc, err := upstream.New(upstreamURL, upstream.WithRateLimitGuard(false), upstream.WithRetry(upstream.RetryPolicy{MaxAttempts: 1}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(uc.Close)
	return startServer(t, service.New(uc, service.WithDefaultCredentials(sandboxKey), service.WithWatchRelay(fl.Watches())), nil)
}

// watchResponse is what a REST watcher read.
type watchResponse struct {
	status int
	header http.Header
	body   []byte
	err    error
}

// watchAsync GETs url in the background and reads the whole response.
func watchAsync(url string) <-chan watchResponse {
	out := make(chan watchResponse, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			out <- watchResponse{err: err}
			return
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			out <- watchResponse{err: err}
			return
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		out <- watchResponse{status: resp.StatusCode, header: resp.Header, body: body, err: err}
	}()
	return out
}

// waitSubscribers waits until n replicas subscribe to the watch channels.
func waitSubscribers(t *testing.T, redisURL string, n int64) {
	t.Helper()
	rdb := redisClient(t, redisURL)
	deadline := time.Now().Add(10 * time.Second)
	for {
		channels, err := rdb.PubSubChannels(t.Context(), "plugin-facade:watch:*").Result()
		if err == nil && len(channels) == 1 {
			counts, err := rdb.PubSubNumSub(t.Context(), channels[0]).Result()
			if err == nil && counts[channels[0]] >= n {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("fewer than %d replicas subscribed to the watch (channels %v, %v)", n, channels, err)
		}
		time.Sleep(5 * time.Millisecond) // polling Redis for a condition, not waiting for time
	}
}

func flushRedis(t *testing.T, redisURL string) {
	t.Helper()
	if err := redisClient(t, redisURL).FlushAll(t.Context()).Err(); err != nil {
		t.Fatal(err)
	}
}

func redisClient(t *testing.T, redisURL string) *redis.Client {
	t.Helper()
	opt, err := redis.ParseURL(redisURL)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

func closeOnce(ch chan struct{}) {
	select {
	case <-ch:
	default:
		close(ch)
	}
}
