package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/acme/plugin-facade/internal/upstream"
)

// config is everything the server can be told, parsed once at start-up. Each
// setting is a flag that can also be given as an environment variable (the flag
// wins). The table in the README lists them; keep the two in step.
type config struct {
	GRPCAddr        string
	HTTPAddr        string
	UpstreamURL     string
	UpstreamTimeout time.Duration
	ShutdownTimeout time.Duration
	Sandbox         bool
	LogLevel        slog.Level
	LogFormat       string
	DebugAddr       string

	// Credentials is the service's own Cloud API key, from
	// CONFLUENT_CLOUD_API_KEY and CONFLUENT_CLOUD_API_SECRET only: a secret on
	// the command line would show in every process listing.
	Credentials upstream.Authorization
}

const envPrefix = "PLUGIN_FACADE_"

// Environment variables of the Cloud API key.
const (
	envAPIKey    = "CONFLUENT_CLOUD_API_KEY"
	envAPISecret = "CONFLUENT_CLOUD_API_SECRET"
)

// parseConfig reads the flags in args, falling back to the environment read
// through getenv for every flag not given. Usage and errors go to output.
func parseConfig(args []string, getenv func(string) string, output io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("plugin-facade", flag.ContinueOnError)
	fs.SetOutput(output)
	fs.StringVar(&c.GRPCAddr, "grpc-addr", ":9090", "address the gRPC server listens on")
	fs.StringVar(&c.HTTPAddr, "http-addr", ":8080", "address the HTTP server (REST gateway, /openapi.json, /healthz) listens on")
	fs.StringVar(&c.UpstreamURL, "upstream-url", upstream.DefaultBaseURL, "base URL of the Confluent Cloud API")
	fs.DurationVar(&c.UpstreamTimeout, "upstream-timeout", 30*time.Second, "longest wait for one upstream call, whatever the caller's deadline (0: the caller's deadline only)")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", 10*time.Second, "how long calls in flight may finish after SIGINT/SIGTERM")
	fs.BoolVar(&c.Sandbox, "sandbox", false, "serve against a built-in simulated Confluent Cloud on loopback, with its own credentials")
	fs.TextVar(&c.LogLevel, "log-level", slog.LevelInfo, "log level: debug, info, warn or error")
	fs.StringVar(&c.LogFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&c.DebugAddr, "debug-addr", "", "loopback address to serve net/http/pprof on, such as 127.0.0.1:6060 (default: off)")
	fs.Usage = func() {
		fmt.Fprintf(output, "Usage: plugin-facade [flags]\n\nEvery flag can also be set as %s<FLAG> (upper case, '-' as '_'),\n"+
			"e.g. %sGRPC_ADDR=:9090. The Cloud API key comes from %s and %s.\n\n", envPrefix, envPrefix, envAPIKey, envAPISecret)
		fs.PrintDefaults()
	}

	// Environment first, so that flags given on the command line override it.
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		name := envName(f.Name)
		if v := getenv(name); v != "" && envErr == nil {
			if err := fs.Set(f.Name, v); err != nil {
				envErr = fmt.Errorf("%s=%q: %w", name, v, err)
			}
		}
	})
	if envErr != nil {
		return config{}, envErr
	}
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}

	upstreamSet := getenv(envName("upstream-url")) != ""
	fs.Visit(func(f *flag.Flag) { upstreamSet = upstreamSet || f.Name == "upstream-url" })

	var problems []string
	if c.Sandbox && upstreamSet {
		problems = append(problems, "--sandbox and --upstream-url exclude each other: the sandbox is the upstream")
	}
	if _, err := upstream.ParseBaseURL(c.UpstreamURL); err != nil {
		problems = append(problems, "--upstream-url: "+err.Error())
	}
	if c.UpstreamTimeout < 0 {
		problems = append(problems, "--upstream-timeout must not be negative")
	}
	if c.ShutdownTimeout <= 0 {
		problems = append(problems, "--shutdown-timeout must be positive")
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		problems = append(problems, fmt.Sprintf("--log-format must be text or json, not %q", c.LogFormat))
	}
	if c.DebugAddr != "" && !isLoopback(c.DebugAddr) {
		problems = append(problems, fmt.Sprintf("--debug-addr must be a loopback address such as 127.0.0.1:6060, not %q: profiles reveal the process's internals", c.DebugAddr))
	}
	key, secret := getenv(envAPIKey), getenv(envAPISecret)
	switch {
	case key != "" && secret != "":
		c.Credentials = upstream.BasicAuth(key, secret)
	case key != "" || secret != "":
		problems = append(problems, fmt.Sprintf("set both %s and %s, or neither", envAPIKey, envAPISecret))
	}
	if len(problems) > 0 {
		return config{}, errors.New("invalid configuration:\n  " + strings.Join(problems, "\n  "))
	}
	return c, nil
}

// envName is the environment variable of a flag: grpc-addr → PLUGIN_FACADE_GRPC_ADDR.
func envName(flagName string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}
