// Command bench is `make bench`: it measures, in one run, against the sandbox
// on loopback (each piece a process of its own), HTTP GETs straight to the
// sandbox, the same GETs through a bare pass-through proxy, gRPC calls through
// the facade and REST calls through its gateway, in the facade's default
// configuration (a call log line per call, to a file) and with the log off,
// each at concurrency 1, 32, 256 and 1,024 with distinct ids; the CPU per
// call of every process; the facade's RSS with calls in flight and with many
// watchers; prints the tables with each facade path as a ratio of the proxy
// and of direct; runs the decode/translate microbenchmarks; writes it all to
// docs/benchmarks.md; and fails when one of issue 18's targets is missed.
//
//	go build -o /tmp/b ./cmd/server ./cmd/sandbox ./internal/bench/passproxy ./internal/bench/cmd/bench
//	/tmp/b/bench -bin /tmp/b -out docs/benchmarks.md
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	pluginv1 "github.com/acme/plugin-facade/gen/go/confluent/plugin/v1"
	"github.com/acme/plugin-facade/internal/bench"
	"github.com/acme/plugin-facade/internal/fleet/fleettest"
	"github.com/acme/plugin-facade/internal/sandbox"
	"github.com/acme/plugin-facade/internal/server"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "bench:", err)
		stop()
		os.Exit(1)
	}
}

