package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/acme/plugin-facade/internal/caller"
	"github.com/acme/plugin-facade/internal/fleet"
	"github.com/acme/plugin-facade/internal/server"
	"github.com/acme/plugin-facade/internal/service"
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
	// Upstream behaviour: see upstream.RetryPolicy and the README.
	UpstreamInsecure    bool
	UpstreamMaxAttempts int
	UpstreamMaxWait     time.Duration
	UpstreamMaxBody     int64
	RateLimitGuard      bool
	CacheTTL            time.Duration
	CacheMaxEntries     int
	ShutdownTimeout     time.Duration
	Sandbox             bool
	LogLevel            slog.Level
	LogFormat           string
	// TLS is nil for plaintext, else built from --tls-cert, --tls-key and
	// --tls-client-ca, whose files are read at start-up.
	TLS *tls.Config
	// Version asks for the build information instead of serving.
	Version bool
	// DebugAddr serves net/http/pprof on loopback when set.
	DebugAddr string

	// Credentials is the service's own Cloud API key, from
	// CONFLUENT_CLOUD_API_KEY and CONFLUENT_CLOUD_API_SECRET only: a secret on
	// the command line would show in every process listing.
	Credentials upstream.Authorization

	// RedisURL, when set, is the Redis through which the replicas of a fleet
	// share their state (see internal/fleet); it may hold a password.
	RedisURL     string
	RedisTimeout time.Duration

	// Callers: see internal/caller and docs/callers.md.
	CallerShare float64
	// CallerPolicyFile is the --caller-policy file, CallerPolicy what it
	// held at start-up (nil without one).
	CallerPolicyFile  string
	CallerPolicy      *caller.Policy
	CallerPolicyCheck time.Duration
	OIDCIssuer        string
	OIDCAudience      string
	TrustedProxies    []netip.Prefix
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
	fs.DurationVar(&c.UpstreamTimeout, "upstream-timeout", service.DefaultUpstreamTimeout, "longest wait for one upstream call, whatever the caller's deadline (0: the caller's deadline only)")
	fs.BoolVar(&c.UpstreamInsecure, "upstream-insecure", false, "allow a plain-HTTP --upstream-url whose host is not loopback (credentials then cross the network in clear)")
	fs.IntVar(&c.UpstreamMaxAttempts, "upstream-max-attempts", upstream.DefaultRetryPolicy.MaxAttempts, "most upstream requests per call, retries included (1: no retries); only 429, 502, 503, 504 and connection failures are retried")
	fs.DurationVar(&c.UpstreamMaxWait, "upstream-max-retry-wait", upstream.DefaultRetryPolicy.MaxWait, "longest Retry-After waited for before retrying; a longer one is returned to the caller as its retry hint")
	fs.Int64Var(&c.UpstreamMaxBody, "upstream-max-body-bytes", upstream.DefaultMaxBodyBytes, "largest upstream response body read; a larger one is an error")
	fs.BoolVar(&c.RateLimitGuard, "rate-limit-guard", true, "while the upstream says a credential's rate-limit window is exhausted, answer RESOURCE_EXHAUSTED without calling it")
	fs.DurationVar(&c.CacheTTL, "cache-ttl", 0, "keep successful upstream answers this long, per credential, and answer identical calls from them (0: no cache); answers may be this stale")
	fs.IntVar(&c.CacheMaxEntries, "cache-max-entries", 1024, "most answers the cache keeps (least recently used out first)")
	fs.StringVar(&c.RedisURL, "redis-url", "", "redis:// or rediss:// URL (user:password@host:port/db) of a Redis through which the replicas of a fleet share the rate-limit guard, the cache and watch polling (default: none, state in this process); give a password through "+envName("redis-url")+", not this flag")
	fs.DurationVar(&c.RedisTimeout, "redis-timeout", fleet.DefaultTimeout, "longest wait for one Redis operation, after which the replica uses its local state")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", server.DefaultShutdownTimeout, "how long calls in flight may finish after SIGINT/SIGTERM")
	fs.BoolVar(&c.Sandbox, "sandbox", false, "serve against a built-in simulated Confluent Cloud on loopback, with its own credentials")
	fs.TextVar(&c.LogLevel, "log-level", slog.LevelInfo, "log level: debug, info, warn or error")
	fs.StringVar(&c.LogFormat, "log-format", "json", "log format: json or text")
	var certFile, keyFile, clientCAFile string
	fs.StringVar(&certFile, "tls-cert", "", "PEM certificate (chain) file: serve both listeners over TLS (with --tls-key)")
	fs.StringVar(&keyFile, "tls-key", "", "PEM private key file of --tls-cert")
	fs.StringVar(&clientCAFile, "tls-client-ca", "", "PEM CA certificates file: require client certificates signed by one of them (mutual TLS; needs --tls-cert)")
	fs.Float64Var(&c.CallerShare, "caller-share", caller.DefaultShare, "part of the service key's rate-limit window one caller may spend (0 < share <= 1; 1: no fair share)")
	fs.StringVar(&c.CallerPolicyFile, "caller-policy", "", "YAML file of rules naming callers and what they may read with the service's key (docs/callers.md); once set, what it does not allow is denied; reloaded on SIGHUP and when it changes")
	fs.DurationVar(&c.CallerPolicyCheck, "caller-policy-check", caller.DefaultPolicyCheck, "how often to look for a changed --caller-policy file")
	fs.StringVar(&c.OIDCIssuer, "oidc-issuer", "", "OIDC issuer URL whose JWTs (Authorization: Bearer) identify callers, such as a Kubernetes cluster's service-account issuer (needs --oidc-audience)")
	fs.StringVar(&c.OIDCAudience, "oidc-audience", "", "audience the --oidc-issuer tokens must name")
	var proxies string
	fs.StringVar(&proxies, "trusted-proxies", "", "comma-separated CIDR ranges of proxies whose Forwarded / X-Forwarded-For headers name the caller (default: none, the peer address is the caller's)")
	fs.BoolVar(&c.Version, "version", false, "print the build information and exit")
	fs.StringVar(&c.DebugAddr, "debug-addr", "", "loopback address to serve net/http/pprof on, such as 127.0.0.1:6060 (default: off)")
	fs.Usage = func() {
		fmt.Fprintf(output, "Usage: plugin-facade [flags]\n\nEvery flag can also be set as %s<FLAG> (upper case, '-' as '_'),\n"+
			"e.g. %sGRPC_ADDR=:9090. The Cloud API key comes from %s and %s.\n\n", envPrefix, envPrefix, envAPIKey, envAPISecret)
		fs.PrintDefaults()
	}

	// Environment first, so that flags given on the command line override it.
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		if f.Name == "version" { // a question, not a setting
			return
		}
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
	if _, err := upstream.ParseBaseURL(c.UpstreamURL, c.UpstreamInsecure); err != nil {
		problems = append(problems, "--upstream-url: "+err.Error())
	}
	if c.UpstreamTimeout < 0 {
		problems = append(problems, "--upstream-timeout must not be negative")
	}
	if c.UpstreamMaxAttempts < 1 || c.UpstreamMaxAttempts > 10 {
		problems = append(problems, "--upstream-max-attempts must be between 1 and 10")
	}
	if c.UpstreamMaxWait <= 0 {
		problems = append(problems, "--upstream-max-retry-wait must be positive")
	}
	if c.CacheTTL < 0 {
		problems = append(problems, "--cache-ttl must not be negative")
	}
	if c.RedisURL != "" {
		if err := fleet.CheckURL(c.RedisURL); err != nil {
			problems = append(problems, "--redis-url: "+err.Error())
		}
	}
	if c.RedisTimeout <= 0 {
		problems = append(problems, "--redis-timeout must be positive")
	}
	if c.CacheMaxEntries < 1 {
		problems = append(problems, "--cache-max-entries must be at least 1")
	}
	if c.UpstreamMaxBody < 1024 {
		problems = append(problems, "--upstream-max-body-bytes must be at least 1024")
	}
	if c.ShutdownTimeout <= 0 {
		problems = append(problems, "--shutdown-timeout must be positive")
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		problems = append(problems, fmt.Sprintf("--log-format must be json or text, not %q", c.LogFormat))
	}
	if cfg, err := tlsConfig(certFile, keyFile, clientCAFile); err != nil {
		problems = append(problems, err.Error())
	} else {
		c.TLS = cfg
	}
	if c.CallerShare <= 0 || c.CallerShare > 1 {
		problems = append(problems, "--caller-share must be more than 0 and at most 1")
	}
	if c.CallerPolicyCheck <= 0 {
		problems = append(problems, "--caller-policy-check must be positive")
	}
	if c.CallerPolicyFile != "" {
		if p, err := caller.LoadPolicy(c.CallerPolicyFile); err != nil {
			problems = append(problems, "--caller-policy: "+err.Error())
		} else {
			c.CallerPolicy = p
		}
	}
	if (c.OIDCIssuer == "") != (c.OIDCAudience == "") {
		problems = append(problems, "--oidc-issuer and --oidc-audience go together")
	}
	for _, r := range strings.Split(proxies, ",") {
		if r = strings.TrimSpace(r); r == "" {
			continue
		}
		if p, err := netip.ParsePrefix(r); err != nil {
			problems = append(problems, fmt.Sprintf("--trusted-proxies: %q is not a CIDR range such as 10.0.0.0/8", r))
		} else {
			c.TrustedProxies = append(c.TrustedProxies, p.Masked())
		}
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

// tlsConfig reads the server's certificate and key and, for mutual TLS, the
// CAs its clients' certificates must chain to. All empty means plaintext (nil).
// The files are read once: rotating a certificate takes a restart.
func tlsConfig(certFile, keyFile, clientCAFile string) (*tls.Config, error) {
	switch {
	case certFile == "" && keyFile == "" && clientCAFile == "":
		return nil, nil
	case certFile == "" || keyFile == "":
		return nil, errors.New("--tls-cert and --tls-key go together (--tls-client-ca needs both)")
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		// The error names the files and what is wrong, never the key's bytes.
		return nil, fmt.Errorf("--tls-cert/--tls-key: %w", err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if clientCAFile != "" {
		pem, err := os.ReadFile(clientCAFile)
		if err != nil {
			return nil, fmt.Errorf("--tls-client-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--tls-client-ca: no PEM certificate in %s", clientCAFile)
		}
		cfg.ClientCAs, cfg.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// envName is the environment variable of a flag: grpc-addr → PLUGIN_FACADE_GRPC_ADDR.
func envName(flagName string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}
