package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	pluginv1 "github.com/acme/plugin-facade/gen/go/confluent/plugin/v1"
	"github.com/acme/plugin-facade/internal/bench"
	"github.com/acme/plugin-facade/internal/sandbox"
	"github.com/acme/plugin-facade/internal/server"
)

// memoryWait bounds each wait of the memory measurements (calls to get in
// flight, watchers to get their first answer).
const memoryWait = time.Minute

// measureMemory reads the facade's RSS, each time on a facade of its own in
// its default configuration: with o.inFlight and then twice as many calls
// held in flight by a sandbox that answers after a minute, and with
// o.watchers watch-calls open on o.versions versions that never become
// ready.
func measureMemory(ctx context.Context, o options, log io.Writer) (m bench.Memory, err error) {
	bin := bench.BinariesIn(o.bin)
	if o.inFlight > 0 {
		sb, err := bench.StartSandbox(bin, bench.StackOptions{UpstreamLatency: memoryWait + 30*time.Second, UpstreamTLS: o.tls})
		if err != nil {
			return m, err
		}
		err = inFlight(ctx, o, bin, sb, &m, log)
		if stopErr := sb.Stop(); err == nil && stopErr != nil {
			err = stopErr
		}
		if err != nil {
			return m, err
		}
	}
	if o.watchers > 0 {
		sb, err := bench.StartSandbox(bin, bench.StackOptions{UpstreamLatency: o.latency, UpstreamTLS: o.tls})
		if err != nil {
			return m, err
		}
		err = watchers(ctx, o, bin, sb, &m, log)
		if stopErr := sb.Stop(); err == nil && stopErr != nil {
			err = stopErr
		}
	}
	return m, err
}

// inFlight holds o.inFlight calls in flight, then twice as many, and reads
// the facade's RSS before and at each step.
func inFlight(ctx context.Context, o options, bin bench.Binaries, sb *bench.Sandbox, m *bench.Memory, log io.Writer) (err error) {
	// Its in-flight bound above what is measured; the calls spread over
	// connections of perConn streams, the default stream bound.
	f, err := bench.StartFacade(bin, sb.URL, bench.StackOptions{LogLevel: o.logLevel,
		FacadeArgs: []string{"--max-in-flight", strconv.Itoa(4 * o.inFlight)}}, sb.Env...)
	if err != nil {
		return err
	}
	defer func() {
		if stopErr := f.Stop(); err == nil && stopErr != nil {
			err = stopErr
		}
	}()
	clients, closeAll, err := dialMany(f.GRPCAddr, 2*o.inFlight)
	if err != nil {
		return err
	}
	defer closeAll()
	if m.IdleRSS, _, err = f.Memory(); err != nil {
		return err
	}

	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	var next atomic.Uint64
	started := 0
	start := func(n int) {
		for range n {
			call := bench.GRPCCall(clients[started/perConn])
			started++
			wg.Go(func() { _ = call(ctx, next.Add(1)) })
		}
	}
	m.InFlight = o.inFlight
	start(o.inFlight)
	if _, err := waitInFlight(ctx, f.HTTPURL, o.inFlight); err != nil {
		return err
	}
	if m.InFlightRSS, _, err = f.Memory(); err != nil {
		return err
	}
	start(o.inFlight)
	if m.Reached, err = waitInFlight(ctx, f.HTTPURL, 2*o.inFlight); err != nil {
		fmt.Fprintf(log, "in flight: %v; measuring the %d calls in flight\n", err, m.Reached)
	}
	if m.TwiceRSS, _, err = f.Memory(); err != nil {
		return err
	}
	fmt.Fprintf(log, "RSS: idle %.1f MiB, %d calls in flight %.1f MiB, %d calls in flight %.1f MiB\n",
		mib(m.IdleRSS), m.InFlight, mib(m.InFlightRSS), m.Reached, mib(m.TwiceRSS))
	return nil
}