type options struct {
	bin        string
	duration   time.Duration
	warmup     time.Duration
	out        string
	micro      string
	cpuProfile string
	memProfile string
	profConc   int
	trace      string
	compare    string
	memory     bool
	inFlight   int
	watchers   int
	versions   int
	logLevel   string
	latency    time.Duration
	tls        bool
	conc       []int
	enforce    bool
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	var o options
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.StringVar(&o.bin, "bin", "", "directory holding the server, sandbox and passproxy binaries (required)")
	fs.DurationVar(&o.duration, "duration", 5*time.Second, "measured time of each cell")
	fs.DurationVar(&o.warmup, "warmup", time.Second, "unmeasured load before each cell")
	fs.StringVar(&o.out, "out", "", "Markdown file to write the report to (default: none)")
	fs.StringVar(&o.micro, "micro", "./internal/upstream/ ./internal/service/", "packages whose Go benchmarks to run after the load, separated by spaces (empty: none)")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write CPU profiles of the facade (default configuration) during the gRPC and gateway cells at -profile-concurrency to this file prefix (PREFIX-gRPC.pprof, PREFIX-gateway.pprof)")
	fs.StringVar(&o.memProfile, "memprofile", "", "as -cpuprofile, but allocation profiles (go tool pprof -sample_index=alloc_space), and PREFIX-watchers.pprof, the heap with the watchers open, and PREFIX-watchers-goroutines.txt, their goroutines; not with -cpuprofile")
	fs.IntVar(&o.profConc, "profile-concurrency", 32, "the concurrency whose cells -cpuprofile and -memprofile profile")
	fs.StringVar(&o.trace, "trace", "", "write execution traces (go tool trace) of the facade during the gRPC and gateway cells at concurrency 1 to this file prefix (PREFIX-gRPC.trace, PREFIX-gateway.trace)")
	fs.StringVar(&o.logLevel, "log-level", "", "the headline facade's --log-level (default: none, so its default, info: a log line per call); the log-off rows always run with warn")
	fs.StringVar(&o.compare, "compare", "", "another server binary (such as one built from main) to measure beside the facade, in the same configuration, in rows of its own (gRPC, baseline; gateway, baseline)")
	fs.BoolVar(&o.memory, "memory", true, "measure the facade's RSS with calls in flight and with many watchers")
	fs.IntVar(&o.inFlight, "inflight", 1000, "calls in flight at the first RSS reading (the second has twice as many)")
	fs.IntVar(&o.watchers, "watchers", 10000, "watch-calls open at the watchers' RSS reading")
	fs.IntVar(&o.versions, "watch-versions", 100, "distinct versions the watchers watch")
	fs.DurationVar(&o.latency, "upstream-latency", 0, "hold each of the sandbox's answers back this long (the realistic run: 40ms)")
	fs.BoolVar(&o.tls, "upstream-tls", false, "serve the sandbox over HTTPS and HTTP/2 (the realistic run)")
	fs.BoolVar(&o.enforce, "enforce-targets", true, "fail when a measured target is missed (the report is written first)")
	concurrency := fs.String("concurrency", "", "comma-separated concurrencies to measure (default 1,32,256,1024; with -upstream-latency also 200, where the realistic run is judged)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *concurrency == "" {
		*concurrency = "1,32,256,1024"
		if o.latency > 0 {
			*concurrency = "1,32,200,256,1024"
		}
	}
	if o.cpuProfile != "" && o.memProfile != "" {
		return errors.New("-cpuprofile and -memprofile profile the same cells: give one")
	}
	if o.bin == "" {
		return errors.New("-bin is required")
	}
	for _, c := range strings.Split(*concurrency, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(c))
		if err != nil || n < 1 {
			return fmt.Errorf("-concurrency: %q is not a positive number", c)
		}
		o.conc = append(o.conc, n)
	}

	machine := bench.ThisMachine()
	cells, err := measure(ctx, o, stdout)
	if err != nil {
		return err
	}
	var mem bench.Memory
	if o.memory {
		if mem, err = measureMemory(ctx, o, stdout); err != nil {
			return fmt.Errorf("memory: %w", err)
		}
	}
	ts := bench.Targets(cells, mem, o.latency > 0)
	table, targets, memTable := bench.Table(cells), bench.TargetsTable(ts), bench.MemoryTable(mem)
	fmt.Fprintf(stdout, "\n%s\n%s\n%s\n", table, memTable, targets)

	var micro string
	if o.micro != "" {
		fmt.Fprintln(stdout, "go test -run '^$' -bench . -benchmem", o.micro)
		cmd := exec.CommandContext(ctx, "go", append([]string{"test", "-run", "^$", "-bench", ".", "-benchmem", "-count", "1"}, strings.Fields(o.micro)...)...)
		var buf bytes.Buffer
		cmd.Stdout, cmd.Stderr = io.MultiWriter(&buf, stdout), io.MultiWriter(&buf, os.Stderr)
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("microbenchmarks: %w", err)
		}
		micro = buf.String()
	}

	var failed []string
	for _, c := range cells {
		if c.Errors > 0 {
			failed = append(failed, fmt.Sprintf("%s c=%d: %d errors, first: %v", c.Path, c.Concurrency, c.Errors, c.FirstErr))
		}
	}
	if o.out != "" {
		doc := render(o, machine, table, memTable, targets, micro) + keptSection(o.out)
		if err := os.WriteFile(o.out, []byte(doc), 0o644); err != nil {
			return err
		}
		fmt.Fprintln(stdout, "wrote", o.out)
	}
	if len(failed) > 0 {
		return errors.New("calls failed; the figures are not valid:\n  " + strings.Join(failed, "\n  "))
	}
	if missed := bench.Missed(ts); len(missed) > 0 && o.enforce {
		var names []string
		for _, t := range missed {
			names = append(names, fmt.Sprintf("%s: %.2f", t.Name, t.Got))
		}
		return errors.New("targets missed (-enforce-targets=false to only report them):\n  " + strings.Join(names, "\n  "))
	}
	return nil
}

