package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"

	"github.com/acme/plugin-facade/internal/caller"
	"github.com/acme/plugin-facade/internal/fleet"
	"github.com/acme/plugin-facade/internal/server"
	"github.com/acme/plugin-facade/internal/service"
	"github.com/acme/plugin-facade/internal/settings"
	"github.com/acme/plugin-facade/internal/upstream"
)

// config is everything the server can be told, parsed once at start-up. Each
// setting is a flag that can also be given as an environment variable (the
// flag wins); docs/configuration.md's table lists them. The settings of a package are
// that package's Config, which validates them: this file only maps flags to
// fields, and reports a package's problem under the flag's name.
type config struct {
	GRPCAddr string
	HTTPAddr string
	Upstream upstream.Config
	Service  service.Config
	Server   server.Config
	Fleet    fleet.Config
	Callers  caller.Config

	Sandbox   bool
	LogLevel  slog.Level
	LogFormat string
	// TLS is nil for plaintext, else built from --tls-cert, --tls-key and
	// --tls-client-ca, whose files are read at start-up.
	TLS *tls.Config
	// DebugAddr serves net/http/pprof on loopback when set.
	DebugAddr string

	// Credentials is the service's own Cloud API key, from
	// CONFLUENT_CLOUD_API_KEY and CONFLUENT_CLOUD_API_SECRET only: a secret on
	// the command line would show in every process listing. Zero only with
	// NoDefaultCredentials (or Sandbox, whose own key is used).
	Credentials          upstream.Authorization
	NoDefaultCredentials bool

	// Command is what was asked instead of serving: "help" or "version"
	// (the words, or --help and --version); empty to serve.
	Command string
	// Warnings are said once the logger exists: PLUGIN_FACADE_* variables
	// that set nothing.
	Warnings []string
}

const envPrefix = "PLUGIN_FACADE_"

// Environment variables of the Cloud API key.
const (
	envAPIKey    = "CONFLUENT_CLOUD_API_KEY"
	envAPISecret = "CONFLUENT_CLOUD_API_SECRET"
)

// seeHelp ends every refusal, so that an error stays one line and says where
// the whole usage is.
const seeHelp = "see 'plugin-facade --help'"

// defaultConfig is the configuration without flags or environment: each
// package's defaults.
func defaultConfig() config {
	return config{Upstream: upstream.DefaultConfig(), Service: service.DefaultConfig(),
		Server: server.DefaultConfig(), Fleet: fleet.DefaultConfig(), Callers: caller.DefaultConfig(), LogFormat: "json"}
}

// fieldFlags maps the Config fields of one package to the flags that set them.
type fieldFlags map[string]string

// parseConfig reads the flags in args, falling back to the environment
// (environ, as os.Environ gives it) for every flag not given. A refusal is a
// configError, of one line per problem.
func parseConfig(args, environ []string) (config, error) {
	env := envMap(environ)
	c := defaultConfig()
	fs, files, owners := newFlagSet(&c)
	if err := setFromEnv(fs, env); err != nil {
		return config{}, configError{err}
	}
	if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
		return config{Command: "help"}, nil
	} else if err != nil {
		return config{}, configError{err}
	}
	switch {
	case fs.NArg() == 1 && (fs.Arg(0) == "help" || fs.Arg(0) == "version"):
		return config{Command: fs.Arg(0)}, nil
	case fs.NArg() > 0:
		return config{}, configError{fmt.Errorf("unexpected arguments: %s (commands: help, version)", strings.Join(fs.Args(), " "))}
	case c.Command != "":
		return config{Command: c.Command}, nil
	}

	var problems []string
	for _, o := range owners {
		for _, p := range settings.All(o.validate()) {
			name := "--" + o.flags[p.Field]
			if name == "--" { // a field no flag sets: a default that is wrong
				name = p.Field
			}
			problems = append(problems, name+": "+p.Reason)
		}
	}
	problems = append(problems, c.checkOwn(fs, env)...)
	problems = append(problems, c.readFiles(files)...)
	problems = append(problems, c.readCredentials(env)...)
	if len(problems) > 0 {
		return config{}, configError{errors.New(strings.Join(problems, "\n"))}
	}
	c.Warnings = append(c.Warnings, unknownEnv(environ, fs)...)
	return c, nil
}

