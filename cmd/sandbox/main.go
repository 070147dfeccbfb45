// Command sandbox serves the simulated Confluent Cloud (internal/sandbox) as a
// process of its own, for load and soak tests that must not share a process,
// a heap or a scheduler with what they measure, and for trying any client
// against it. It prints its base URL as the first line on stdout, then serves
// until SIGINT or SIGTERM.
//
//	sandbox --addr 127.0.0.1:0 --rate-limit 0 --synthetic-ids --fault-rate 0.03 --fault-seed 1
//	sandbox --rate-limit 0 --synthetic-ids --latency 40ms --tls-cert-out /tmp/sandbox.pem   # as far away as Confluent Cloud, over TLS and HTTP/2
package main

import (
	"context"
	"crypto/tls"
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
	latency := fs.Duration("latency", 0, "wait this long before answering each request, as a distant upstream would")
	certOut := fs.String("tls-cert-out", "", "serve HTTPS (HTTP/2 and HTTP/1.1) with a certificate made at start-up for 127.0.0.1, written as PEM to this file for clients to trust")
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
	var handler http.Handler = sandbox.New(opts...)
	if *latency > 0 {
		next := handler
		handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-time.After(*latency):
				next.ServeHTTP(w, r)
			case <-r.Context().Done():
			}
		})
	}
	srv := &http.Server{
		Handler:                      handler,
		ReadHeaderTimeout:            10 * time.Second,
		ReadTimeout:                  10 * time.Second, // the whole request, body included
		DisableGeneralOptionsHandler: true,
	}
	scheme := "http"
	if *certOut != "" {
		cert, err := selfSigned(*certOut)
		if err != nil {
			return err
		}
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}}
		ln, scheme = tls.NewListener(ln, srv.TLSConfig), "https"
	}
	fmt.Fprintf(stdout, "%s://%s\n", scheme, ln.Addr())
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// selfSigned makes the sandbox's loopback certificate (sandbox.LoopbackCert)
// and writes it as PEM to certFile for clients to trust.
func selfSigned(certFile string) (tls.Certificate, error) {
	certPEM, keyPEM, err := sandbox.LoopbackCert()
	if err != nil {
		return tls.Certificate{}, err
	}
	if err := os.WriteFile(certFile, certPEM, 0o644); err != nil {
		return tls.Certificate{}, err
	}
	return tls.X509KeyPair(certPEM, keyPEM)
}
