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
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

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
	err := run(ctx, os.Args[1:], os.Environ(), os.Stdout, os.Stderr)
	if code := exitCode(err); code != 0 {
		for line := range strings.Lines(err.Error()) {
			fmt.Fprint(os.Stderr, "plugin-facade: ", line)
		}
		fmt.Fprintln(os.Stderr)
		if code == 2 {
			fmt.Fprintln(os.Stderr, seeHelp)
		}
		stop()
		os.Exit(code)
	}
}

// configError is a configuration the process refuses to start with.
type configError struct{ err error }

func (e configError) Error() string { return e.err.Error() }
func (e configError) Unwrap() error { return e.err }

// exitCode is the process's exit status for what run returned: 0 after a clean
// shutdown (SIGINT and SIGTERM included), help or version, 2 for an invalid
// configuration (as flag parsing errors conventionally are), 1 when starting
// or serving failed.
func exitCode(err error) int {
	var ce configError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ce):
		return 2
	default:
		return 1
	}
}

// run starts the facade and serves until ctx ends. environ is the process's
// environment as os.Environ gives it.
func run(ctx context.Context, args, environ []string, stdout, stderr io.Writer) error {
	cfg, err := parseConfig(args, environ)
	if err != nil {
		return err
	}
	switch cfg.Command {
	case "help":
		printUsage(stdout)
		return nil
	case "version":
		printVersion(stdout)
		return nil
	}
	log := newLogger(cfg, stderr)
	for _, w := range cfg.Warnings {
		log.Warn(w)
	}
	env := envMap(environ)
	tp, err := telemetry.NewTracerProvider(ctx, buildVersion(), func(k string) string { return env[k] })
	if err != nil {
		return configError{err} // an OTEL_* variable with a value autoexport does not know
	}
	defer flushTraces(ctx, tp, log)

	var closers closers
	defer closers.close()
	app, err := build(cfg, log, tp, &closers)
	if err != nil {
		return err
	}
	grpcLis, httpLis, err := listen(cfg, &closers)
	if err != nil {
		return err
	}
	log.Info("starting plugin-facade", "version", buildVersion(), "upstream", app.upstreamURL,
		"sandbox", cfg.Sandbox, "default_credentials", app.creds, "tls", cfg.TLS != nil,
		"mutual_tls", cfg.TLS != nil && cfg.TLS.ClientCAs != nil, "redis", fleet.Redacted(cfg.Fleet.URL),
		"caller_policy", cfg.Callers.PolicyFile, "oidc_issuer", cfg.Callers.OIDCIssuer, "caller_share", cfg.Callers.Share)
	if cfg.Sandbox {
		printSandboxHelp(stdout, app.upstreamURL, grpcLis.Addr(), httpLis.Addr(), cfg.TLS != nil)
	}
	if cfg.DebugAddr != "" {
		stopDebug, err := serveDebug(cfg.DebugAddr, log)
		if err != nil {
			return err
		}
		closers.add(stopDebug)
	}
	if cfg.Callers.PolicyFile != "" {
		closers.add(watchPolicy(ctx, app.callers, cfg.Callers))
	}
	checked := make(chan struct{})
	go func() { defer close(checked); app.checkCredential(ctx, cfg.Service.UpstreamTimeout, log) }()
	closers.add(func() { <-checked }) // ctx has ended: the check returns at once
	if err := app.srv.Serve(ctx, grpcLis, httpLis); err != nil {
		return err
	}
	log.Info("stopped")
	return nil
}

// closers are what run started, closed in reverse order when it returns.
type closers []func()

func (c *closers) add(f func()) { *c = append(*c, f) }

func (c *closers) close() {
	for i := len(*c) - 1; i >= 0; i-- {
		(*c)[i]()
	}
}

// flushTraces flushes the spans still batched, within a bound of its own: ctx
// has ended by then.
func flushTraces(ctx context.Context, tp *telemetry.TracerProvider, log *slog.Logger) {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := tp.Shutdown(sctx); err != nil {
		log.Warn("flushing traces", "error", err.Error())
	}
}

// app is the facade built from a configuration, ready to serve.
type app struct {
	upstreamURL string
	creds       upstream.Authorization
	credential  *telemetry.DefaultCredential
	client      *upstream.Client
	srv         *server.Server
	callers     *caller.Guard
}

// credentialCheckID is the connector plugin the start-up check asks for: an
// id no plugin has, so that an accepted key gets a 404 (a 401 otherwise)
// and the answer is small.
const credentialCheckID = "ccp-00000"

// checkCredential asks the upstream once, with the default credential, for
// credentialCheckID, so that a key the upstream rejects shows in /readyz and
// plugin_facade_default_credentials_rejected at start-up rather than at the
// first caller's call. The answers of calls keep it current afterwards (see
// telemetry.DefaultCredential), so no periodic request spends the shared
// key's rate limit. It is bounded by the upstream timeout and by ctx.
func (a *app) checkCredential(ctx context.Context, timeout time.Duration, log *slog.Logger) {
	if a.creds.IsZero() {
		return
	}
	if timeout <= 0 {
		timeout = service.DefaultUpstreamTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	_, _, _ = a.client.GetConnectorPlugin(ctx, a.creds, credentialCheckID)
	if st := a.credential.Status(); st == "rejected" {
		log.Error("the upstream rejects the default credential ("+envAPIKey+"): calls without a credential of their own will fail with UNAUTHENTICATED",
			"default_credentials", st)
	} else {
		log.Info("checked the default credential", "default_credentials", st)
	}
}

// build builds every piece from cfg: the sandbox when asked for, the fleet
// when configured, the upstream client, the service and the servers. What
// needs closing is added to closers.
func build(cfg config, log *slog.Logger, tp *telemetry.TracerProvider, closers *closers) (*app, error) {
	a := &app{upstreamURL: cfg.Upstream.BaseURL, creds: cfg.Credentials}
	if cfg.Sandbox {
		if err := a.startSandbox(closers); err != nil {
			return nil, err
		}
	}
	registry := telemetry.NewRegistry()
	telemetry.RegisterBuildInfo(registry, buildVersion())
	a.credential = telemetry.NewDefaultCredential(registry, a.creds)
	traced, learn := telemetry.Transport(tp), a.credential.Transport()
	callerOpts, err := callerOptions(cfg, a.creds, log, registry)
	if err != nil {
		return nil, err
	}
	wm := telemetry.NewWatchMetrics(registry)
	o := options{
		client: append(cfg.Upstream.Options(),
			upstream.WithUserAgent("plugin-facade/"+buildVersion()),
			upstream.WithHooks(telemetry.NewUpstreamMetrics(registry).Hooks()),
			upstream.WithLogger(log)),
		svc: append(cfg.Service.Options(), service.WithDefaultCredentials(a.creds), service.WithLogger(log),
			service.WithWatchObserver(service.WatchObserver{Loop: wm.Loop, Poll: wm.Poll})),
		srv: append(cfg.Server.Options(), server.WithLogger(log), server.WithOpenAPI(pluginfacade.OpenAPI()),
			server.WithRegistry(registry), server.WithTracerProvider(tp),
			server.WithReadyDetail("default_credentials", a.credential.Status)),
		callers: callerOpts,
	}
	if cfg.TLS != nil {
		o.srv = append(o.srv, server.WithTLS(cfg.TLS))
	}
	if cfg.Fleet.URL != "" {
		if err := o.joinFleet(cfg, log, registry, closers); err != nil {
			return nil, err
		}
	}
	if a.callers, err = caller.New(o.callers...); err != nil {
		return nil, err
	}
	o.srv = append(o.srv, server.WithCallers(a.callers))
	// The caller guard learns the service key's window from its answers.
	o.client = append(o.client, upstream.WithTransport(func(rt http.RoundTripper) http.RoundTripper {
		return a.callers.Transport(learn(traced(rt)))
	}))
	if a.client, err = upstream.New(a.upstreamURL, o.client...); err != nil {
		return nil, err
	}
	closers.add(a.client.Close)
	a.srv, err = server.New(service.New(a.client, o.svc...), o.srv...)
	return a, err
}

// startSandbox starts the built-in sandbox and points a at it, with its key.
func (a *app) startSandbox(closers *closers) error {
	sb, err := sandbox.Start()
	if err != nil {
		return fmt.Errorf("starting the sandbox: %w", err)
	}
	closers.add(func() { sb.Close() })
	a.upstreamURL, a.creds = sb.URL(), upstream.BasicAuth(sandbox.APIKey, sandbox.APISecret)
	return nil
}

// options are what build hands each piece it builds.
type options struct {
	client  []upstream.Option
	svc     []service.Option
	srv     []server.Option
	callers []caller.Option
}

// joinFleet opens the fleet of cfg.Fleet.URL and adds its shared stores to o:
// the replicas of a fleet share the guard's windows, the cache, the watches'
// polling and the callers' budgets through Redis; while it does not answer,
// each runs on its local state.
func (o *options) joinFleet(cfg config, log *slog.Logger, registry *prometheus.Registry, closers *closers) error {
	fleet.UseLogger(log)
	fl, err := fleet.Open(cfg.Fleet.URL, fleet.WithTimeout(cfg.Fleet.Timeout), fleet.WithLogger(log), fleet.WithRegisterer(registry))
	if err != nil {
		return configError{fmt.Errorf("--redis-url: %w", err)}
	}
	closers.add(func() { fl.Close() })
	if cfg.Upstream.RateLimitGuard {
		o.client = append(o.client, upstream.WithGuardStore(fl.Guard(upstream.NewMemoryGuardStore())))
	}
	if cfg.Upstream.CacheTTL > 0 {
		o.client = append(o.client, upstream.WithCacheStore(fl.Cache()))
	}
	o.svc = append(o.svc, service.WithWatchRelay(fl.Watches()))
	o.callers = append(o.callers, caller.WithSharedBudgets(fl.Budgets()))
	o.srv = append(o.srv, server.WithReadyDetail("fleet", fl.Status))
	return nil
}

// callerOptions are the caller guard's options: cfg's, the service's key, and
// the policy and OIDC issuer cfg names (a policy that no longer parses is a
// configuration error; an issuer whose discovery fails, a failure to start).
func callerOptions(cfg config, key upstream.Authorization, log *slog.Logger, reg prometheus.Registerer) ([]caller.Option, error) {
	opts := append(cfg.Callers.Options(), caller.WithServiceKey(key), caller.WithLogger(log), caller.WithRegisterer(reg))
	if cfg.Callers.PolicyFile != "" {
		p, err := caller.LoadPolicy(cfg.Callers.PolicyFile)
		if err != nil {
			return nil, configError{fmt.Errorf("--caller-policy: %w", err)}
		}
		opts = append(opts, caller.WithPolicy(p))
	}
	if cfg.Callers.OIDCIssuer != "" {
		o, err := caller.NewOIDC(context.Background(), cfg.Callers.OIDCIssuer, cfg.Callers.OIDCAudience, nil)
		if err != nil {
			return nil, fmt.Errorf("--oidc-issuer: %w", err)
		}
		opts = append(opts, caller.WithOIDC(o))
	}
	return opts, nil
}

// watchPolicy reloads the caller policy on SIGHUP and when its file changes,
// until ctx ends or the returned function is called.
func watchPolicy(ctx context.Context, g *caller.Guard, c caller.Config) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		defer close(done)
		g.WatchPolicy(ctx, c.PolicyFile, c.PolicyCheck, hup)
	}()
	return func() {
		signal.Stop(hup)
		cancel()
		<-done
	}
}

// listen opens both listeners, which closers close unless Serve took them.
func listen(cfg config, closers *closers) (grpcLis, httpLis net.Listener, err error) {
	for _, l := range []struct {
		flag, addr string
		lis        *net.Listener
	}{{"--grpc-addr", cfg.GRPCAddr, &grpcLis}, {"--http-addr", cfg.HTTPAddr, &httpLis}} {
		lis, err := net.Listen("tcp", l.addr)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", l.flag, err)
		}
		closers.add(func() { lis.Close() })
		*l.lis = lis
	}
	return grpcLis, httpLis, nil
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

The HTTP port also speaks the Connect protocol and gRPC-Web (buf curl's defaults, browser clients)
at the gRPC paths ('make tools' installs ./bin/buf):

  ./bin/buf curl -d '{"id":"%[3]s"}' http://%[2]s/confluent.plugin.v1.PluginService/GetConnectorPlugin

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
