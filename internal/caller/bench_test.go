package caller_test

import (
	"context"
	"encoding/base64"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	pluginv1 "github.com/acme/plugin-facade/gen/go/confluent/plugin/v1"
	"github.com/acme/plugin-facade/internal/caller"
	"github.com/acme/plugin-facade/internal/callinfo"
	"github.com/acme/plugin-facade/internal/sandbox"
	"github.com/acme/plugin-facade/internal/testutil"
)

// benchPolicy is the benchmarks' caller policy: two rules, the caller
// (127.0.0.2) named by the second.
const benchPolicy = `
callers:
  - name: other-team
    match: ["spiffe://acme/ns/other/sa/*", "ip:10.*"]
    allow: {GetPluginVersion: {environments: [env-1*]}}
  - name: bench
    match: ["ip:127.0.0.2"]
    allow: {GetConnectorPlugin: {plugins: ["ccp-*"]}}
`

// BenchmarkGuard is issue 17's measure: gRPC throughput at concurrency 32
// through the whole stack (client, server, service, upstream client, sandbox
// on loopback), without the caller guard ("off") and with identity, a
// caller policy and the fair share all at work ("on": the sandbox's key
// describes a window large enough that no call is throttled, so every call
// takes a token). On a shared machine the speed drifts more between runs than
// the guard costs, so each iteration is a pair of rounds, one of each, one
// right after the other (in alternating order), and the benchmark reports the
// median of the pairs' ratios (on/off, of throughput) beside each variant's
// median calls per second:
//
//	go test -run '^$' -bench BenchmarkGuard -benchtime 20x ./internal/caller/
func BenchmarkGuard(b *testing.B) {
	const (
		concurrency = 32
		roundCalls  = 2000
	)
	sb := testutil.StartSandbox(b, sandbox.WithRateLimit(1<<30, time.Minute))
	p, err := caller.ParsePolicy("bench.yaml", []byte(benchPolicy))
	if err != nil {
		b.Fatal(err)
	}
	req := &pluginv1.GetConnectorPluginRequest{Id: sandbox.PluginID}
	off := grpcClient(b, startFacadeGuarded(b, sb, nil, false).grpcAddr, "127.0.0.2", nil)
	on := grpcClient(b, startFacadeGuarded(b, sb, nil, true, caller.WithPolicy(p)).grpcAddr, "127.0.0.2", nil)
	// round makes roundCalls calls with concurrency callers at once, and
	// returns the calls per second.
	round := func(c pluginv1.PluginServiceClient) float64 {
		var wg sync.WaitGroup
		work := make(chan struct{}, roundCalls)
		for range roundCalls {
			work <- struct{}{}
		}
		close(work)
		start := time.Now()
		for range concurrency {
			wg.Go(func() {
				for range work {
					if _, err := c.GetConnectorPlugin(context.Background(), req); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		return roundCalls / time.Since(start).Seconds()
	}
	round(off) // connects, warms up
	round(on)  // and teaches the window
	var offs, ons, ratios []float64
	i := 0
	cpu0 := cpuTime()
	for b.Loop() {
		var o, g float64
		if i%2 == 0 {
			o, g = round(off), round(on)
		} else {
			g, o = round(on), round(off)
		}
		i++
		offs, ons, ratios = append(offs, o), append(ons, g), append(ratios, g/o)
	}
	// The whole process's CPU (both facades, the sandbox, the clients) per
	// call: what one call through the loopback stack costs, guard or not.
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(2*roundCalls*i), "cpu-µs/call")
	b.ReportMetric(median(offs), "off-calls/s")
	b.ReportMetric(median(ons), "on-calls/s")
	b.ReportMetric(median(ratios), "on/off")
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}

// BenchmarkGuardUnary is the guard's own cost per call, alone: identity by
// peer address, a policy of two rules, the fair share's token, the call
// log's record, as Guard.Unary does them for a gRPC call; compare it with a
// whole call's CPU (BenchmarkGuard's cpu-µs/call).
func BenchmarkGuardUnary(b *testing.B) {
	p, err := caller.ParsePolicy("bench.yaml", []byte(benchPolicy))
	if err != nil {
		b.Fatal(err)
	}
	g, err := caller.New(caller.WithServiceKey(sandboxKey), caller.WithPolicy(p))
	if err != nil {
		b.Fatal(err)
	}
	// Teach it a window as large as the sandbox's in BenchmarkGuard.
	window := g.Transport(roundTripFunc(func(*http.Request) (*http.Response, error) {
		h := http.Header{}
		h.Set("X-RateLimit-Limit", strconv.Itoa(1<<30))
		h.Set("X-RateLimit-Remaining", strconv.Itoa(1<<30))
		h.Set("X-RateLimit-Reset", "60")
		return &http.Response{StatusCode: 200, Header: h, Body: http.NoBody}, nil
	}))
	req, _ := http.NewRequest(http.MethodGet, "http://upstream/", nil)
	req.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(sandbox.APIKey+":"+sandbox.APISecret)))
	if _, err := window.RoundTrip(req); err != nil {
		b.Fatal(err)
	}
	base := peer.NewContext(context.Background(), &peer.Peer{Addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2), Port: 40000}})
	base = metadata.NewIncomingContext(base, metadata.Pairs("user-agent", "grpc-go/1.85.0", "content-type", "application/grpc"))
	info := &grpc.UnaryServerInfo{FullMethod: pluginv1.PluginService_GetConnectorPlugin_FullMethodName}
	msg := &pluginv1.GetConnectorPluginRequest{Id: sandbox.PluginID}
	handler := func(context.Context, any) (any, error) { return nil, nil }
	b.ReportAllocs()
	cpu0, n := cpuTime(), 0
	for b.Loop() {
		ctx, _ := callinfo.NewContext(base)
		if _, err := g.Unary(ctx, msg, info, handler); err != nil {
			b.Fatal(err)
		}
		n++
	}
	b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(n), "cpu-ns/op")
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