// measure starts the stack and runs every cell.
func measure(ctx context.Context, o options, log io.Writer) (cells []bench.Cell, err error) {
	st, err := bench.StartStack(bench.BinariesIn(o.bin), bench.StackOptions{Proxy: true, LogLevel: o.logLevel,
		FacadeArgs: o.bounds(), UpstreamLatency: o.latency, UpstreamTLS: o.tls})
	if err != nil {
		return nil, err
	}
	defer func() {
		if stopErr := st.Stop(); stopErr != nil && err == nil {
			err = stopErr
		}
	}()
	// The same facade with its call log off, for the rows beside the
	// headline ones.
	quiet, err := bench.StartFacade(bench.BinariesIn(o.bin), st.SandboxURL, bench.StackOptions{LogLevel: "warn", FacadeArgs: o.bounds()}, st.Env...)
	if err != nil {
		return nil, err
	}
	defer func() {
		if stopErr := quiet.Stop(); stopErr != nil && err == nil {
			err = stopErr
		}
	}()

	// One transport for the HTTP paths, with an idle connection for every
	// worker at the highest concurrency, as the facade's own upstream client
	// has one for each of its calls.
	idle := max(slices.Max(o.conc), 64)
	transport := &http.Transport{MaxIdleConns: idle, MaxIdleConnsPerHost: idle, IdleConnTimeout: 90 * time.Second, ForceAttemptHTTP2: true}
	if st.CertFile != "" {
		pem, err := os.ReadFile(st.CertFile)
		if err != nil {
			return nil, err
		}
		roots := x509.NewCertPool()
		roots.AppendCertsFromPEM(pem)
		transport.TLSClientConfig = &tls.Config{RootCAs: roots}
	}
	defer transport.CloseIdleConnections()
	httpClient := &http.Client{Transport: transport, Timeout: 30 * time.Second}
	// One gRPC connection (one HTTP/2 connection, multiplexed) for the
	// health checks; the calls get one per 100 workers (spread), as a client
	// holds when the facade's default stream bound,
	// server.DefaultMaxConcurrentStreams, would otherwise queue them.
	conn, err := grpc.NewClient(st.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	maxConc := slices.Max(o.conc)
	clients, closeClients, err := dialMany(st.GRPCAddr, maxConc)
	if err != nil {
		return nil, err
	}
	defer closeClients()
	quietClients, closeQuiet, err := dialMany(quiet.GRPCAddr, maxConc)
	if err != nil {
		return nil, err
	}
	defer closeQuiet()

	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte(sandbox.APIKey+":"+sandbox.APISecret))
	paths := []path{
		{bench.PathDirect, fixed(bench.HTTPCall(httpClient, st.SandboxURL, basic)), nil},
		{bench.PathProxy, fixed(bench.HTTPCall(httpClient, st.ProxyURL, basic)), st.Proxy},
		{bench.PathGRPC, spread(clients, identity), st.Facade},
		{bench.PathGRPCQuiet, spread(quietClients, identity), quiet.Process},
		// No Authorization: the facade sends its own key, as over gRPC.
		{bench.PathGateway, fixed(bench.HTTPCall(httpClient, st.HTTPURL, "")), st.Facade},
		{bench.PathGatewayQuiet, fixed(bench.HTTPCall(httpClient, quiet.HTTPURL, "")), quiet.Process},
		{bench.PathHealth, fixed(bench.HealthCall(healthpb.NewHealthClient(conn))), st.Facade},
	}
	if o.compare != "" {
		bin := bench.BinariesIn(o.bin)
		bin.Server = o.compare
		base, err := bench.StartFacade(bin, st.SandboxURL, bench.StackOptions{LogLevel: o.logLevel, FacadeArgs: o.bounds()}, st.Env...)
		if err != nil {
			return nil, fmt.Errorf("-compare: %w", err)
		}
		defer base.Stop()
		baseClients, closeBase, err := dialMany(base.GRPCAddr, maxConc)
		if err != nil {
			return nil, err
		}
		defer closeBase()
		// Each right after the row it is compared with.
		paths = slices.Insert(paths, 3, path{bench.PathGRPC + ", baseline", spread(baseClients, identity), base.Process})
		paths = slices.Insert(paths, 6, path{bench.PathGateway + ", baseline", fixed(bench.HTTPCall(httpClient, base.HTTPURL, "")), base.Process})
	}
	redisPaths, stopRedis, err := startRedisFacades(o, st, log)
	if err != nil {
		return nil, err
	}
	defer stopRedis()
	// Right after the plain gRPC cells, so that what each pair measures
	// differs as little as possible in the machine's other load.
	paths = slices.Insert(paths, 4, redisPaths...)

	var next atomic.Uint64
	for _, conc := range o.conc {
		for _, p := range paths {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			call := p.call(conc)
			bench.Run(ctx, conc, o.warmup, &next, call)
			var profile chan error
			facade := p.name == bench.PathGRPC || p.name == bench.PathGateway
			switch {
			case o.cpuProfile != "" && facade && conc == o.profConc:
				profile = make(chan error, 1)
				file := o.cpuProfile + "-" + p.name + ".pprof"
				go func() { profile <- saveProfile(ctx, st.DebugURL, "profile", o.duration, file) }()
			case o.memProfile != "" && facade && conc == o.profConc:
				// An allocation profile over the cell: allocs?seconds= is
				// the difference between two snapshots.
				profile = make(chan error, 1)
				file := o.memProfile + "-" + p.name + ".pprof"
				go func() { profile <- saveProfile(ctx, st.DebugURL, "allocs", o.duration, file) }()
			case o.trace != "" && facade && conc == 1:
				profile = make(chan error, 1)
				file := o.trace + "-" + p.name + ".trace"
				go func() { profile <- saveProfile(ctx, st.DebugURL, "trace", time.Second, file) }()
			}
			before := p.cpu(st.Sandbox)
			r := bench.Run(ctx, conc, o.duration, &next, call)
			after := p.cpu(st.Sandbox)
			if profile != nil {
				if err := <-profile; err != nil {
					return nil, fmt.Errorf("profile: %w", err)
				}
			}
			cell := bench.Cell{Path: p.name, Concurrency: conc, Result: r,
				ClientCPU: after.client - before.client, SandboxCPU: after.sandbox - before.sandbox, HopCPU: after.hop - before.hop}
			fmt.Fprintf(log, "%-22s c=%-4d %8.0f req/s  p50 %8.3f ms  p99 %8.3f ms  CPU/call: hop %4.0f µs, sandbox %4.0f µs, load %4.0f µs  (%d calls, %d errors)\n",
				p.name, conc, r.Throughput(), ms(r.P50), ms(r.P99), us(cell.HopCPU, r), us(cell.SandboxCPU, r), us(cell.ClientCPU, r), r.Calls, r.Errors)
			cells = append(cells, cell)
		}
	}
	for _, f := range []*bench.Process{st.Facade, quiet.Process} {
		if exited, werr := f.Exited(); exited {
			return nil, fmt.Errorf("a facade exited during the benchmark: %v\n%s", werr, f.Stderr())
		}
	}
	if n := quiet.StderrBytes(); n > 64<<10 {
		return nil, fmt.Errorf("the facade started with --log-level warn wrote %d bytes on stderr: its rows measured a log after all\n%s", n, quiet.Stderr())
	}
	if n := st.Facade.StderrBytes(); n < int64(len(cells)) {
		return nil, fmt.Errorf("the facade in its default configuration wrote only %d bytes on stderr: its rows did not measure the call log", n)
	}
	return cells, nil
}

func us(d time.Duration, r bench.Result) float64 {
	n := r.Calls - r.Errors
	if n <= 0 {
		return 0
	}
	return float64(d) / float64(n) / float64(time.Microsecond)
}

// cpuTimes are the CPU times used so far by the processes a cell measures.
type cpuTimes struct{ client, sandbox, hop time.Duration }

// cpu reads the CPU time so far of this process, sandbox and p's hop.
func (p path) cpu(sandbox *bench.Process) cpuTimes {
	t := cpuTimes{client: bench.SelfCPU()}
	t.sandbox, _ = bench.ProcCPU(sandbox.Pid())
	if p.hop != nil {
		t.hop, _ = bench.ProcCPU(p.hop.Pid())
	}
	return t
}

// bounds are the flags every facade of the cells gets beyond its defaults:
// an in-flight bound the highest concurrency does not reach (the default,
// server.DefaultMaxInFlight, refuses calls past 256 per listener), so that
// the cells measure what each call costs rather than how fast a refusal is.
func (o options) bounds() []string {
	return []string{"--max-in-flight", strconv.Itoa(max(server.DefaultMaxInFlight, 2*slices.Max(o.conc)))}
}

// path is a way of making the benchmark's calls, and the process between
// the load generator and the sandbox that serves them: the proxy or a facade
// (nil for direct).
type path struct {
	name string
	call func(concurrency int) bench.Call
	hop  *bench.Process
}

// fixed is a path's call whatever the concurrency.
func fixed(c bench.Call) func(int) bench.Call { return func(int) bench.Call { return c } }

// spread is a path's gRPC call at a concurrency: the n-th request, for
// resource ids(n), on connection n mod k, where k is how many connections
// of perConn streams that concurrency needs.
func spread(clients []pluginv1.PluginServiceClient, ids func(uint64) uint64) func(int) bench.Call {
	return func(concurrency int) bench.Call {
		k := min(len(clients), (concurrency+perConn-1)/perConn)
		calls := make([]bench.Call, k)
		for i := range calls {
			calls[i] = bench.GRPCCall(clients[i])
		}
		return func(ctx context.Context, n uint64) error { return calls[n%uint64(k)](ctx, ids(n)) }
	}
}

func identity(n uint64) uint64 { return n }

