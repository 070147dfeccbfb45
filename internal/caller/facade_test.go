package caller_test

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	pluginv1 "github.com/acme/plugin-facade/gen/go/confluent/plugin/v1"
	"github.com/acme/plugin-facade/internal/caller"
	"github.com/acme/plugin-facade/internal/sandbox"
	"github.com/acme/plugin-facade/internal/server"
	"github.com/acme/plugin-facade/internal/service"
	"github.com/acme/plugin-facade/internal/testutil"
	"github.com/acme/plugin-facade/internal/upstream"
)

// sandboxKey is the facade's own key in these tests: the sandbox's.
var sandboxKey = upstream.BasicAuth(sandbox.APIKey, sandbox.APISecret)

// facade is the whole facade (upstream client, service, server with the
// caller guard) on loopback listeners in front of a sandbox.
type facade struct {
	grpcAddr, httpAddr string
	guard              *caller.Guard
	upstream           *statusCount // what the sandbox answered this facade
	log                *testutil.Buffer
	registry           *prometheus.Registry
}

// statusCount counts the upstream's answers by HTTP status.
type statusCount struct {
	next http.RoundTripper
	mu   sync.Mutex
	n    map[int]int
}

func (c *statusCount) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := c.next.RoundTrip(r)
	if err == nil {
		c.mu.Lock()
		c.n[resp.StatusCode]++
		c.mu.Unlock()
	}
	return resp, err
}

func (c *statusCount) count(status int) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[status]
}

// startFacade starts a facade in front of sb with the sandbox's key, tlsCfg
// (nil: plaintext) and the guard's opts.
func startFacade(t testing.TB, sb *sandbox.Server, tlsCfg *tls.Config, opts ...caller.Option) *facade {
	t.Helper()
	return startFacadeGuarded(t, sb, tlsCfg, true, opts...)
}

// startFacadeGuarded is startFacade, without the caller guard unless guarded
// (the baseline of BenchmarkGuard).
func startFacadeGuarded(t testing.TB, sb *sandbox.Server, tlsCfg *tls.Config, guarded bool, opts ...caller.Option) *facade {
	t.Helper()
	return startFacadeWith(t, sb, tlsCfg, guarded, nil, nil, opts...)
}

// startFacadeWith is startFacadeGuarded with more server and upstream client
// options.
func startFacadeWith(t testing.TB, sb *sandbox.Server, tlsCfg *tls.Config, guarded bool, srvExtra []server.Option, upExtra []upstream.Option, opts ...caller.Option) *facade {
	t.Helper()
	f := &facade{log: &testutil.Buffer{}, registry: prometheus.NewRegistry()}
	log := slog.New(slog.NewJSONHandler(f.log, nil))
	g, err := caller.New(append([]caller.Option{caller.WithServiceKey(sandboxKey), caller.WithLogger(log),
		caller.WithRegisterer(f.registry)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	f.guard = g
	uc, err := upstream.New(sb.URL(), append(upExtra, upstream.WithTransport(func(rt http.RoundTripper) http.RoundTripper {
		if guarded {
			rt = g.Transport(rt)
		}
		f.upstream = &statusCount{next: rt, n: map[int]int{}}
		return f.upstream
	}))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(uc.Close)
	svc := service.New(uc, service.WithDefaultCredentials(sandboxKey))
	srvOpts := []server.Option{server.WithLogger(log), server.WithRegistry(f.registry),
		server.WithShutdownTimeout(5 * time.Second)}
	if guarded {
		srvOpts = append(srvOpts, server.WithCallers(g))
	}
	srvOpts = append(srvOpts, srvExtra...)
	if tlsCfg != nil {
		srvOpts = append(srvOpts, server.WithTLS(tlsCfg))
	}
	srv, err := server.New(svc, srvOpts...)
	if err != nil {
		t.Fatal(err)
	}
	grpcLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	httpLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.grpcAddr, f.httpAddr = grpcLis.Addr().String(), httpLis.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, grpcLis, httpLis) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Error("Serve did not return within 20s of shutdown")
		}
	})
	return f
}

// dialer dials from the loopback address from ("": the system's choice), so
// that a test can be several callers told apart by their peer address.
func dialer(from string) *net.Dialer {
	d := &net.Dialer{Timeout: 5 * time.Second}
	if from != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(from)}
	}
	return d
}

// grpcClient is a PluginService client of addr, dialing from the loopback
// address from, over TLS with tlsCfg when it is not nil.
func grpcClient(t testing.TB, addr, from string, tlsCfg *tls.Config) pluginv1.PluginServiceClient {
	return pluginv1.NewPluginServiceClient(grpcConn(t, addr, from, tlsCfg))
}

func grpcConn(t testing.TB, addr, from string, tlsCfg *tls.Config) *grpc.ClientConn {
	t.Helper()
	creds := insecure.NewCredentials()
	if tlsCfg != nil {
		creds = credentials.NewTLS(tlsCfg)
	}
	d := dialer(from)
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(creds),
		grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) { return d.DialContext(ctx, "tcp", a) }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// httpClient is an HTTP client dialing from the loopback address from.
func httpClient(from string, tlsCfg *tls.Config) *http.Client {
	d := dialer(from)
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: d.DialContext, TLSClientConfig: tlsCfg}}
}

// mtls returns the server's and a client's TLS configurations for mutual
// TLS with ca, the client presenting a certificate named name.
func clientTLS(t testing.TB, ca *testutil.CA, name string) *tls.Config {
	return &tls.Config{RootCAs: ca.Pool, Certificates: []tls.Certificate{ca.Issue(t, name)}, ServerName: "127.0.0.1"}
}

func serverTLS(t testing.TB, ca *testutil.CA) *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{ca.Issue(t, "facade")}, ClientCAs: ca.Pool,
		ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12}
}
