package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"time"
)

// Redis is a redis-server process for the facades that share their state,
// started empty, persisting nothing.
type Redis struct {
	*Process
	URL string
	dir string
}

// StartRedis starts redis-server from PATH on a free loopback port. It
// returns exec.ErrNotFound (wrapped) when redis-server is not installed.
func StartRedis() (*Redis, error) {
	path, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, err
	}
	addr, err := FreeAddr()
	if err != nil {
		return nil, err
	}
	host, port, _ := net.SplitHostPort(addr)
	dir, err := os.MkdirTemp("", "bench-redis-")
	if err != nil {
		return nil, err
	}
	p, err := StartProcess("redis", path, []string{"--bind", host, "--port", port, "--save", "", "--appendonly", "no",
		"--dir", dir, "--loglevel", "warning"})
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	r := &Redis{Process: p, URL: "redis://" + addr + "/0", dir: dir}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			conn.Close()
			return r, nil
		}
		if exited, werr := p.Exited(); exited {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("redis-server exited before it was ready: %v\n%s", werr, p.Stderr())
		}
		if ctx.Err() != nil {
			r.Stop()
			return nil, errors.Join(errors.New("redis-server not listening within 10s"), err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop stops the server and removes its directory.
func (r *Redis) Stop() error {
	defer os.RemoveAll(r.dir)
	return r.Process.Stop()
}