// hitIDs is how many distinct resources the cache-hit cells read: after the
// warm-up, every call is a hit.
const hitIDs = 64

// startRedisFacades starts redis-server and two more facades in front of
// sandboxURL sharing their state through it: one with the cache off, to
// measure what sharing costs each call (the guard), and one with the cache on
// whose local copy keeps one entry, so that its hits are read from Redis. When
// redis-server is not installed it says so and measures nothing.
func startRedisFacades(o options, st *bench.Stack, log io.Writer) (paths []path, stop func(), err error) {
	var stops []func()
	stop = func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}
	defer func() {
		if err != nil {
			stop()
		}
	}()
	dir, err := os.MkdirTemp("", "bench-redis-")
	if err != nil {
		return nil, stop, err
	}
	stops = append(stops, func() { os.RemoveAll(dir) })
	redis, err := fleettest.Launch(dir, fleettest.Options{})
	if errors.Is(err, exec.ErrNotFound) {
		fmt.Fprintln(log, "redis-server is not installed (apt-get install redis-server): not measuring the facade with --redis-url")
		return nil, stop, nil
	}
	if err != nil {
		return nil, stop, err
	}
	stops = append(stops, redis.Stop)
	for _, f := range []struct {
		name string
		args []string
		ids  func(uint64) uint64
	}{
		{bench.PathGRPCRedis, []string{"--redis-url", redis.URL()}, func(n uint64) uint64 { return n }},
		{bench.PathGRPCRedisHits, []string{"--redis-url", redis.URL(), "--cache-ttl", "1h", "--cache-max-entries", "1"},
			func(n uint64) uint64 { return n % hitIDs }},
	} {
		facade, err := bench.StartFacade(bench.BinariesIn(o.bin), st.SandboxURL, bench.StackOptions{LogLevel: o.logLevel, FacadeArgs: append(o.bounds(), f.args...)}, st.Env...)
		if err != nil {
			return nil, stop, err
		}
		stops = append(stops, func() { _ = facade.Stop() })
		clients, closeClients, err := dialMany(facade.GRPCAddr, slices.Max(o.conc))
		if err != nil {
			return nil, stop, err
		}
		stops = append(stops, closeClients)
		paths = append(paths, path{f.name, spread(clients, f.ids), facade.Process})
	}
	return paths, stop, nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// saveProfile fetches a profile of kind ("profile" for CPU, "trace" for an
