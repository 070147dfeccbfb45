// Command server runs plugin-facade: PluginService over gRPC, and the same API
// as REST/JSON through grpc-gateway, in front of Confluent Cloud (or, with
// --sandbox, in front of a built-in simulation of it).
//
// main only wires things together: configuration is parsed once (config.go),
// every piece is built by its own package, and run returns an error instead of
// exiting so that only main decides the exit code.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"syscall"
	"time"

	pluginfacade "github.com/acme/plugin-facade"
	"github.com/acme/plugin-facade/internal/caller"
	"github.com/acme/plugin-facade/internal/fleet"
	"github.com/acme/plugin-facade/internal/sandbox"
	"github.com/acme/plugin-facade/internal/server"
	"github.com/acme/plugin-facade/internal/service"
	"github.com/acme/plugin-facade/internal/telemetry"
	"github.com/acme/plugin-facade/internal/upstream"
)

// version is set at link time (-ldflags "-X main.version=1.2.3"); otherwise it
// is read from the module's build information.
var version = ""

// defaultGCPercent is the garbage collector's target when GOGC is not set.
// The facade's live heap is a few MiB while every call allocates a few KiB, so
// at Go's default of 100 it collects every few thousand calls. 400 trades a
// few more MiB of heap for less collecting (docs/benchmarks.md has the
// figures); GOGC and GOMEMLIMIT still decide when set.
const defaultGCPercent = 400

func main() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(defaultGCPercent)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	if code := exitCode(err); code != 0 {
		fmt.Fprintln(os.Stderr, "plugin-facade:", err)
		stop()
		os.Exit(code)
	}
}

// configError is a configuration the process refuses to start with.
type configError struct{ err error }

func (e configError) Error() string { return e.err.Error() }
func (e configError) Unwrap() error { return e.err }

// exitCode is the process's exit status for what run returned: 0 after a clean
// shutdown or --help, 2 for an invalid configuration (as flag parsing errors
// conventionally are), 1 when serving failed.
func exitCode(err error) int {
	var ce configError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ce):
		return 2
	default:
		return 1
	}
}

// run starts the facade and serves until ctx ends.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, err := parseConfig(args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return err
	}
	if err != nil {
		return configError{err}
	}
	if cfg.Version {
		printVersion(stdout)
		return nil
	}
	log := newLogger(cfg, stderr)

	tp, err := telemetry.NewTracerProvider(ctx, buildVersion(), getenv)
	if err != nil {
		return configError{err} // an OTEL_* variable with a value autoexport does not know
	}
	defer func() {
		// Flush the spans still batched, within a bound of its own: ctx has ended.
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := tp.Shutdown(sctx); err != nil {
			log.Warn("flushing traces", "error", err.Error())
		}
	}()
	registry := telemetry.NewRegistry()
	upstreamMetrics := telemetry.NewUpstreamMetrics(registry)

	upstreamURL, creds := cfg.UpstreamURL, cfg.Credentials
	if cfg.Sandbox {
		sb, err := sandbox.Start()
		if err != nil {
			return fmt.Errorf("starting the sandbox: %w", err)
		}
		defer sb.Close()
		if !creds.IsZero() {
			log.Warn("sandbox mode: ignoring " + envAPIKey + "; using the sandbox's own key")
		}
		upstreamURL, creds = sb.URL(), upstream.BasicAuth(sandbox.APIKey, sandbox.APISecret)
	}

	callerOpts := []caller.Option{
		caller.WithServiceKey(creds),
		caller.WithShare(cfg.CallerShare),
		caller.WithTrustedProxies(cfg.TrustedProxies),
		caller.WithPolicy(cfg.CallerPolicy),
		caller.WithLogger(log),
		caller.WithRegisterer(registry),
	}
	if cfg.OIDCIssuer != "" {
		o, err := caller.NewOIDC(ctx, cfg.OIDCIssuer, cfg.OIDCAudience, nil)
		if err != nil {
			return fmt.Errorf("--oidc-issuer: %w", err)
		}
		callerOpts = append(callerOpts, caller.WithOIDC(o))
	}

	clientOpts := []upstream.Option{
		upstream.WithUserAgent("plugin-facade/" + buildVersion()),
		upstream.WithInsecure(cfg.UpstreamInsecure),
		upstream.WithRetry(upstream.RetryPolicy{MaxAttempts: cfg.UpstreamMaxAttempts, MaxWait: cfg.UpstreamMaxWait}),
		upstream.WithMaxBodyBytes(cfg.UpstreamMaxBody),
		upstream.WithRateLimitGuard(cfg.RateLimitGuard),
		upstream.WithCache(cfg.CacheTTL, cfg.CacheMaxEntries),
		upstream.WithHooks(upstreamMetrics.Hooks()),
	}
	svcOpts := []service.Option{
		service.WithDefaultCredentials(creds),
		service.WithUpstreamTimeout(cfg.UpstreamTimeout),
		service.WithLogger(log),
	}
	srvOpts := []server.Option{
		server.WithLogger(log),
		server.WithOpenAPI(pluginfacade.OpenAPI()),
		server.WithShutdownTimeout(cfg.ShutdownTimeout),
		server.WithRegistry(registry),
		server.WithTracerProvider(tp),
	}
	if cfg.RedisURL != "" {
		// The replicas of a fleet share the guard's windows, the cache and
		// the watches' polling through Redis; while it does not answer, each
		// runs on its local state.
		fl, err := fleet.Open(cfg.RedisURL, fleet.Options{Timeout: cfg.RedisTimeout, Logger: log, Registerer: registry})
		if err != nil {
			return configError{fmt.Errorf("--redis-url: %w", err)}
		}
		defer fl.Close()
		if cfg.RateLimitGuard {
			clientOpts = append(clientOpts, upstream.WithGuardStore(fl.Guard(upstream.NewMemoryGuardStore())))
		}
		if cfg.CacheTTL > 0 {
			clientOpts = append(clientOpts, upstream.WithCacheStore(fl.Cache(cfg.CacheMaxEntries)))
		}
		svcOpts = append(svcOpts, service.WithWatchRelay(fl.Watches()))
		callerOpts = append(callerOpts, caller.WithSharedBudgets(fl.Budgets()))
		srvOpts = append(srvOpts, server.WithReadyDetail("fleet", fl.Status))
	}

	callers, err := caller.New(callerOpts...)
	if err != nil {
		return err
	}
	srvOpts = append(srvOpts, server.WithCallers(callers))
	if cfg.CallerPolicyFile != "" {
		stopWatch := watchPolicy(ctx, callers, cfg)
		defer stopWatch()
	}
	// The caller guard learns the service key's window from its answers.
	traced := telemetry.Transport(tp)
	clientOpts = append(clientOpts, upstream.WithTransport(func(rt http.RoundTripper) http.RoundTripper {
		return callers.Transport(traced(rt))
	}))

	client, err := upstream.New(upstreamURL, clientOpts...)
	if err != nil {
		return err
	}
	svc := service.New(client, svcOpts...)

	grpcLis, err := net.Listen("tcp", cfg.GRPCAddr)
	if err != nil {
		return fmt.Errorf("--grpc-addr: %w", err)
	}
	httpLis, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		grpcLis.Close()
		return fmt.Errorf("--http-addr: %w", err)
	}
	log.Info("starting plugin-facade", "version", buildVersion(), "upstream", upstreamURL,
		"sandbox", cfg.Sandbox, "default_credentials", creds, "tls", cfg.TLS != nil,
		"mutual_tls", cfg.TLS != nil && cfg.TLS.ClientCAs != nil, "redis", fleet.Redacted(cfg.RedisURL),
		"caller_policy", cfg.CallerPolicyFile, "oidc_issuer", cfg.OIDCIssuer, "caller_share", cfg.CallerShare)
	if cfg.Sandbox {
		printSandboxHelp(stdout, upstreamURL, grpcLis.Addr(), httpLis.Addr(), cfg.TLS != nil)
	}

	if cfg.DebugAddr != "" {
		stopDebug, err := serveDebug(cfg.DebugAddr, log)
		if err != nil {
			grpcLis.Close()
			httpLis.Close()
			return err
		}
		defer stopDebug()
	}

	if cfg.TLS != nil {
		srvOpts = append(srvOpts, server.WithTLS(cfg.TLS))
	}
	defer client.Close()
	srv, err := server.New(svc, srvOpts...)
	if err != nil {
		grpcLis.Close()
		httpLis.Close()
		return err
	}
	if err := srv.Serve(ctx, grpcLis, httpLis); err != nil {
		return err
	}
	log.Info("stopped")
	return nil
}

// watchPolicy reloads the caller policy on SIGHUP and when its file changes,
// until ctx ends or the returned function is called.
func watchPolicy(ctx context.Context, g *caller.Guard, cfg config) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		defer close(done)
		g.WatchPolicy(ctx, cfg.CallerPolicyFile, cfg.CallerPolicyCheck, hup)
	}()
	return func() {
		signal.Stop(hup)
		cancel()
		<-done
	}
}

func newLogger(cfg config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	if cfg.LogFormat == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// printVersion prints the build information: version, Go version, and the
// commit the binary was built from when the build recorded it.
func printVersion(w io.Writer) {
	fmt.Fprintf(w, "plugin-facade %s\ngo: %s\n", buildVersion(), runtime.Version())
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision", "vcs.time", "vcs.modified", "GOOS", "GOARCH":
			fmt.Fprintf(w, "%s: %s\n", s.Key, s.Value)
		}
	}
}

func buildVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

// printSandboxHelp prints commands a new user can paste to try the running
// sandbox (at sandboxURL), with the addresses actually listened on.
func printSandboxHelp(w io.Writer, sandboxURL string, grpcAddr, httpAddr net.Addr, withTLS bool) {
	g, h := server.LoopbackAddr(grpcAddr), server.LoopbackAddr(httpAddr)
	if withTLS {
		fmt.Fprintf(w, "\nplugin-facade is running against the built-in sandbox over TLS, on gRPC %s and HTTPS %s.\n\n", g, h)
		return
	}
	fmt.Fprintf(w, `
plugin-facade is running against the built-in sandbox (a simulated Confluent Cloud).
Try it (grpcurl: 'make tools' installs a pinned one as ./bin/grpcurl):

  grpcurl -plaintext %[1]s list
  grpcurl -plaintext -d '{"plugin_id":"%[3]s","id":"%[4]s","environment":"%[5]s"}' %[1]s confluent.plugin.v1.PluginService/GetPluginVersion
  grpcurl -plaintext -d '{"id":"%[3]s"}' %[1]s confluent.plugin.v1.PluginService/GetConnectorPlugin

  curl -s 'http://%[2]s/ccpm/v1/plugins/%[3]s/versions/%[4]s?environment=%[5]s'
  curl -s http://%[2]s/connect/v1/custom-connector-plugins/%[3]s
  curl -s http://%[2]s/connect/v1/custom-connector-plugins/%[6]s        # values the facade does not know yet, passed on
  curl -s http://%[2]s/connect/v1/custom-connector-plugins/ccp-00000    # 404: the upstream's Failure envelope
  curl -s -H 'Authorization: Bearer %[7]s' http://%[2]s/connect/v1/custom-connector-plugins/%[3]s   # your own credential, forwarded
  curl -s http://%[2]s/openapi.json

The REST gateway speaks Confluent Cloud's own JSON: the sandbox directly and the
facade answer the same (point your Confluent client at http://%[2]s):

  curl -s -H 'Authorization: Bearer %[7]s' %[10]s/connect/v1/custom-connector-plugins/%[3]s
  curl -s -H 'Authorization: Bearer %[7]s' http://%[2]s/connect/v1/custom-connector-plugins/%[3]s

Watch a version become READY (%[8]s processes for a few seconds after its first read;
%[9]s ends FAILED):

  grpcurl -plaintext -d '{"plugin_id":"%[3]s","id":"%[8]s","environment":"%[5]s"}' %[1]s confluent.plugin.v1.PluginService/WatchPluginVersion
  curl -sN 'http://%[2]s/ccpm/v1/plugins/%[3]s/versions/%[8]s:watch?environment=%[5]s'

Stop with Ctrl-C.

`, g, h, sandbox.PluginID, sandbox.VersionID, sandbox.Environment, sandbox.UnknownEnumsPluginID, sandbox.BearerToken,
		sandbox.ProcessingVersionID, sandbox.FailingVersionID, sandboxURL)
}
