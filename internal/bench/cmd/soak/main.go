// Command soak is `make soak`: a bounded run (about a minute, loopback only)
// of gRPC calls at high concurrency against the facade in front of a sandbox
// that answers a few percent of requests with injected faults (resets, HTML
// 502s, empty 500s, malformed and oversized bodies, 429s, 503s). It reports the
// calls, the answers by gRPC code, the facade's peak RSS and its goroutines
// before and after, and fails if an answer is malformed (see
// bench.CheckAnswer), the facade crashes, or its goroutines or memory keep
// growing (bench.GoroutinesGrew, bench.MemoryGrew).
//
//	go build -o /tmp/b ./cmd/server ./cmd/sandbox ./internal/bench/passproxy ./internal/bench/cmd/soak
//	/tmp/b/soak -bin /tmp/b
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	pluginv1 "github.com/acme/plugin-facade/gen/go/confluent/plugin/v1"
	"github.com/acme/plugin-facade/internal/bench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "soak:", err)
		stop()
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, out io.Writer) (err error) {
	fs := flag.NewFlagSet("soak", flag.ContinueOnError)
	bin := fs.String("bin", "", "directory holding the server and sandbox binaries (required)")
	duration := fs.Duration("duration", 50*time.Second, "measured load, after the warm-up")
	warmup := fs.Duration("warmup", 10*time.Second, "load at the same concurrency before the goroutines are first counted")
	concurrency := fs.Int("concurrency", 64, "concurrent callers")
	faultRate := fs.Float64("fault-rate", 0.03, "fraction of upstream requests the sandbox answers with a fault")
	seed := fs.Uint64("seed", 1, "seed of the sandbox's fault draws")
	callTimeout := fs.Duration("call-timeout", 10*time.Second, "deadline of each call")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *bin == "" {
		return errors.New("-bin is required")
	}

	// The sandbox's injected 429s are drawn at random, not the end of a real
	// rate-limit window: with the rate-limit guard on, each would (rightly)
	// hold back every call with the one credential the soak uses for a
	// second, and the soak would measure the guard instead of the upstream
	// path. The callers' fair share learns the key's window from those 429s
	// too: --caller-share 1 lets the soak's one caller spend all of it, not a
	// fifth; past it the facade refuses, as it should, since the upstream
	// said so. Both have tests of their own.
	st, err := bench.StartStack(bench.BinariesIn(*bin), bench.StackOptions{FaultRate: *faultRate, FaultSeed: *seed,
		LogLevel: "warn", FacadeArgs: []string{"--rate-limit-guard=false", "--caller-share", "1"}})
	if err != nil {
		return err
	}
	defer func() {
		if stopErr := st.Stop(); stopErr != nil && err == nil {
			err = fmt.Errorf("the facade did not stop cleanly: %w", stopErr)
		}
	}()
	conn, err := grpc.NewClient(st.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	client := pluginv1.NewPluginServiceClient(conn)

	var next atomic.Uint64
	fmt.Fprintf(out, "soak: concurrency %d, fault rate %g (seed %d), rate-limit guard off, warm-up %v, then %v\n", *concurrency, *faultRate, *seed, *warmup, *duration)
	var warm bench.Tally
	bench.Run(ctx, *concurrency, *warmup, &next, bench.SoakCall(client, &warm, *callTimeout))
	time.Sleep(time.Second) // let calls settle so the count is of an idle process
	before, err := bench.Goroutines(ctx, st.DebugURL)
	if err != nil {
		return err
	}

	// Sample the RSS once a second while the load runs.
	var (
		samples []int64
		mu      sync.Mutex
	)
	sampleCtx, stopSampling := context.WithCancel(ctx)
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-sampleCtx.Done():
				return
			case <-tick.C:
				if rss, _, err := st.Facade.Memory(); err == nil {
					mu.Lock()
					samples = append(samples, rss)
					mu.Unlock()
				}
			}
		}
	}()
	var tally bench.Tally
	r := bench.Run(ctx, *concurrency, *duration, &next, bench.SoakCall(client, &tally, *callTimeout))
	stopSampling()
	<-sampled

	var problems []error
	if exited, werr := st.Facade.Exited(); exited {
		return fmt.Errorf("the facade crashed: %v\n%s", werr, st.Facade.Stderr())
	}
	if err := bench.WaitOK(st.Facade, st.HTTPURL+"/healthz", 5*time.Second); err != nil {
		problems = append(problems, fmt.Errorf("the facade is not healthy after the soak: %w", err))
	}
	// Idle connections and retries in flight settle within seconds; a leak
	// does not.
	var after int
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		if after, err = bench.Goroutines(ctx, st.DebugURL); err != nil {
			return err
		}
		if !bench.GoroutinesGrew(before, after) || time.Now().After(deadline) {
			break
		}
	}
	rss, peak, err := st.Facade.Memory()
	if err != nil {
		return err
	}

	malformed, examples := tally.Malformed()
	fmt.Fprintf(out, "requests:    %d in %v (%.0f/s), p50 %v, p99 %v\n", r.Calls, r.Elapsed.Round(time.Millisecond),
		float64(r.Calls)/r.Elapsed.Seconds(), r.P50.Round(time.Microsecond), r.P99.Round(time.Microsecond))
	fmt.Fprintf(out, "by code:     %s\n", tally.String())
	fmt.Fprintf(out, "malformed:   %d\n", malformed)
	fmt.Fprintf(out, "goroutines:  %d before, %d after (tolerance: before + before/2 + 20)\n", before, after)
	fmt.Fprintf(out, "facade RSS:  peak %.1f MiB (VmHWM), now %.1f MiB; first-third max %.1f MiB, last-third max %.1f MiB (%d samples)\n",
		mib(peak), mib(rss), mib(maxOfThird(samples, false)), mib(maxOfThird(samples, true)), len(samples))

	if malformed > 0 {
		problems = append(problems, fmt.Errorf("%d malformed answers, such as: %v", malformed, examples))
	}
	if tally.Count(0) == 0 {
		problems = append(problems, errors.New("no call succeeded"))
	}
	if bench.GoroutinesGrew(before, after) {
		problems = append(problems, fmt.Errorf("goroutines grew from %d to %d", before, after))
	}
	if bench.MemoryGrew(samples) {
		problems = append(problems, errors.New("the facade's memory kept growing"))
	}
	if len(problems) > 0 {
		return errors.Join(problems...)
	}
	fmt.Fprintln(out, "soak: PASS")
	return nil
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

func maxOfThird(samples []int64, last bool) int64 {
	third := len(samples) / 3
	if third == 0 {
		return 0
	}
	part := samples[:third]
	if last {
		part = samples[len(samples)-third:]
	}
	return slices.Max(part)
}