// execution trace, "allocs" or "heap") over d (0: at once, for the heap)
// from the facade's pprof endpoint.
func saveProfile(ctx context.Context, debugURL, kind string, d time.Duration, file string) error {
	u := debugURL + "/debug/pprof/" + kind
	if d > 0 {
		u += fmt.Sprintf("?seconds=%d", max(int(d/time.Second), 1))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	return os.WriteFile(file, b, 0o644)
}

func render(o options, m bench.Machine, table, memTable, targets, micro string) string {
	var b strings.Builder
	level := "its default, `info`"
	if o.logLevel != "" {
		level = "`--log-level " + o.logLevel + "`"
	}
	fmt.Fprintf(&b, `# Benchmarks

Generated by `+"`%s`"+` (internal/bench/cmd/bench); do not edit by hand. Reproduce with:

`+"```sh\n%s\n```"+`

| | |
|---|---|
| CPU | %s |
| cores | %d |
| Go | %s |
| OS | %s |
| load average at start (1, 5, 15 min) | %s |
| date | %s |
| commit | %s |

## What is measured

Every process runs on this one machine, over loopback, each in a process of its own,
sharing the cores with the load generator:

- **direct**: HTTP GETs from the load generator to the sandbox (`+"`cmd/sandbox --rate-limit 0 --synthetic-ids%s`"+`);
- **proxy**: the same GETs through `+"`internal/bench/passproxy`"+`, a bare `+"`httputil.ReverseProxy`"+`: the
  cost of one extra hop with no translation, the floor any facade is judged against;
- **gRPC**: the same reads through the facade in its default configuration (`+"`cmd/server --upstream-url <sandbox>`"+`,
  the sandbox's key in `+"`CONFLUENT_CLOUD_API_KEY`/`_SECRET`"+`; log level %s: one JSON call log line per call,
  on stderr, which goes to a file) over gRPC;
- **gateway**: the same paths through that facade's REST gateway, which calls the service in process through the
  same interceptors as gRPC calls;
- **gRPC, log off** and **gateway, log off**: the same through a second facade started with `+"`--log-level warn`"+`,
  which writes no call log line (nor does the proxy);
- **gRPC, Redis**: gRPC through another facade started with `+"`--redis-url`"+` (a local `+"`redis-server`"+`, cache
  off): the rate-limit guard is shared, and answers from its local copy, so each call costs what sharing adds;
- **gRPC, Redis cache hits**: gRPC through a third facade with `+"`--redis-url --cache-ttl 1h --cache-max-entries 1`"+`,
  reading %d resources over and over: after the warm-up every call is a cache hit, read from Redis (the replica's
  local copy keeps one entry), against the upstream call of the **gRPC** row;
- **gRPC health**: a `+"`grpc.health.v1`"+` Check on the same gRPC connection: a bare gRPC round trip to the facade
  that never reaches the upstream, the floor under any gRPC call on this machine.

Except in the cache-hit rows, each request reads a resource no other request reads (`+"`ccp-load-<n>`"+`, `+"`ver-load-<n>`"+`: half connector
plugins, half plugin versions), so no cache or request coalescing can serve one from another. Each cell is
%v of closed-loop load (each worker sends its next request when the last is answered) after %v of
unmeasured warm-up. The HTTP paths share one `+"`http.Transport`"+` keeping an idle connection per worker.
Every facade runs with `+"`%s`"+` beyond its defaults, so that no cell measures a refusal. The gRPC calls
go over one client connection per 100 workers (one up to concurrency 100, 11 at 1,024; request n on
connection n mod k), the facade's default bound of 100 streams per connection, so that no cell measures
the client queueing at that bound; the health checks go over one.
Throughput counts successful calls per second; p50 and p99 are nearest-rank latencies of every call.

**CPU per call** is the CPU time (user and system, from `+"`/proc/<pid>/stat`"+` in 10 ms ticks, and `+"`getrusage`"+` for
the load generator) each process used during the cell, divided by its successful calls: the load generator, the
sandbox, and the process between them (the proxy, or the facade the row goes through). **facade ÷ proxy** divides
the facade's by the proxy's at the same concurrency: unlike throughput, it hardly moves with what else the
machine's cores are doing, since it counts only the work each process does. Redis's own CPU is not counted.

## Results

%s
## Memory

The facade's resident set (`+"`VmRSS`"+`), each on a facade of its own in the same configuration: calls held
in flight by a sandbox that answers after more than a minute (in flight as the facade's own
`+"`grpc_server_started_total - grpc_server_handled_total`"+` counts them), and watch-calls on versions that stay
`+"`PROCESSING`"+` (`+"`ver-pending-<n>`"+`), each past its first answer, over connections of %d streams; these
facades' in-flight and watcher bounds (`+"`--max-in-flight`, `--max-watchers`, `--max-watchers-per-caller`"+`) are raised
above what is measured.

%s
## Targets (issues 12 and 18)

%s`, o.command(), o.command(), m.CPU, m.Cores, m.Go, m.OS, m.LoadAvg, m.Date, m.Commit, upstreamArgs(o), level, hitIDs, o.duration, o.warmup, strings.Join(o.bounds(), " "), table, 100, memTable, targets)
	if micro != "" {
		fmt.Fprintf(&b, "\n## Microbenchmarks\n\n`go test -run '^$' -bench . -benchmem %s`:\n\n```\n%s```\n", o.micro, micro)
	}
	return b.String()
}

// command is the make target that runs these options.
func (o options) command() string {
	if o.latency > 0 {
		return "make bench-realistic"
	}
	return "make bench"
}

// upstreamArgs are the sandbox's flags for the realistic run, as the report
// shows them.
func upstreamArgs(o options) string {
	var s string
	if o.latency > 0 {
		s += " --latency " + o.latency.String()
	}
	if o.tls {
		s += " --tls-cert-out <file>"
	}
	return s
}

// keptMarker starts the part of a report that people write (what the figures
// justify, measured by hand): a new report keeps it as it was.
const keptMarker = "<!-- Written by hand below this line; make bench keeps it. -->"

// keptSection returns the hand-written part of the report at path, from
// keptMarker on, or "" when it has none.
func keptSection(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	if i := strings.Index(string(b), keptMarker); i >= 0 {
		return "\n" + string(b[i:])
	}
	return ""
}
