// Package fleettest runs a real redis-server for the tests of the fleet's
// shared state (and for `make bench`): on a free loopback port, in a
// temporary directory, with nothing persisted. No fake or in-memory Redis
// stands in for it.
//
// When redis-server is not installed, tests that need it skip, except in CI
// (CI=true), where they fail: .ci/run installs it.
package fleettest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"
)

// Options say how to run a Redis.
type Options struct {
	// User and Password, when set, define the only account (an ACL user with
	// every permission); the default user is then disabled.
	User, Password string
	// TLSCert and TLSKey, when set, make the port TLS-only (PEM files).
	TLSCert, TLSKey string
}

// Redis is a redis-server process.
type Redis struct {
	path string
	dir  string
	port int
	opts Options

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// Start starts redis-server for t and stops it when t ends.
func Start(t testing.TB) *Redis { return StartWith(t, Options{}) }

// StartWith starts redis-server with opts for t and stops it when t ends.
func StartWith(t testing.TB, opts Options) *Redis {
	t.Helper()
	dir := t.TempDir()
	r, err := Launch(dir, opts)
	if errors.Is(err, exec.ErrNotFound) {
		if os.Getenv("CI") == "true" {
			t.Fatal("redis-server is not installed; .ci/run installs it (apt-get install redis-server)")
		}
		t.Skip("redis-server is not installed (apt-get install redis-server); CI fails here instead of skipping")
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Stop)
	return r
}

// Launch starts redis-server from PATH with opts, its files in dir, on a free
// loopback port. Its error wraps exec.ErrNotFound when redis-server is not
// installed. Stop it with Stop.
func Launch(dir string, opts Options) (*Redis, error) {
	path, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, err
	}
	r := &Redis{path: path, dir: dir, opts: opts}
	for attempt := 0; ; attempt++ {
		r.port, err = freePort()
		if err == nil {
			err = r.start()
		}
		if err == nil || attempt == 2 { // another process took the port each time
			return r, err
		}
	}
}

// Addr is the host:port Redis listens on.
func (r *Redis) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(r.port)) }

// URL is a redis:// (rediss:// with TLS) URL of database 0, with the
// credentials of Options when set.
func (r *Redis) URL() string {
	scheme := "redis"
	if r.opts.TLSCert != "" {
		scheme = "rediss"
	}
	userinfo := ""
	if r.opts.Password != "" {
		userinfo = r.opts.User + ":" + r.opts.Password + "@"
	}
	return scheme + "://" + userinfo + r.Addr() + "/0"
}

// Stop kills the server at once, as a crash or a lost node would (a later
// Restart starts it empty). It is a no-op when the server is not running.
func (r *Redis) Stop() {
	r.mu.Lock()
	cmd, done := r.cmd, r.done
	r.cmd = nil
	r.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-done
}

// Restart starts the server again, empty, on the same port, after Stop.
func (r *Redis) Restart() error {
	// The port was just released; retry a moment in case the kernel holds it.
	var err error
	for range 20 {
		if err = r.start(); err == nil {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return err
}

func (r *Redis) start() error {
	logFile := filepath.Join(r.dir, "redis.log")
	args := []string{"--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", r.dir,
		"--databases", "4", "--loglevel", "warning", "--logfile", logFile}
	port := strconv.Itoa(r.port)
	if r.opts.TLSCert != "" {
		args = append(args, "--port", "0", "--tls-port", port, "--tls-cert-file", r.opts.TLSCert,
			"--tls-key-file", r.opts.TLSKey, "--tls-auth-clients", "no")
	} else {
		args = append(args, "--port", port)
	}
	if r.opts.Password != "" {
		// The ACL is given in a file, so that the password is on no command line.
		acl := filepath.Join(r.dir, "users.acl")
		rules := fmt.Sprintf("user default off\nuser %s on >%s ~* &* +@all\n", r.opts.User, r.opts.Password)
		if err := os.WriteFile(acl, []byte(rules), 0o600); err != nil {
			return err
		}
		args = append(args, "--aclfile", acl)
	}
	cmd := exec.Command(r.path, args...)
	cmd.Dir = r.dir
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting redis-server: %w", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	if err := r.waitReady(done); err != nil {
		_ = cmd.Process.Kill()
		<-done
		log, _ := os.ReadFile(logFile)
		return fmt.Errorf("redis-server on port %d: %w\n%s", r.port, err, log)
	}
	r.mu.Lock()
	r.cmd, r.done = cmd, done
	r.mu.Unlock()
	return nil
}

// waitReady waits until the port accepts connections (the server then
// answers commands: it binds after loading, and it loads nothing).
func (r *Redis) waitReady(done <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", r.Addr())
		if err == nil {
			conn.Close()
			return nil
		}
		select {
		case <-done:
			return errors.New("exited")
		case <-ctx.Done():
			return errors.New("not listening within 10s")
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// freePort returns a loopback port that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
