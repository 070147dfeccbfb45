// Command attack replays issue 16's attacks against a built facade binary on
// loopback (see package attack) and prints the figures of docs/hardening.md
// as Markdown:
//
//	go build -o /tmp/pf ./cmd/server && go run ./internal/attack/cmd/attack -facade /tmp/pf
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	pluginv1 "github.com/acme/plugin-facade/gen/go/confluent/plugin/v1"
	"github.com/acme/plugin-facade/internal/attack"
	"github.com/acme/plugin-facade/internal/bench"
	"github.com/acme/plugin-facade/internal/sandbox"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "attack:", err)
		os.Exit(1)
	}
}

type options struct {
	facade   string
	rate     int
	duration time.Duration
	baseline time.Duration
	watchers int
	slow     int
	showLog  bool
	crowd    []string
}

func run() error {
	var o options
	flag.StringVar(&o.facade, "facade", "", "the facade binary (go build -o /tmp/pf ./cmd/server)")
	flag.IntVar(&o.rate, "rate", 5000, "reset streams per second")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "length of each rapid reset (at most 30s)")
	flag.DurationVar(&o.baseline, "baseline", 3*time.Second, "legitimate calls measured before each attack")
	flag.IntVar(&o.watchers, "watchers", 5000, "never-read watch streams to open (at most 10000)")
	flag.IntVar(&o.slow, "slow-bodies", 2000, "connections declaring a body they never send (at most 4000)")
	flag.BoolVar(&o.showLog, "show-log", false, "print the end of the facade's log after each rapid reset")
	crowdArgs := flag.String("crowd-args", "", "more flags of the facade for the slow-body and watcher attacks, space-separated")
	flag.Parse()
	o.crowd = strings.Fields(*crowdArgs)
	if o.facade == "" {
		return errors.New("-facade is required")
	}
	o.duration = min(o.duration, 30*time.Second)
	o.watchers, o.slow = min(o.watchers, 10000), min(o.slow, 4000)

	up, err := attack.StartUpstream()
	if err != nil {
		return err
	}
	defer up.Close()
	dir, err := os.MkdirTemp("", "attack-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	cert, key, err := attack.SelfSignedCert(dir)
	if err != nil {
		return err
	}
	fmt.Printf("| attack | figure |\n|---|---|\n")
	for _, sc := range []struct {
		name   string
		tls    bool
		target attack.Target
	}{{"rapid reset, gRPC port (plaintext)", false, attack.GRPC}, {"rapid reset, HTTPS REST port", true, attack.REST}} {
		if err := resetScenario(o, up, sc.name, sc.tls, sc.target, cert, key); err != nil {
			return fmt.Errorf("%s: %w", sc.name, err)
		}
	}
	return crowdScenarios(o, up)
}