// owner is a package's Config validation and the flags of its fields.
type owner struct {
	validate func() error
	flags    fieldFlags
}

// tlsFiles are the files --tls-cert, --tls-key and --tls-client-ca name.
type tlsFiles struct{ cert, key, clientCA string }

// newFlagSet defines every flag on c, whose fields hold the defaults. It
// returns the TLS files to read and each package's validation with the flags
// of its fields.
func newFlagSet(c *config) (*flag.FlagSet, *tlsFiles, []owner) {
	fs := flag.NewFlagSet("plugin-facade", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are returned; usage is printed by printUsage
	fs.Usage = func() {}
	fs.StringVar(&c.GRPCAddr, "grpc-addr", ":9090", "address the gRPC server listens on (host:port)")
	fs.StringVar(&c.HTTPAddr, "http-addr", ":8080", "address the HTTP server (REST gateway, /openapi.json, /metrics, /healthz, /readyz) listens on (host:port)")
	// Each validate reads c when called, so it sees the values parsed.
	owners := []owner{
		{func() error { return c.Upstream.Validate() }, upstreamFlags(fs, &c.Upstream)},
		{func() error { return c.Service.Validate() }, serviceFlags(fs, &c.Service)},
		{func() error { return c.Server.Validate() }, serverFlags(fs, &c.Server)},
		{func() error { return c.Fleet.Validate() }, fleetFlags(fs, &c.Fleet)},
		{func() error { return c.Callers.Validate() }, callerFlags(fs, &c.Callers)},
	}
	fs.BoolVar(&c.Sandbox, "sandbox", false, "serve against a built-in simulated Confluent Cloud on loopback, with its own credentials")
	fs.BoolVar(&c.NoDefaultCredentials, "no-default-credentials", false, "serve without a default Cloud API key, so that every caller must send its own credential (without this flag, an empty or half-set "+envAPIKey+"/"+envAPISecret+" stops start-up)")
	fs.TextVar(&c.LogLevel, "log-level", slog.LevelInfo, "log level: debug, info, warn or error")
	fs.StringVar(&c.LogFormat, "log-format", c.LogFormat, "log format: json or text")
	files := &tlsFiles{}
	fs.StringVar(&files.cert, "tls-cert", "", "PEM certificate (chain) file: serve both listeners over TLS (with --tls-key)")
	fs.StringVar(&files.key, "tls-key", "", "PEM private key file of --tls-cert")
	fs.StringVar(&files.clientCA, "tls-client-ca", "", "PEM CA certificates file: require client certificates signed by one of them (mutual TLS; needs --tls-cert)")
	fs.BoolFunc("version", "print the build information and exit (also: plugin-facade version)", func(string) error { c.Command = "version"; return nil })
	fs.StringVar(&c.DebugAddr, "debug-addr", "", "loopback address to serve net/http/pprof on, such as 127.0.0.1:6060 (default: off)")
	return fs, files, owners
}

func upstreamFlags(fs *flag.FlagSet, c *upstream.Config) fieldFlags {
	fs.StringVar(&c.BaseURL, "upstream-url", c.BaseURL, "base URL of the Confluent Cloud API")
	fs.BoolVar(&c.AllowInsecure, "upstream-insecure", c.AllowInsecure, "allow a plain-HTTP --upstream-url whose host is not loopback (credentials then cross the network in clear)")
	fs.IntVar(&c.MaxAttempts, "upstream-max-attempts", c.MaxAttempts, fmt.Sprintf("most upstream requests per call, retries included (1: no retries; at most %d); only 429, 502, 503, 504 and connection failures are retried", upstream.MaxAttemptsLimit))
	fs.DurationVar(&c.MaxRetryWait, "upstream-max-retry-wait", c.MaxRetryWait, "longest Retry-After waited for before retrying; a longer one is returned to the caller as its retry hint")
	fs.Int64Var(&c.MaxBodyBytes, "upstream-max-body-bytes", c.MaxBodyBytes, "largest upstream response body read; a larger one is an error")
	fs.BoolVar(&c.RateLimitGuard, "rate-limit-guard", c.RateLimitGuard, "while the upstream says a credential's rate-limit window is exhausted, answer RESOURCE_EXHAUSTED without calling it")
	fs.DurationVar(&c.CacheTTL, "cache-ttl", c.CacheTTL, "keep successful upstream answers this long, per credential, and answer identical calls from them (0: no cache); answers may be this stale")
	fs.IntVar(&c.CacheMaxEntries, "cache-max-entries", c.CacheMaxEntries, "most answers the cache keeps (least recently used out first)")
	return fieldFlags{"BaseURL": "upstream-url", "AllowInsecure": "upstream-insecure", "MaxAttempts": "upstream-max-attempts",
		"MaxRetryWait": "upstream-max-retry-wait", "MaxBodyBytes": "upstream-max-body-bytes", "RateLimitGuard": "rate-limit-guard",
		"CacheTTL": "cache-ttl", "CacheMaxEntries": "cache-max-entries"}
}

func serviceFlags(fs *flag.FlagSet, c *service.Config) fieldFlags {
	fs.DurationVar(&c.UpstreamTimeout, "upstream-timeout", c.UpstreamTimeout, "longest wait for one upstream call, whatever the caller's deadline (0: the caller's deadline only)")
	return fieldFlags{"UpstreamTimeout": "upstream-timeout"}
}

func serverFlags(fs *flag.FlagSet, c *server.Config) fieldFlags {
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", c.ShutdownTimeout, "how long calls in flight may finish after SIGINT/SIGTERM")
	l := &c.Limits
	fs.DurationVar(&l.ReadTimeout, "read-timeout", l.ReadTimeout, "longest an HTTP request may take to arrive, headers and body")
	fs.IntVar(&l.MaxConcurrentStreams, "max-concurrent-streams", l.MaxConcurrentStreams, "most streams at once on one HTTP/2 connection, gRPC and HTTPS")
	fs.IntVar(&l.MaxHeaderBytes, "max-header-bytes", l.MaxHeaderBytes, "largest request headers (gRPC metadata, HTTP headers with the request line); a credential may be up to 8 KiB")
	fs.IntVar(&l.MaxInFlight, "max-in-flight", l.MaxInFlight, "most unary calls running at once on each listener; beyond it RESOURCE_EXHAUSTED (429)")
	fs.IntVar(&l.MaxInFlightPerCaller, "max-in-flight-per-caller", l.MaxInFlightPerCaller, "most unary calls running at once per caller on each listener (0: no bound per caller)")
	fs.IntVar(&l.MaxWatchers, "max-watchers", l.MaxWatchers, "most watch streams open at once, gRPC and REST; beyond it RESOURCE_EXHAUSTED (429)")
	fs.IntVar(&l.MaxWatchersPerCaller, "max-watchers-per-caller", l.MaxWatchersPerCaller, "most watch streams open at once per caller (its identity: docs/callers.md)")
	return fieldFlags{"ShutdownTimeout": "shutdown-timeout", "Limits.ReadTimeout": "read-timeout",
		"Limits.MaxConcurrentStreams": "max-concurrent-streams", "Limits.MaxHeaderBytes": "max-header-bytes",
		"Limits.MaxInFlight": "max-in-flight", "Limits.MaxInFlightPerCaller": "max-in-flight-per-caller",
		"Limits.MaxWatchers": "max-watchers", "Limits.MaxWatchersPerCaller": "max-watchers-per-caller"}
}

func fleetFlags(fs *flag.FlagSet, c *fleet.Config) fieldFlags {
	fs.StringVar(&c.URL, "redis-url", c.URL, "redis:// or rediss:// URL (user:password@host:port/db) of a Redis through which the replicas of a fleet share the rate-limit guard, the cache and watch polling (default: none, state in this process); give a password through "+envName("redis-url")+", not this flag")
	fs.DurationVar(&c.Timeout, "redis-timeout", c.Timeout, "longest wait for one Redis operation, after which the replica uses its local state")
	return fieldFlags{"URL": "redis-url", "Timeout": "redis-timeout"}
}

func callerFlags(fs *flag.FlagSet, c *caller.Config) fieldFlags {
	fs.Float64Var(&c.Share, "caller-share", c.Share, "part of the service key's rate-limit window one caller may spend (0 < share <= 1; 1: one caller may spend the whole window)")
	fs.StringVar(&c.PolicyFile, "caller-policy", c.PolicyFile, "YAML file of rules naming callers and what they may read with the service's key (docs/callers.md); once set, what it does not allow is denied; reloaded on SIGHUP and when it changes")
	fs.DurationVar(&c.PolicyCheck, "caller-policy-check", c.PolicyCheck, "how often to look for a changed --caller-policy file")
	fs.StringVar(&c.OIDCIssuer, "oidc-issuer", c.OIDCIssuer, "OIDC issuer URL whose JWTs (Authorization: Bearer) identify callers and are never forwarded, such as a Kubernetes cluster's service-account issuer (needs --oidc-audience)")
	fs.StringVar(&c.OIDCAudience, "oidc-audience", c.OIDCAudience, "audience the --oidc-issuer tokens must name")
	fs.StringVar(&c.TrustedProxies, "trusted-proxies", c.TrustedProxies, "comma-separated CIDR ranges of proxies whose Forwarded / X-Forwarded-For headers name the caller (default: none, the peer address is the caller's)")
	return fieldFlags{"Share": "caller-share", "PolicyFile": "caller-policy", "PolicyCheck": "caller-policy-check",
		"OIDCIssuer": "oidc-issuer", "OIDCAudience": "oidc-audience", "TrustedProxies": "trusted-proxies"}
}

// setFromEnv sets every flag whose environment variable is set; flags given
// on the command line are parsed afterwards, so they win.
func setFromEnv(fs *flag.FlagSet, env map[string]string) error {
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if f.Name == "version" || err != nil { // a question, not a setting
			return
		}
		name := envName(f.Name)
		if v := env[name]; v != "" {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("%s=%q: %w", name, v, e)
			}
		}
	})
	return err
}

// checkOwn checks the settings cmd/server itself owns: the listen addresses,
// the logger, the debug listener and the sandbox.
func (c *config) checkOwn(fs *flag.FlagSet, env map[string]string) []string {
	var problems []string
	for _, a := range []struct{ flag, addr string }{{"grpc-addr", c.GRPCAddr}, {"http-addr", c.HTTPAddr}, {"debug-addr", c.DebugAddr}} {
		if a.addr == "" && a.flag == "debug-addr" {
			continue
		}
		if err := checkAddr(a.addr); err != nil {
			problems = append(problems, fmt.Sprintf("--%s %q: %v", a.flag, a.addr, err))
		}
	}
	if c.DebugAddr != "" && !isLoopback(c.DebugAddr) {
		problems = append(problems, fmt.Sprintf("--debug-addr must be a loopback address such as 127.0.0.1:6060, not %q: profiles reveal the process's internals", c.DebugAddr))
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		problems = append(problems, fmt.Sprintf("--log-format must be json or text, not %q", c.LogFormat))
	}
	upstreamSet := env[envName("upstream-url")] != ""
	fs.Visit(func(f *flag.Flag) { upstreamSet = upstreamSet || f.Name == "upstream-url" })
	if c.Sandbox && upstreamSet {
		problems = append(problems, "--sandbox and --upstream-url exclude each other: the sandbox is the upstream")
	}
	return problems
}

