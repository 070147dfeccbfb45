package bench

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	pluginv1 "github.com/acme/plugin-facade/gen/go/confluent/plugin/v1"
	"github.com/acme/plugin-facade/internal/sandbox"
)

// Call makes the n-th request of a run. Every n names resources of its own
// (see IDs), so that nothing can answer one request from another.
type Call func(ctx context.Context, n uint64) error

// IDs returns the synthetic plugin and version ids of the n-th request (the
// sandbox serves them under --synthetic-ids).
func IDs(n uint64) (pluginID, versionID string) {
	s := strconv.FormatUint(n, 10)
	return sandbox.SyntheticPluginPrefix + s, sandbox.SyntheticVersionPrefix + s
}

// Path is the upstream (and gateway) path of the n-th request: even requests
// read a connector plugin, odd ones a plugin version, so that every run
// measures both resources half and half.
func Path(n uint64) string {
	plugin, version := IDs(n)
	if n%2 == 0 {
		return "/connect/v1/custom-connector-plugins/" + plugin
	}
	return "/ccpm/v1/plugins/" + plugin + "/versions/" + version + "?environment=" + sandbox.Environment
}

// HTTPCall GETs base+Path(n) with client and the given Authorization header
// (none when empty), and wants a 200 whose body it reads whole.
func HTTPCall(client *http.Client, base, authorization string) Call {
	return func(ctx context.Context, n uint64) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+Path(n), nil)
		if err != nil {
			return err
		}
		req.Header.Set("Accept", "application/json")
		if authorization != "" {
			req.Header.Set("Authorization", authorization)
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: HTTP %d", Path(n), resp.StatusCode)
		}
		return nil
	}
}

// GRPCCall calls the RPC that matches Path(n).
func GRPCCall(client pluginv1.PluginServiceClient) Call {
	return func(ctx context.Context, n uint64) error {
		plugin, version := IDs(n)
		var err error
		if n%2 == 0 {
			_, err = client.GetConnectorPlugin(ctx, &pluginv1.GetConnectorPluginRequest{Id: plugin})
		} else {
			_, err = client.GetPluginVersion(ctx, &pluginv1.GetPluginVersionRequest{PluginId: plugin, Id: version, Environment: sandbox.Environment})
		}
		return err
	}
}

// HealthCall makes a grpc.health.v1 Check: a bare gRPC round trip to the
// facade that never reaches the upstream, the floor of any gRPC call.
func HealthCall(client healthpb.HealthClient) Call {
	return func(ctx context.Context, _ uint64) error {
		_, err := client.Check(ctx, &healthpb.HealthCheckRequest{})
		return err
	}
}

// Result is what one run of a Call measured.
type Result struct {
	Calls    int
	Errors   int
	FirstErr error
	Elapsed  time.Duration
	P50, P99 time.Duration
}

// Throughput is successful calls per second.
func (r Result) Throughput() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Calls-r.Errors) / r.Elapsed.Seconds()
}

// Run makes calls from concurrency workers, each one call after another,
// for d (calls in flight at the end finish and count). Request numbers come
// from next, shared across runs so that no two requests of a benchmark ever
// use the same ids.
func Run(ctx context.Context, concurrency int, d time.Duration, next *atomic.Uint64, call Call) Result {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := make(chan struct{})
	timer := time.AfterFunc(d, func() { close(stop) })
	defer timer.Stop()

	var (
		mu        sync.Mutex
		latencies []time.Duration
		errs      int
		firstErr  error
		wg        sync.WaitGroup
	)
	start := time.Now()
	for range concurrency {
		wg.Go(func() {
			own := make([]time.Duration, 0, 1024)
			var ownErrs int
			var ownFirst error
			for !closed(stop) {
				t := time.Now()
				err := call(ctx, next.Add(1))
				own = append(own, time.Since(t))
				if err != nil {
					ownErrs++
					if ownFirst == nil {
						ownFirst = err
					}
				}
			}
			mu.Lock()
			defer mu.Unlock()
			latencies = append(latencies, own...)
			errs += ownErrs
			if firstErr == nil {
				firstErr = ownFirst
			}
		})
	}
	wg.Wait()
	r := Result{Calls: len(latencies), Errors: errs, FirstErr: firstErr, Elapsed: time.Since(start)}
	slices.Sort(latencies)
	r.P50, r.P99 = Percentile(latencies, 0.50), Percentile(latencies, 0.99)
	return r
}

// Percentile returns the q-quantile (0 < q ≤ 1) of sorted by the nearest-rank
// method; 0 for no values.
func Percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(rank, 0), len(sorted)-1)]
}

func closed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}
