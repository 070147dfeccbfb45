// Command sandbox serves the simulated Confluent Cloud (internal/sandbox) as a
// process of its own, for load and soak tests that must not share a process,
// a heap or a scheduler with what they measure, and for trying any client
// against it. It prints its base URL as the first line on stdout, then serves
// until SIGINT or SIGTERM.
//
//	sandbox --addr 127.0.0.1:0 --rate-limit 0 --synthetic-ids --fault-rate 0.03 --fault-seed 1
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/acme/plugin-facade/internal/sandbox"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "sandbox:", err)
		stop()
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("sandbox", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:0", "listen address")
	rateLimit := fs.Int("rate-limit", 1000, "requests per minute across all clients; 0 disables the limit and the X-RateLimit-* headers")
	synthetic := fs.Bool("synthetic-ids", false, "serve ccp-load-<n> and ver-load-<n> as copies of the seeded plugin and version")
	faultRate := fs.Float64("fault-rate", 0, "fraction (0 to 1) of requests answered with a fault (every kind but the slow ones)")
	faultSeed := fs.Uint64("fault-seed", 1, "seed of the fault draws")
	if err := fs.Parse(args); err != nil {
		return err
	}
	opts := []sandbox.Option{sandbox.WithRateLimit(*rateLimit, time.Minute)}
	if *synthetic {
		opts = append(opts, sandbox.WithSyntheticIDs())
	}
	if *faultRate > 0 {
		opts = append(opts, sandbox.WithFaultRate(*faultRate, *faultSeed))
	}

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:                      sandbox.New(opts...),
		ReadHeaderTimeout:            10 * time.Second,
		DisableGeneralOptionsHandler: true,
	}
	fmt.Fprintf(stdout, "http://%s\n", ln.Addr())
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