// checkAddr checks a listen address: host:port, the port a number from 0 to
// 65535 (0: any free port) or a service name.
func checkAddr(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return errors.New("not host:port")
	}
	if _, err := net.LookupPort("tcp", port); err != nil {
		return fmt.Errorf("port %q is not a port number", port)
	}
	return nil
}

// readFiles reads the TLS files; all empty means plaintext.
func (c *config) readFiles(f *tlsFiles) []string {
	cfg, err := tlsConfig(f.cert, f.key, f.clientCA)
	if err != nil {
		return []string{err.Error()}
	}
	c.TLS = cfg
	return nil
}

// readCredentials takes the default Cloud API key from the environment.
// Empty and half-set are refused: a Secret made from an unset shell variable
// is empty, and a facade started with it would be ready while every call
// without a credential of its own fails. Serving without a default key is a
// choice said with --no-default-credentials.
func (c *config) readCredentials(env map[string]string) []string {
	key, secret := strings.TrimSpace(env[envAPIKey]), strings.TrimSpace(env[envAPISecret])
	switch {
	case c.Sandbox:
		if key != "" || secret != "" {
			c.Warnings = append(c.Warnings, "sandbox mode: ignoring "+envAPIKey+"; using the sandbox's own key")
		}
		return nil
	case key != "" && secret != "" && c.NoDefaultCredentials:
		return []string{fmt.Sprintf("--no-default-credentials and %s exclude each other", envAPIKey)}
	case key != "" && secret != "":
		c.Credentials = upstream.BasicAuth(key, secret)
	case key != "" || secret != "":
		return []string{fmt.Sprintf("set both %s and %s, or neither (%s)", envAPIKey, envAPISecret, setOrEmpty(env))}
	case !c.NoDefaultCredentials:
		return []string{fmt.Sprintf("no default credential: set %s and %s (%s), or pass --no-default-credentials so that every caller sends its own",
			envAPIKey, envAPISecret, setOrEmpty(env))}
	}
	return nil
}

