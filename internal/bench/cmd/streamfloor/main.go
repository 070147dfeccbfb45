// Command streamfloor measures what grpc-go itself costs per open server
// stream, the floor under the facade's RSS with many watchers: a bare grpc-go
// server (no interceptors, no stats handler, GOGC as the facade's) in a child
// process, whose handler sends one message and then waits, as a watch does;
// the parent opens -streams streams on connections of 100 and prints the
// child's RSS, goroutines, stacks and heap idle and with them all open.
//
//	go run ./internal/bench/cmd/streamfloor [-offload=false]
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strconv"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/acme/plugin-facade/internal/bench"
)

// perConn is the facade's default stream bound per connection.
const perConn = 100

func main() {
	serve := flag.Bool("serve", false, "be the server (the child)")
	offload := flag.Bool("offload", true, "send from a goroutine of its own, as the facade's watches do (false: from the handler's)")
	gogc := flag.Int("gogc", 400, "the server's GOGC (the facade's default)")
	streams := flag.Int("streams", 10000, "streams to open")
	flag.Parse()
	if *serve {
		if err := server(*offload, *gogc); err != nil {
			log.Fatal(err)
		}
		return
	}
	if err := measure(*offload, *gogc, *streams); err != nil {
		log.Fatal(err)
	}
}

// watcher is a health service whose Watch sends SERVING once and waits for
// the caller to leave.
type watcher struct {
	healthpb.UnimplementedHealthServer
	offload bool
}

func (w watcher) Watch(_ *healthpb.HealthCheckRequest, stream grpc.ServerStreamingServer[healthpb.HealthCheckResponse]) error {
	msg := &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}
	if w.offload {
		sent := make(chan error, 1)
		go func() { sent <- stream.Send(msg) }()
		if err := <-sent; err != nil {
			return err
		}
	} else if err := stream.Send(msg); err != nil {
		return err
	}
	<-stream.Context().Done()
	return nil
}

// server serves on a loopback port, which it prints, and prints its memory
// at each line it reads.
func server(offload bool, gogc int) error {
	debug.SetGCPercent(gogc)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := grpc.NewServer(grpc.MaxConcurrentStreams(perConn))
	healthpb.RegisterHealthServer(srv, watcher{offload: offload})
	go func() { _ = srv.Serve(lis) }()
	fmt.Println(lis.Addr())
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		rss, _, err := bench.ProcMemory(os.Getpid())
		if err != nil {
			return err
		}
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		fmt.Printf("RSS %.1f MiB, %d goroutines, stacks %.1f MiB, heap in use %.1f MiB\n",
			float64(rss)/(1<<20), runtime.NumGoroutine(), float64(m.StackInuse)/(1<<20), float64(m.HeapInuse)/(1<<20))
	}
	return in.Err()
}

// measure starts the server, opens n streams, each until it has its message,
// and prints the server's memory before and with them open.
func measure(offload bool, gogc, n int) error {
	cmd := exec.Command(os.Args[0], "-serve", "-offload="+strconv.FormatBool(offload), "-gogc="+strconv.Itoa(gogc))
	in, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	outPipe, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() { in.Close(); _ = cmd.Wait() }()
	out := bufio.NewScanner(outPipe)
	if !out.Scan() {
		return fmt.Errorf("the server printed no address: %v", out.Err())
	}
	addr := out.Text()
	report := func(what string) error {
		fmt.Fprintln(in)
		if !out.Scan() {
			return fmt.Errorf("the server ended: %v", out.Err())
		}
		fmt.Printf("%s: %s\n", what, out.Text())
		return nil
	}
	if err := report("idle"); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var clients []healthpb.HealthClient
	for range (n + perConn - 1) / perConn {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return err
		}
		defer conn.Close()
		clients = append(clients, healthpb.NewHealthClient(conn))
	}
	var (
		answered, held sync.WaitGroup
		mu             sync.Mutex
		firstErr       error
	)
	for i := range n {
		answered.Add(1)
		held.Go(func() {
			stream, err := clients[i/perConn].Watch(ctx, &healthpb.HealthCheckRequest{})
			if err == nil {
				_, err = stream.Recv()
			}
			if err != nil {
				mu.Lock()
				firstErr = firstOf(firstErr, err)
				mu.Unlock()
			}
			answered.Done()
			if err == nil {
				_, _ = stream.Recv() // held open until the measurement is over
			}
		})
	}
	answered.Wait()
	if firstErr != nil {
		return firstErr
	}
	err = report(fmt.Sprintf("%d streams open", n))
	cancel()
	held.Wait()
	return err
}

func firstOf(first, err error) error {
	if first != nil {
		return first
	}
	return err
}