// facade starts the binary in front of up, over TLS when cert is set.
func facade(o options, up *attack.Upstream, cert, key string, extra ...string) (p *bench.Process, grpcAddr, httpURL string, err error) {
	if grpcAddr, err = bench.FreeAddr(); err != nil {
		return
	}
	httpAddr, err := bench.FreeAddr()
	if err != nil {
		return
	}
	args := append([]string{"--grpc-addr", grpcAddr, "--http-addr", httpAddr, "--upstream-url", up.URL}, extra...)
	httpURL = "http://" + httpAddr
	if cert != "" {
		args = append(args, "--tls-cert", cert, "--tls-key", key)
		httpURL = "https://" + httpAddr
	}
	p, err = bench.StartProcess("facade", o.facade, args,
		"CONFLUENT_CLOUD_API_KEY="+sandbox.APIKey, "CONFLUENT_CLOUD_API_SECRET="+sandbox.APISecret)
	if err != nil {
		return
	}
	for deadline := time.Now().Add(15 * time.Second); ; {
		resp, gerr := insecureClient().Get(httpURL + "/readyz")
		if gerr == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return p, grpcAddr, httpURL, nil
			}
		}
		if exited, _ := p.Exited(); exited || time.Now().After(deadline) {
			log := p.Stderr()
			_ = p.Stop()
			return nil, "", "", fmt.Errorf("the facade was not ready within 15s: %v\n%s", gerr, log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func insecureClient() *http.Client {
	// Loopback only, against the certificate this tool made.
	return &http.Client{Transport: &http.Transport{ForceAttemptHTTP2: true,
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec
}

func resetScenario(o options, up *attack.Upstream, name string, useTLS bool, target attack.Target, cert, key string) error {
	if !useTLS {
		cert, key = "", ""
	}
	p, grpcAddr, httpURL, err := facade(o, up, cert, key)
	if err != nil {
		return err
	}
	defer p.Stop()
	var legit func(context.Context) error
	addr := grpcAddr
	switch target {
	case attack.GRPC:
		conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return err
		}
		defer conn.Close()
		c := pluginv1.NewPluginServiceClient(conn)
		legit = func(ctx context.Context) error {
			_, err := c.GetConnectorPlugin(ctx, &pluginv1.GetConnectorPluginRequest{Id: sandbox.PluginID})
			return err
		}
	case attack.REST:
		addr = strings.TrimPrefix(httpURL, "https://")
		hc := insecureClient()
		legit = func(ctx context.Context) error {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, httpURL+"/connect/v1/custom-connector-plugins/"+sandbox.PluginID, nil)
			resp, err := hc.Do(req)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			_, _ = io.Copy(io.Discard, resp.Body)
			if resp.StatusCode != 200 {
				return fmt.Errorf("HTTP %d", resp.StatusCode)
			}
			return nil
		}
	}
	bctx, cancel := context.WithTimeout(context.Background(), o.baseline)
	before := attack.Legit(bctx, legit)
	cancel()
	_, peakBefore, _ := p.Memory()

	attackedBefore := up.Attacked()
	actx, stop := context.WithCancel(context.Background())
	during := make(chan attack.Latencies, 1)
	go func() { during <- attack.Legit(actx, legit) }()
	res, err := attack.RapidReset(actx, addr, useTLS, target, o.rate, o.duration)
	time.Sleep(time.Second) // let calls started by the last streams end
	stop()
	if err != nil {
		return err
	}
	d := <-during
	rss, peak, _ := p.Memory()
	calls := up.Attacked() - attackedBefore
	// The log of the attack alone, without the legitimate calls' lines.
	logBefore := p.StderrBytes()
	alone, err := attack.RapidReset(context.Background(), addr, useTLS, target, o.rate, 3*time.Second)
	if err != nil {
		return err
	}
	time.Sleep(time.Second)
	logBytes := p.StderrBytes() - logBefore
	fmt.Printf("| %s: %d reset streams over %v on %d connections | **%d upstream calls** (%.4f per reset stream) |\n",
		name, res.Streams, o.duration, res.Connections, calls, float64(calls)/float64(max(res.Streams, 1)))
	fmt.Printf("| %s: legitimate p50 | %v before, %v during (x%.2f); failures %d of %d during |\n", name,
		before.P50().Round(10*time.Microsecond), d.P50().Round(10*time.Microsecond),
		float64(d.P50())/float64(max(before.P50(), 1)), d.Failures, len(d.Calls))
	fmt.Printf("| %s: facade RSS | peak %.1f MiB (%.1f MiB before the attack), %.1f MiB after |\n", name,
		mib(peak), mib(peakBefore), mib(rss))
	fmt.Printf("| %s: log of %d reset streams in 3s, no other traffic | %.1f KiB (%.1f bytes per reset stream) |\n",
		name, alone.Streams, float64(logBytes)/1024, float64(logBytes)/float64(max(alone.Streams, 1)))
	if o.showLog {
		fmt.Fprintln(os.Stderr, p.Stderr())
	}
	return nil
}

func crowdScenarios(o options, up *attack.Upstream) error {
	p, grpcAddr, httpURL, err := facade(o, up, "", "", o.crowd...)
	if err != nil {
		return err
	}
	defer p.Stop()
	rss0, _, _ := p.Memory()
	w, err := attack.OpenWatchers(grpcAddr, o.watchers, 90)
	if err != nil {
		return err
	}
	accepted, refused := w.Count()
	rss1, peak, _ := p.Memory()
	w.Close()
	time.Sleep(2 * time.Second)
	rss2, _, _ := p.Memory()
	fmt.Printf("| %d never-read watch streams (90 per connection) | %d accepted, %d refused RESOURCE_EXHAUSTED; RSS %.1f MiB before, %.1f MiB open (peak %.1f), %.1f MiB 2s after they left |\n",
		o.watchers, accepted, refused, mib(rss0), mib(rss1), mib(peak), mib(rss2))
	all := up.All()
	open, err := attack.SlowBodies(strings.TrimPrefix(httpURL, "http://"), o.slow, 3*time.Second)
	if err != nil {
		return err
	}
	fmt.Printf("| %d HTTP/1.1 GETs declaring `Content-Length: 100000`, no body | %d connections still open after 3s; %d upstream calls |\n",
		o.slow, open, up.All()-all)

	return nil
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }
