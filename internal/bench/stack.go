package bench

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/acme/plugin-facade/internal/sandbox"
)

// Binaries are the executables a Stack runs, built once by the Makefile (go
// build, not go run, so that nothing measures the compiler).
type Binaries struct {
	Server, Sandbox, PassProxy string
}

// BinariesIn names the binaries as `go build -o dir ./cmd/server ./cmd/sandbox
// ./internal/bench/passproxy` leaves them.
func BinariesIn(dir string) Binaries {
	return Binaries{
		Server:    filepath.Join(dir, "server"),
		Sandbox:   filepath.Join(dir, "sandbox"),
		PassProxy: filepath.Join(dir, "passproxy"),
	}
}

// StackOptions say how to run the processes of a Stack.
type StackOptions struct {
	// FaultRate and FaultSeed go to the sandbox's --fault-rate and
	// --fault-seed.
	FaultRate float64
	FaultSeed uint64
	// Proxy also starts the pass-through proxy.
	Proxy bool
	// LogLevel of the facade: "" is its default (info: one log line per
	// call, written to its stderr, a file); "warn" leaves those lines out.
	LogLevel string
	// FacadeArgs are more flags for the facade.
	FacadeArgs []string
	// UpstreamLatency holds each of the sandbox's answers back, as a distant
	// upstream would; with UpstreamTLS the sandbox serves HTTPS (HTTP/2) with
	// a certificate of its own, which the facade and the proxy are told to
	// trust. Both together make the realistic run: Confluent Cloud is tens of
	// milliseconds away, behind TLS and HTTP/2.
	UpstreamLatency time.Duration
	UpstreamTLS     bool
}

// Stack is the sandbox, optionally the pass-through proxy in front of it, and
// the facade in front of the sandbox, each a process of its own on loopback.
type Stack struct {
	Sandbox, Proxy, Facade *Process

	SandboxURL string // http://127.0.0.1:port
	ProxyURL   string // "" without StackOptions.Proxy
	GRPCAddr   string // 127.0.0.1:port
	HTTPURL    string // the facade's REST gateway
	DebugURL   string // the facade's --debug-addr (net/http/pprof)
	// CertFile is the sandbox's certificate (PEM) with UpstreamTLS, else "".
	CertFile string
	// Env is what the proxy's and the facade's environment add
	// (SSL_CERT_FILE with UpstreamTLS), for more facades (StartFacade).
	Env []string
}

// StartStack starts the processes: the sandbox without rate limit and with
// synthetic ids, the proxy, and the facade with the sandbox's key as its
// default credential.
func StartStack(bin Binaries, o StackOptions) (st *Stack, err error) {
	st = &Stack{}
	defer func() {
		if err != nil {
			st.Stop()
		}
	}()
	sb, err := StartSandbox(bin, o)
	if err != nil {
		return st, err
	}
	st.Sandbox, st.SandboxURL, st.CertFile, st.Env = sb.Process, sb.URL, sb.CertFile, sb.Env
	if o.Proxy {
		if st.Proxy, err = StartProcess("passproxy", bin.PassProxy, []string{"--addr", "127.0.0.1:0", "--upstream", st.SandboxURL}, st.Env...); err != nil {
			return st, err
		}
		if st.ProxyURL, err = st.Proxy.FirstLine(10 * time.Second); err != nil {
			return st, err
		}
	}

	f, err := StartFacade(bin, st.SandboxURL, o, st.Env...)
	if err != nil {
		return st, err
	}
	st.Facade, st.GRPCAddr, st.HTTPURL, st.DebugURL = f.Process, f.GRPCAddr, f.HTTPURL, f.DebugURL
	return st, nil
}

// Sandbox is a sandbox process and how to reach it.
type Sandbox struct {
	*Process
	URL string // http(s)://127.0.0.1:port
	// CertFile is the sandbox's certificate (PEM) with UpstreamTLS, else "".
	CertFile string
	// Env is what the environment of a process that calls it must add
	// (SSL_CERT_FILE with UpstreamTLS).
	Env []string
}

// StartSandbox starts a sandbox without rate limit, with synthetic ids, and
// o's faults, latency and TLS.
func StartSandbox(bin Binaries, o StackOptions) (sb *Sandbox, err error) {
	sb = &Sandbox{}
	defer func() {
		if err != nil {
			sb.Stop()
		}
	}()
	sbArgs := []string{"--addr", "127.0.0.1:0", "--rate-limit", "0", "--synthetic-ids"}
	if o.FaultRate > 0 {
		sbArgs = append(sbArgs, "--fault-rate", strconv.FormatFloat(o.FaultRate, 'g', -1, 64),
			"--fault-seed", strconv.FormatUint(o.FaultSeed, 10))
	}
	if o.UpstreamLatency > 0 {
		sbArgs = append(sbArgs, "--latency", o.UpstreamLatency.String())
	}
	if o.UpstreamTLS {
		dir, err := os.MkdirTemp("", "bench-tls-")
		if err != nil {
			return sb, err
		}
		sb.CertFile = filepath.Join(dir, "sandbox.pem")
		sbArgs = append(sbArgs, "--tls-cert-out", sb.CertFile)
		sb.Env = append(sb.Env, "SSL_CERT_FILE="+sb.CertFile) // crypto/x509 reads it on Linux
	}
	if sb.Process, err = StartProcess("sandbox", bin.Sandbox, sbArgs); err != nil {
		return sb, err
	}
	if sb.URL, err = sb.FirstLine(10 * time.Second); err != nil {
		return sb, err
	}
	return sb, nil
}

// Stop stops the sandbox and removes its certificate.
func (sb *Sandbox) Stop() error {
	if sb.CertFile != "" {
		defer os.RemoveAll(filepath.Dir(sb.CertFile))
	}
	if sb.Process == nil {
		return nil
	}
	return sb.Process.Stop()
}

// Facade is a facade process and its addresses.
type Facade struct {
	*Process
	GRPCAddr string // 127.0.0.1:port
	HTTPURL  string // the REST gateway
	DebugURL string // --debug-addr (net/http/pprof)
}

// StartFacade starts a facade in front of upstreamURL with the sandbox's key
// as its default credential, o's log level and o.FacadeArgs, and env added
// to its environment (a Stack.Env), and waits until it answers.
func StartFacade(bin Binaries, upstreamURL string, o StackOptions, env ...string) (*Facade, error) {
	var addrs [3]string
	for i := range addrs {
		var err error
		if addrs[i], err = FreeAddr(); err != nil {
			return nil, err
		}
	}
	args := []string{"--grpc-addr", addrs[0], "--http-addr", addrs[1], "--debug-addr", addrs[2], "--upstream-url", upstreamURL}
	if o.LogLevel != "" {
		args = append(args, "--log-level", o.LogLevel)
	}
	p, err := StartProcess("facade", bin.Server, append(args, o.FacadeArgs...),
		append(slices.Clip(env), "CONFLUENT_CLOUD_API_KEY="+sandbox.APIKey, "CONFLUENT_CLOUD_API_SECRET="+sandbox.APISecret)...)
	if err != nil {
		return nil, err
	}
	f := &Facade{Process: p, GRPCAddr: addrs[0], HTTPURL: "http://" + addrs[1], DebugURL: "http://" + addrs[2]}
	if err := WaitOK(p, f.HTTPURL+"/healthz", 15*time.Second); err != nil {
		_ = p.Stop()
		return nil, err
	}
	return f, nil
}

// Stop stops every process of the stack, the facade first, and reports how
// each ended.
func (st *Stack) Stop() error {
	var errs []error
	if st.CertFile != "" {
		defer os.RemoveAll(filepath.Dir(st.CertFile))
	}
	for _, p := range []*Process{st.Facade, st.Proxy, st.Sandbox} {
		if p == nil {
			continue
		}
		if err := p.Stop(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", p.Name, err))
		}
	}
	return errors.Join(errs...)
}
