package bench

import (
	"context"
	"errors"
	"math"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	pluginv1 "github.com/acme/plugin-facade/gen/go/confluent/plugin/v1"
	"github.com/acme/plugin-facade/internal/sandbox"
	"github.com/acme/plugin-facade/internal/server"
	"github.com/acme/plugin-facade/internal/service"
	"github.com/acme/plugin-facade/internal/upstream"
)

func TestCheckAnswer(t *testing.T) {
	tests := []struct {
		name      string
		resp      resource
		err       error
		code      codes.Code
		malformed string // "" when well formed
	}{
		{"success", &pluginv1.CustomConnectorPlugin{Id: "ccp-1", Kind: "CustomConnectorPlugin"}, nil, codes.OK, ""},
		{"success without id", &pluginv1.CustomConnectorPlugin{Kind: "CustomConnectorPlugin"}, nil, codes.OK, "without id or kind"},
		{"success without kind", &pluginv1.CustomConnectPluginVersion{Id: "ver-1"}, nil, codes.OK, "without id or kind"},
		{"nil success", nil, nil, codes.OK, "without id or kind"},
		{"unavailable", nil, status.Error(codes.Unavailable, "Confluent Cloud: Service Unavailable"), codes.Unavailable, ""},
		{"internal", nil, status.Error(codes.Internal, "Confluent Cloud answered with a body this service cannot read"), codes.Internal, ""},
		{"resource exhausted", nil, status.Error(codes.ResourceExhausted, "slow down"), codes.ResourceExhausted, ""},
		{"deadline", nil, status.Error(codes.DeadlineExceeded, "late"), codes.DeadlineExceeded, ""},
		{"not a status", nil, errors.New("boom"), codes.Unknown, "not a gRPC status"},
		{"unknown", nil, status.Error(codes.Unknown, "?"), codes.Unknown, "unexpected code"},
		{"not found for a valid id", nil, status.Error(codes.NotFound, "gone"), codes.NotFound, "unexpected code"},
		{"no message", nil, status.Error(codes.Unavailable, ""), codes.Unavailable, "without a message"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, err := CheckAnswer(tt.resp, tt.err)
			if code != tt.code {
				t.Errorf("code = %v, want %v", code, tt.code)
			}
			if (err == nil) != (tt.malformed == "") || err != nil && !strings.Contains(err.Error(), tt.malformed) {
				t.Errorf("malformed = %v, want %q", err, tt.malformed)
			}
		})
	}
}

func TestGrowthTolerances(t *testing.T) {
	if GoroutinesGrew(100, 170) || !GoroutinesGrew(100, 171) || GoroutinesGrew(0, 20) || !GoroutinesGrew(0, 21) {
		t.Error("GoroutinesGrew: want growth only beyond before + before/2 + 20")
	}
	const mib = 1 << 20
	flat := []int64{40 * mib, 60 * mib, 50 * mib, 55 * mib, 45 * mib, 58 * mib}
	leak := []int64{40 * mib, 50 * mib, 70 * mib, 90 * mib, 110 * mib, 130 * mib}
	if MemoryGrew(flat) || !MemoryGrew(leak) || MemoryGrew(nil) {
		t.Error("MemoryGrew: want growth only when the last third's peak exceeds the first's by half plus 32 MiB")
	}
}

func TestPercentile(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i))
	}
	if p50, p99, p100 := Percentile(d, 0.5), Percentile(d, 0.99), Percentile(d, 1); p50 != 50 || p99 != 99 || p100 != 100 {
		t.Errorf("p50, p99, p100 = %v, %v, %v; want 50, 99, 100", p50, p99, p100)
	}
	if Percentile(nil, 0.5) != 0 || Percentile(d[:1], 0.99) != 1 {
		t.Error("Percentile of no or one value")
	}
}