// setOrEmpty says which of the key's variables are set, unset or empty,
// never their values.
func setOrEmpty(env map[string]string) string {
	state := func(name string) string {
		v, ok := env[name]
		switch {
		case !ok:
			return name + " unset"
		case strings.TrimSpace(v) == "":
			return name + " empty"
		}
		return name + " set"
	}
	return state(envAPIKey) + ", " + state(envAPISecret)
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

// printUsage prints the whole usage, with every flag and its default.
func printUsage(w io.Writer) {
	c := defaultConfig()
	fs, _, _ := newFlagSet(&c)
	fmt.Fprintf(w, "Usage: plugin-facade [flags]\n       plugin-facade help | version\n\n"+
		"Every flag can also be set as %s<FLAG> (upper case, '-' as '_'), e.g. %sGRPC_ADDR=:9090.\n"+
		"The default Cloud API key comes from %s and %s.\n"+
		"Exit status: 0 after a clean stop (SIGINT, SIGTERM), 2 for an invalid configuration, 1 when serving fails.\n\n",
		envPrefix, envPrefix, envAPIKey, envAPISecret)
	fs.SetOutput(w)
	fs.PrintDefaults()
}

// envName is the environment variable of a flag: grpc-addr → PLUGIN_FACADE_GRPC_ADDR.
func envName(flagName string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// envMap indexes environ (KEY=VALUE entries); the last of a repeated key wins,
// as with os.Getenv.
func envMap(environ []string) map[string]string {
	m := make(map[string]string, len(environ))
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	return m
}

// unknownEnv returns a warning for each PLUGIN_FACADE_* variable in environ
// that no flag reads, with the nearest name when one is close: a misspelled
// variable otherwise changes nothing, silently.
func unknownEnv(environ []string, fs *flag.FlagSet) []string {
	known := settingEnv(fs)
	var warnings []string
	for name := range envMap(environ) {
		if !strings.HasPrefix(name, envPrefix) || known[name] {
			continue
		}
		w := name + " is not a setting of plugin-facade; it is ignored"
		if near := nearest(name, known); near != "" {
			w += "; did you mean " + near + "?"
		}
		warnings = append(warnings, w)
	}
	return warnings
}

// settingEnv is the environment variables of the flags of fs.
func settingEnv(fs *flag.FlagSet) map[string]bool {
	known := map[string]bool{}
	fs.VisitAll(func(f *flag.Flag) {
		if f.Name != "version" {
			known[envName(f.Name)] = true
		}
	})
	return known
}

// nearest is the name in names at the smallest edit distance from name, if
// that distance is at most 3; else "".
func nearest(name string, names map[string]bool) string {
	best, bestD := "", 4
	for n := range names {
		if d := editDistance(name, n); d < bestD || (d == bestD && n < best) {
			best, bestD = n, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b (bytes).
func editDistance(a, b string) int {
	prev, cur := make([]int, len(b)+1), make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