// waitInFlight polls the facade's metrics until want unary calls are in
// flight (started and not yet handled), and returns how many were at the
// last poll.
func waitInFlight(ctx context.Context, httpURL string, want int) (int, error) {
	deadline := time.Now().Add(memoryWait)
	n := 0
	for {
		var err error
		if n, err = unaryInFlight(ctx, httpURL); err != nil {
			return n, err
		}
		if n >= want {
			return n, nil
		}
		if time.Now().After(deadline) {
			return n, fmt.Errorf("%d of %d calls in flight after %v", n, want, memoryWait)
		}
		select {
		case <-ctx.Done():
			return n, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// unaryInFlight reads the facade's /metrics: grpc_server_started_total minus
// grpc_server_handled_total over its unary methods.
func unaryInFlight(ctx context.Context, httpURL string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, httpURL+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET /metrics: HTTP %d", resp.StatusCode)
	}
	var started, handled float64
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.Contains(line, `grpc_type="unary"`) {
			continue
		}
		var sum *float64
		switch {
		case strings.HasPrefix(line, "grpc_server_started_total{"):
			sum = &started
		case strings.HasPrefix(line, "grpc_server_handled_total{"):
			sum = &handled
		default:
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			return 0, fmt.Errorf("/metrics: %q: %w", line, err)
		}
		*sum += v
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return int(started - handled), nil
}

// watchers opens o.watchers watch-calls spread over o.versions versions,
// waits until each has its first answer, and reads the facade's RSS.
func watchers(ctx context.Context, o options, bin bench.Binaries, sb *bench.Sandbox, m *bench.Memory, log io.Writer) (err error) {
	// Its watcher bounds above what is measured (the defaults allow 512, 64
	// per caller, and every watcher here is one caller).
	n := strconv.Itoa(o.watchers)
	f, err := bench.StartFacade(bin, sb.URL, bench.StackOptions{LogLevel: o.logLevel,
		FacadeArgs: []string{"--max-watchers", n, "--max-watchers-per-caller", n}}, sb.Env...)
	if err != nil {
		return err
	}
	defer func() {
		if stopErr := f.Stop(); err == nil && stopErr != nil {
			err = stopErr
		}
	}()
	if m.WatchersIdleRSS, _, err = f.Memory(); err != nil {
		return err
	}
	clients, closeAll, err := dialMany(f.GRPCAddr, o.watchers)
	if err != nil {
		return err
	}
	defer closeAll()

	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	var (
		answered atomic.Int64
		mu       sync.Mutex
		firstErr error
	)
	all := make(chan struct{})
	for i := range o.watchers {
		wg.Go(func() {
			stream, err := clients[i/perConn].WatchPluginVersion(ctx, &pluginv1.WatchPluginVersionRequest{
				PluginId:    sandbox.SyntheticPluginPrefix + "0",
				Id:          sandbox.SyntheticPendingVersionPrefix + strconv.Itoa(i%o.versions),
				Environment: sandbox.Environment,
			})
			if err == nil {
				_, err = stream.Recv()
			}
			if err != nil {
				if ctx.Err() == nil {
					mu.Lock()
					firstErr = firstOf(firstErr, err)
					mu.Unlock()
					cancel()
				}
				return
			}
			if answered.Add(1) == int64(o.watchers) {
				close(all)
			}
			// Held open until the measurement is over.
			for {
				if _, err := stream.Recv(); err != nil {
					return
				}
			}
		})
	}
	select {
	case <-all:
	case <-ctx.Done():
		mu.Lock()
		defer mu.Unlock()
		return errors.Join(fmt.Errorf("watchers: %d of %d answered", answered.Load(), o.watchers), firstErr, ctx.Err())
	case <-time.After(memoryWait):
		return fmt.Errorf("watchers: %d of %d answered within %v", answered.Load(), o.watchers, memoryWait)
	}
	m.Watchers, m.Versions = o.watchers, o.versions
	if m.WatchersRSS, _, err = f.Memory(); err != nil {
		return err
	}
	fmt.Fprintf(log, "RSS: idle %.1f MiB, %d watchers on %d versions %.1f MiB\n", mib(m.WatchersIdleRSS), m.Watchers, m.Versions, mib(m.WatchersRSS))
	if rt, err := goRuntime(ctx, f.HTTPURL); err == nil {
		fmt.Fprintf(log, "watchers: %s\n", rt)
	}
	if o.memProfile != "" {
		// What holds the memory: the heap in use with the watchers open.
		if err := saveProfile(ctx, f.DebugURL, "heap?gc=1", 0, o.memProfile+"-watchers.pprof"); err != nil {
			return fmt.Errorf("heap profile: %w", err)
		}
		// And what their goroutines are blocked in, each stack once with its count.
		if err := saveProfile(ctx, f.DebugURL, "goroutine?debug=1", 0, o.memProfile+"-watchers-goroutines.txt"); err != nil {
			return fmt.Errorf("goroutine profile: %w", err)
		}
	}
	return nil
}

// perConn is how many streams the memory measurements open on one gRPC
// connection: the facade's default stream bound (server.DefaultMaxConcurrentStreams),
// past which a connection would queue them.
const perConn = server.DefaultMaxConcurrentStreams

// dialMany returns clients on enough connections to addr for n streams at
// perConn each, and a function that closes them.
func dialMany(addr string, n int) (clients []pluginv1.PluginServiceClient, closeAll func(), err error) {
	var conns []*grpc.ClientConn
	closeAll = func() {
		for _, c := range conns {
			c.Close()
		}
	}
	for range (n + perConn - 1) / perConn {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		conns = append(conns, conn)
		clients = append(clients, pluginv1.NewPluginServiceClient(conn))
	}
	return clients, closeAll, nil
}

// goRuntime reads, from the facade's /metrics, where its memory goes: its
// goroutines, their stacks and its heap in use.
func goRuntime(ctx context.Context, httpURL string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, httpURL+"/metrics", nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	want := map[string]float64{"go_goroutines": 0, "go_memstats_stack_inuse_bytes": 0, "go_memstats_heap_inuse_bytes": 0}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if _, w := want[name]; ok && w {
			want[name], _ = strconv.ParseFloat(value, 64)
		}
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	g, stacks := want["go_goroutines"], want["go_memstats_stack_inuse_bytes"]
	return fmt.Sprintf("%.0f goroutines, stacks %.1f MiB (%.1f KiB each), heap in use %.1f MiB",
		g, stacks/(1<<20), stacks/max(g, 1)/1024, want["go_memstats_heap_inuse_bytes"]/(1<<20)), nil
}

// firstOf keeps the first error.
func firstOf(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }
