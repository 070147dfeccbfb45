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
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	pluginfacade "github.com/acme/plugin-facade"
	"github.com/acme/plugin-facade/internal/sandbox"
	"github.com/acme/plugin-facade/internal/server"
	"github.com/acme/plugin-facade/internal/service"
	"github.com/acme/plugin-facade/internal/upstream"
)

// version is set at link time (-ldflags "-X main.version=1.2.3"); otherwise it
// is read from the module's build information.
var version = ""

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
	case err != nil:
		fmt.Fprintln(os.Stderr, "plugin-facade:", err)
		stop()
		os.Exit(1)
	}
}

// run starts the facade and serves until ctx ends.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, err := parseConfig(args, getenv, stderr)
	if err != nil {
		return err
	}
	log := newLogger(cfg, stderr)

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

	client, err := upstream.New(upstreamURL, upstream.WithUserAgent("plugin-facade/"+buildVersion()))
	if err != nil {
		return err
	}
	svc := service.New(client,
		service.WithDefaultCredentials(creds),
		service.WithUpstreamTimeout(cfg.UpstreamTimeout),
		service.WithLogger(log),
	)

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
		"sandbox", cfg.Sandbox, "default_credentials", creds)
	if cfg.Sandbox {
		printSandboxHelp(stdout, grpcLis.Addr(), httpLis.Addr())
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

	srv := server.New(svc,
		server.WithLogger(log),
		server.WithOpenAPI(pluginfacade.OpenAPI()),
		server.WithShutdownTimeout(cfg.ShutdownTimeout),
	)
	if err := srv.Serve(ctx, grpcLis, httpLis); err != nil {
		return err
	}
	log.Info("stopped")
	return nil
}

func newLogger(cfg config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
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
// sandbox, with the addresses actually listened on.
func printSandboxHelp(w io.Writer, grpcAddr, httpAddr net.Addr) {
	g, h := server.LoopbackAddr(grpcAddr), server.LoopbackAddr(httpAddr)
	fmt.Fprintf(w, `
plugin-facade is running against the built-in sandbox (a simulated Confluent Cloud).
Try it (grpcurl: 'make tools' installs a pinned one as ./bin/grpcurl):

  grpcurl -plaintext %[1]s list
  grpcurl -plaintext -d '{"plugin_id":"%[3]s","id":"%[4]s","environment":"%[5]s"}' %[1]s confluent.plugin.v1.PluginService/GetPluginVersion
  grpcurl -plaintext -d '{"id":"%[3]s"}' %[1]s confluent.plugin.v1.PluginService/GetConnectorPlugin

  curl -s 'http://%[2]s/ccpm/v1/plugins/%[3]s/versions/%[4]s?environment=%[5]s'
  curl -s http://%[2]s/connect/v1/custom-connector-plugins/%[3]s
  curl -s http://%[2]s/connect/v1/custom-connector-plugins/%[6]s        # values the facade does not know yet, kept raw
  curl -s http://%[2]s/connect/v1/custom-connector-plugins/ccp-00000    # 404, mapped from the upstream's Failure
  curl -s -H 'Authorization: Bearer %[7]s' http://%[2]s/connect/v1/custom-connector-plugins/%[3]s   # your own credential, forwarded
  curl -s http://%[2]s/openapi.json

Stop with Ctrl-C.

`, g, h, sandbox.PluginID, sandbox.VersionID, sandbox.Environment, sandbox.UnknownEnumsPluginID, sandbox.BearerToken)
}