func TestTableAndTargets(t *testing.T) {
	// calls in one second at p50, and the hop's CPU time.
	cell := func(path string, conc, calls int, p50 time.Duration, hop time.Duration) Cell {
		return Cell{Path: path, Concurrency: conc, Result: Result{Calls: calls, Elapsed: time.Second, P50: p50, P99: 2 * p50},
			ClientCPU: time.Duration(calls) * 10 * time.Microsecond, SandboxCPU: time.Duration(calls) * 20 * time.Microsecond, HopCPU: hop}
	}
	cells := []Cell{
		cell(PathDirect, 1, 4000, 250*time.Microsecond, 0), cell(PathProxy, 1, 2000, 500*time.Microsecond, 100*time.Millisecond),
		cell(PathGRPC, 1, 1600, 600*time.Microsecond, 80*time.Millisecond), cell(PathGateway, 1, 1000, time.Millisecond, 60*time.Millisecond),
		cell(PathDirect, 32, 20000, time.Millisecond, 0), cell(PathProxy, 32, 10000, 3*time.Millisecond, 500*time.Millisecond),
		cell(PathGRPC, 32, 10000, 3*time.Millisecond, 600*time.Millisecond), cell(PathGateway, 32, 8000, 4*time.Millisecond, 560*time.Millisecond),
	}
	table := Table(cells)
	for _, want := range []string{
		"### Concurrency 32",
		"| gRPC | 10000 | 0 | 10000 | 1.00x | 0.50x | 3.000 ms | 6.000 ms | 1.00x | 10 µs | 20 µs | 60 µs | 1.20x |",
		"| proxy | 2000 | 0 | 2000 | | | 0.500 ms | 1.000 ms | | 10 µs | 20 µs | 50 µs | |",
		"| direct | 4000 | 0 | 4000 | | | 0.250 ms | 0.500 ms | | 10 µs | 20 µs | – | |",
	} {
		if !strings.Contains(table, want) {
			t.Errorf("table lacks %q:\n%s", want, table)
		}
	}

	type verdict struct {
		got float64
		met bool
	}
	tests := []struct {
		name      string
		mem       Memory
		realistic bool
		want      []verdict
	}{
		{"loopback", Memory{}, false, []verdict{
			{1.0, true},  // gRPC throughput ÷ proxy
			{0.8, false}, // gateway throughput ÷ proxy
			{1.2, true},  // gRPC p50 at c=1 ÷ proxy
			{1.2, true},  // gRPC CPU per call ÷ proxy
			{1.4, false}, // gateway CPU per call ÷ proxy
		}},
		{"loopback with watchers", Memory{Watchers: 10000, Versions: 100, WatchersRSS: 129 << 20}, false, []verdict{
			{1.0, true}, {0.8, false}, {1.2, true}, {1.2, true}, {1.4, false},
			{129, false}, // RSS with 10,000 watchers, MiB
		}},
	}
	for _, tt := range tests {
		got := Targets(cells, tt.mem, tt.realistic)
		if len(got) != len(tt.want) {
			t.Fatalf("%s: Targets = %+v, want %d", tt.name, got, len(tt.want))
		}
		for i, w := range tt.want {
			if math.Abs(got[i].Got-w.got) > 1e-9 || got[i].Met != w.met {
				t.Errorf("%s: %s = %.3f (met %v), want %.3f (met %v)", tt.name, got[i].Name, got[i].Got, got[i].Met, w.got, w.met)
			}
		}
	}

	realistic := []Cell{
		cell(PathDirect, 200, 5000, 40*time.Millisecond, 0), cell(PathProxy, 200, 5000, 40*time.Millisecond, 500*time.Millisecond),
		cell(PathGRPC, 200, 4900, 40*time.Millisecond, 490*time.Millisecond), cell(PathGateway, 200, 4000, 50*time.Millisecond, 400*time.Millisecond),
	}
	got := Targets(realistic, Memory{}, true)
	want := []verdict{{0.98, true}, {0.8, false}, {1.0, true}, {1.0, true}}
	if len(got) != len(want) {
		t.Fatalf("realistic: Targets = %+v", got)
	}
	for i, w := range want {
		if math.Abs(got[i].Got-w.got) > 1e-9 || got[i].Met != w.met {
			t.Errorf("realistic: %s = %.3f (met %v), want %.3f (met %v)", got[i].Name, got[i].Got, got[i].Met, w.got, w.met)
		}
	}
}

func TestMemoryPerThousand(t *testing.T) {
	m := Memory{InFlight: 1000, Reached: 2000, IdleRSS: 20 << 20, InFlightRSS: 40 << 20, TwiceRSS: 48 << 20}
	if got := m.PerThousandInFlight(); got != 8<<20 {
		t.Errorf("PerThousandInFlight = %d, want 8 MiB", got)
	}
	if got := (Memory{InFlight: 1000, Reached: 1000}).PerThousandInFlight(); got != 0 {
		t.Errorf("without a second step: %d, want 0", got)
	}
}

// TestSoakAgainstAnInProcessFacade runs the soak's load for a moment against
// the facade and a sandbox answering a fifth of the requests with faults, and
// checks that every answer is well formed.
func TestSoakAgainstAnInProcessFacade(t *testing.T) {
	sb, err := sandbox.Start(sandbox.WithRateLimit(0, 0), sandbox.WithSyntheticIDs(), sandbox.WithFaultRate(0.2, 1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sb.Close() })
	uc, err := upstream.New(sb.URL())
	if err != nil {
		t.Fatal(err)
	}
	svc := service.New(uc, service.WithDefaultCredentials(upstream.BasicAuth(sandbox.APIKey, sandbox.APISecret)))
	grpcLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	httpLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	srv, err := server.New(svc)
	if err != nil {
		t.Fatal(err)
	}
	go func() { done <- srv.Serve(ctx, grpcLis, httpLis) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	conn, err := grpc.NewClient(grpcLis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })

	var (
		tally Tally
		next  atomic.Uint64
	)
	r := Run(t.Context(), 8, 500*time.Millisecond, &next, SoakCall(pluginv1.NewPluginServiceClient(conn), &tally, 5*time.Second))
	t.Logf("%d calls: %s", r.Calls, tally.String())
	if n, examples := tally.Malformed(); n > 0 || r.Errors > 0 {
		t.Errorf("%d malformed answers, such as %v", n, examples)
	}
	if tally.Count(codes.OK) == 0 {
		t.Error("no call succeeded")
	}
	if sb.Requests() == 0 {
		t.Error("no call reached the sandbox")
	}
}
