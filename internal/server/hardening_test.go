package server

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
	"net/url"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	pluginv1 "github.com/acme/plugin-facade/gen/go/confluent/plugin/v1"
	"github.com/acme/plugin-facade/internal/sandbox"
	"github.com/acme/plugin-facade/internal/service"
	"github.com/acme/plugin-facade/internal/telemetry"
	"github.com/acme/plugin-facade/internal/testutil"
	"github.com/acme/plugin-facade/internal/upstream"
	"github.com/acme/plugin-facade/internal/upstream/upstreamtest"
)

// The attacks of issue 16, each against the real listeners on loopback,
// bounded in count and time, with the upstream requests they caused counted.

// hardened is a facade in front of the sandbox, as cmd/server wires it, with
// its listeners' addresses and its logs.
type hardened struct {
	*stack
	sb       *sandbox.Server
	srv      *Server
	grpcAddr string
	httpAddr string
	logs     *logBuffer
	tlsCA    *testutil.CA // nil: plaintext
}

func startHardened(t *testing.T, tlsOn bool, opts ...Option) *hardened {
	t.Helper()
	sb := startSandbox(t, sandbox.WithLifecycle(time.Minute))
	tp, err := telemetry.NewTracerProvider(t.Context(), "test", func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	uc, err := upstream.New(sb.URL(), upstream.WithTransport(telemetry.Transport(tp)))
	if err != nil {
		t.Fatal(err)
	}
	h := &hardened{sb: sb, logs: &logBuffer{}}
	opts = append([]Option{WithLogger(h.logs.logger()), WithTracerProvider(tp)}, opts...)
	if tlsOn {
		h.tlsCA = testutil.NewCA(t, "hardening CA")
		opts = append(opts, WithTLS(&tls.Config{Certificates: []tls.Certificate{h.tlsCA.Issue(t, "facade")}}))
	}
	r := serveWith(t, service.New(uc, service.WithDefaultCredentials(sandboxKey)), []func(*Server){func(s *Server) { h.srv = s }}, opts...)
	h.grpcAddr, h.httpAddr = r.grpcAddr, r.httpAddr
	creds := insecure.NewCredentials()
	h.stack = &stack{sandbox: sb, httpURL: "http://" + r.httpAddr}
	if tlsOn {
		creds = credentials.NewTLS(&tls.Config{RootCAs: h.tlsCA.Pool})
		h.httpURL = "https://" + r.httpAddr
	}
	conn, err := grpc.NewClient(r.grpcAddr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	h.conn, h.client = conn, pluginv1.NewPluginServiceClient(conn)
	return h
}

// upstreamCalls counts the sandbox's requests while f runs.
func (h *hardened) upstreamCalls(f func()) int64 {
	before := h.sb.Requests()
	f()
	return h.sb.Requests() - before
}

// rawHTTP sends req on a new TCP connection to addr and returns what the
// server answered before closing the connection, and how long that took. It
// fails the test if the connection is still open after limit.
func rawHTTP(t *testing.T, addr, req string, limit time.Duration) (string, time.Duration) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	_ = c.SetDeadline(start.Add(limit))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("the connection was still open after %v (read: %v); got %q", limit, err, got)
	}
	return string(got), time.Since(start)
}

// A request declaring a body it never sends is answered at once and its
// connection closed, long before the read deadline; the upstream never sees it.
func TestSlowBodyIsClosedWithinTheDeadline(t *testing.T) {
	h := startHardened(t, false, WithLimits(Limits{ReadTimeout: time.Second, MaxConcurrentStreams: 100,
		MaxHeaderBytes: DefaultMaxHeaderBytes, MaxInFlight: 8, MaxWatchers: 8, MaxWatchersPerCaller: 8}))
	path := "/connect/v1/custom-connector-plugins/" + sandbox.PluginID
	tests := []struct {
		name, req  string
		wantStatus string
	}{
		{"GET declaring a body", "GET " + path + " HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n", "413"},
		{"GET with a chunked body", "GET " + path + " HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n", "413"},
		{"POST declaring a body", "POST " + path + " HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\nab", "405"},
		{"headers never finished", "GET " + path + " HTTP/1.1\r\nHost: x\r\nX-Slow: ", ""},
		// The RPC routes take a body: the whole-request deadline closes it.
		{"Connect POST declaring a body", "POST /" + pluginv1.PluginService_GetConnectorPlugin_FullMethodName[1:] +
			" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got string
			var took time.Duration
			calls := h.upstreamCalls(func() { got, took = rawHTTP(t, h.httpAddr, tt.req, 4*time.Second) })
			if tt.wantStatus != "" && !strings.HasPrefix(got, "HTTP/1.1 "+tt.wantStatus) {
				t.Errorf("answer %q, want %s", firstLine(got), tt.wantStatus)
			}
			if tt.wantStatus != "" && took > time.Second {
				t.Errorf("closed after %v, want at once", took)
			}
			if calls != 0 {
				t.Errorf("%d upstream calls, want 0", calls)
			}
		})
	}
}

func firstLine(s string) string { l, _, _ := strings.Cut(s, "\r\n"); return l }

// An RPC on the HTTP listener (Connect, gRPC-Web) takes a body of one request
// message, not more: a larger one is refused and never reaches the upstream.
func TestRPCBodyIsBounded(t *testing.T) {
	h := startHardened(t, false)
	url := h.httpURL + pluginv1.PluginService_GetConnectorPlugin_FullMethodName
	req, _ := proto.Marshal(&pluginv1.GetConnectorPluginRequest{Id: sandbox.PluginID})
	// An unknown field padding the message past the bound.
	padded := protowire.AppendBytes(protowire.AppendTag(bytes.Clone(req), 1000, protowire.BytesType), make([]byte, maxRecvMsgBytes))
	tests := []struct {
		name string
		body []byte
		ok   bool
	}{
		{"a request", req, true},
		{"a request padded past the bound", padded, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var resp *http.Response
			var err error
			calls := h.upstreamCalls(func() {
				r, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, url, bytes.NewReader(tt.body))
				r.Header.Set("Content-Type", "application/proto")
				r.Header.Set("Connect-Protocol-Version", "1")
				resp, err = http.DefaultClient.Do(r)
			})
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if got := resp.StatusCode == 200; got != tt.ok || (!tt.ok && calls != 0) {
				t.Errorf("%d %.200q with %d upstream calls, want ok %v (and 0 calls if not)", resp.StatusCode, body, calls, tt.ok)
			}
		})
	}
}

// The whole-request deadline ends with the request: a call that outlasts it
// (a slow upstream, a watch) is answered in full over HTTP/1.1 and HTTP/2.
func TestReadDeadlineDoesNotCutLongCalls(t *testing.T) {
	up := upstreamtest.Start(t, upstreamtest.Response{Status: 200, Body: connectorPluginJSON, Delay: 1500 * time.Millisecond})
	uc, err := upstream.New(up.URL)
	if err != nil {
		t.Fatal(err)
	}
	ca := testutil.NewCA(t, "deadline CA")
	r := serve(t, service.New(uc, service.WithDefaultCredentials(sandboxKey)),
		WithTLS(&tls.Config{Certificates: []tls.Certificate{ca.Issue(t, "facade")}}),
		WithLimits(Limits{ReadTimeout: 300 * time.Millisecond, MaxConcurrentStreams: 100,
			MaxHeaderBytes: DefaultMaxHeaderBytes, MaxInFlight: 8, MaxWatchers: 8, MaxWatchersPerCaller: 8}))
	for _, h2 := range []bool{false, true} {
		t.Run(fmt.Sprintf("HTTP/2 %v", h2), func(t *testing.T) {
			tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool}, ForceAttemptHTTP2: h2}
			if !h2 {
				tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
			}
			defer tr.CloseIdleConnections()
			resp, err := (&http.Client{Transport: tr}).Get("https://" + r.httpAddr + "/connect/v1/custom-connector-plugins/ccp-1")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || resp.ProtoMajor != map[bool]int{false: 1, true: 2}[h2] {
				t.Errorf("HTTP/%d %d %s, want 200 after the upstream's 1.5s", resp.ProtoMajor, resp.StatusCode, body)
			}
		})
	}
}

// Metadata far beyond the header-list limit is refused by the transport; a
// few KiB pass. Neither refused call reaches the upstream.
func TestMetadataLimits(t *testing.T) {
	h := startHardened(t, false)
	req := &pluginv1.GetConnectorPluginRequest{Id: sandbox.PluginID}
	tests := []struct {
		name  string
		bytes int
		ok    bool
	}{
		{"4 KiB", 4 << 10, true},
		{"1 MiB", 1 << 20, false},
		{"just over the limit", DefaultMaxHeaderBytes + 1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := metadata.AppendToOutgoingContext(t.Context(), "x-padding", strings.Repeat("p", tt.bytes))
			var err error
			calls := h.upstreamCalls(func() { _, err = h.client.GetConnectorPlugin(ctx, req) })
			switch {
			case tt.ok && (err != nil || calls != 1):
				t.Errorf("err = %v with %d upstream calls, want success with 1", err, calls)
			case !tt.ok && (err == nil || calls != 0):
				t.Errorf("err = %v with %d upstream calls, want refused with 0", err, calls)
			}
		})
	}
	// The connection survives the refusals.
	if _, err := h.client.GetConnectorPlugin(t.Context(), req); err != nil {
		t.Errorf("a call after the refusals: %v", err)
	}
}

// Header blocks that never end (CONTINUATION after CONTINUATION) are cut off
// once past the header-list limit: the connection is closed, nothing reaches
// the upstream, and the server goes on serving.
func TestEndlessContinuationIsClosed(t *testing.T) {
	h := startHardened(t, false)
	calls := h.upstreamCalls(func() {
		c := dialH2(t, h.grpcAddr, nil)
		defer c.Close()
		closed := make(chan struct{})
		go func() {
			defer close(closed)
			for {
				f, err := c.fr.ReadFrame()
				if err != nil {
					return
				}
				if _, ok := f.(*http2.GoAwayFrame); ok {
					return
				}
			}
		}()
		hdr := c.headers(":method", "POST", ":scheme", "http", ":authority", h.grpcAddr,
			":path", pluginv1.PluginService_GetConnectorPlugin_FullMethodName, "content-type", "application/grpc")
		if err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hdr}); err != nil {
			t.Fatal(err)
		}
		pad := c.headers("x-pad", strings.Repeat("p", 4<<10))
		sent := 0
		for sent < 4<<20 { // grpc-go alone would take 16 MiB
			select {
			case <-closed:
				t.Logf("closed after %d KiB of CONTINUATION", sent>>10)
				return
			default:
			}
			if err := c.fr.WriteContinuation(1, false, pad); err != nil {
				<-closed
				t.Logf("closed after %d KiB of CONTINUATION", sent>>10)
				return
			}
			sent += len(pad)
		}
		t.Errorf("the server took %d KiB of one header block without closing the connection", sent>>10)
	})
	if calls != 0 {
		t.Errorf("%d upstream calls, want 0", calls)
	}
	if _, err := h.client.GetConnectorPlugin(t.Context(), &pluginv1.GetConnectorPluginRequest{Id: sandbox.PluginID}); err != nil {
		t.Errorf("a call after the attack: %v", err)
	}
}

// h2Conn is an HTTP/2 client connection spoken frame by frame.
type h2Conn struct {
	net.Conn
	fr  *http2.Framer
	enc *hpack.Encoder
	buf bytes.Buffer
}

// dialH2 opens an HTTP/2 connection to addr (over TLS with ALPN h2 when ca is
// set) and sends the preface and an empty SETTINGS frame.
func dialH2(t testing.TB, addr string, ca *testutil.CA) *h2Conn {
	t.Helper()
	var c net.Conn
	var err error
	if ca != nil {
		c, err = tls.Dial("tcp", addr, &tls.Config{RootCAs: ca.Pool, NextProtos: []string{"h2"}})
	} else {
		c, err = net.Dial("tcp", addr)
	}
	if err != nil {
		t.Fatal(err)
	}
	hc := &h2Conn{Conn: c}
	hc.fr = http2.NewFramer(c, bufio.NewReader(c))
	hc.enc = hpack.NewEncoder(&hc.buf)
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	if err := hc.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	return hc
}

// serverSettings reads frames until the server's first SETTINGS frame.
func (c *h2Conn) serverSettings(t *testing.T) map[http2.SettingID]uint32 {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	defer c.SetReadDeadline(time.Time{})
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		if sf, ok := f.(*http2.SettingsFrame); ok && !sf.IsAck() {
			got := map[http2.SettingID]uint32{}
			_ = sf.ForeachSetting(func(s http2.Setting) error { got[s.ID] = s.Val; return nil })
			return got
		}
	}
}

// headers encodes HEADERS fields, pseudo-headers first.
func (c *h2Conn) headers(fields ...string) []byte {
	c.buf.Reset()
	for i := 0; i+1 < len(fields); i += 2 {
		_ = c.enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
	}
	return bytes.Clone(c.buf.Bytes())
}

// The stream and header-list limits are advertised in the SETTINGS frame of
// both listeners' HTTP/2.
func TestAdvertisedHTTP2Limits(t *testing.T) {
	h := startHardened(t, true)
	for _, port := range []struct{ name, addr string }{{"gRPC", h.grpcAddr}, {"HTTPS", h.httpAddr}} {
		t.Run(port.name, func(t *testing.T) {
			c := dialH2(t, port.addr, h.tlsCA)
			defer c.Close()
			got := c.serverSettings(t)
			if v := got[http2.SettingMaxConcurrentStreams]; v != DefaultMaxConcurrentStreams {
				t.Errorf("SETTINGS_MAX_CONCURRENT_STREAMS = %d, want %d", v, DefaultMaxConcurrentStreams)
			}
			if v := got[http2.SettingMaxHeaderListSize]; v < DefaultMaxHeaderBytes || v > DefaultMaxHeaderBytes+4<<10 {
				t.Errorf("SETTINGS_MAX_HEADER_LIST_SIZE = %d, want about %d", v, DefaultMaxHeaderBytes)
			}
		})
	}
}

// grpcFrame is a gRPC length-prefixed message.
func grpcFrame(m proto.Message) []byte {
	b, _ := proto.Marshal(m)
	out := make([]byte, 5, 5+len(b))
	binary.BigEndian.PutUint32(out[1:], uint32(len(b)))
	return append(out, b...)
}

// rapidReset opens streams on conns to addr and resets each at once
// (HEADERS, DATA for gRPC, RST_STREAM in one write), n in all, reconnecting
// when the server sends GOAWAY or closes, as an attacker would. open returns
// the frames of stream i's request.
func rapidReset(t *testing.T, addr string, ca *testutil.CA, n int, open func(c *h2Conn, id uint32, i int) error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	sent := 0
	for sent < n && time.Now().Before(deadline) {
		c := dialH2(t, addr, ca)
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { // drain what the server says, until it closes
			defer wg.Done()
			for {
				if _, err := c.fr.ReadFrame(); err != nil {
					return
				}
			}
		}()
		for id := uint32(1); sent < n; id += 2 {
			if err := open(c, id, sent); err != nil {
				break
			}
			if err := c.fr.WriteRSTStream(id, http2.ErrCodeCancel); err != nil {
				break
			}
			sent++
		}
		c.Close()
		wg.Wait()
	}
	if sent < n {
		t.Fatalf("sent %d of %d reset streams within 10s", sent, n)
	}
}

// A rapid-reset burst on the gRPC port and on the HTTPS REST port: at most 10%
// of the reset streams reach the upstream, a legitimate call still succeeds,
// and the canceled calls' log lines are sampled.
func TestRapidReset(t *testing.T) {
	const n = 2000
	h := startHardened(t, true)
	tests := []struct {
		name string
		addr string
		open func(c *h2Conn, id uint32, i int) error
	}{
		{"gRPC", h.grpcAddr, grpcReset(h.grpcAddr)},
		// The same gRPC, on the HTTPS port (vanguard's RPC routes).
		{"HTTPS gRPC", h.httpAddr, grpcReset(h.httpAddr)},
		{"HTTPS REST", h.httpAddr, func(c *h2Conn, id uint32, i int) error {
			hdr := c.headers(":method", "GET", ":scheme", "https", ":authority", h.httpAddr,
				":path", fmt.Sprintf("/connect/v1/custom-connector-plugins/ccp-%05d", i))
			return c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hdr, EndHeaders: true, EndStream: true})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			seen := len(callLines(t, h.logs))
			start := time.Now()
			calls := h.upstreamCalls(func() {
				rapidReset(t, tt.addr, h.tlsCA, n, tt.open)
				// Calls still running when the burst ends may yet call upstream.
				waitFor(t, func() bool { return h.srv.grpcCalls.held() == 0 && h.srv.restCalls.held() == 0 })
			})
			took := time.Since(start)
			t.Logf("%d reset streams in %v: %d upstream calls (%.1f%%)", n, took.Round(time.Millisecond), calls, 100*float64(calls)/n)
			if calls > n/10 {
				t.Errorf("%d of %d reset streams reached the upstream, want at most 10%%", calls, n)
			}
			if _, err := h.client.GetConnectorPlugin(t.Context(), &pluginv1.GetConnectorPluginRequest{Id: sandbox.PluginID}); err != nil {
				t.Errorf("a legitimate call after the burst: %v", err)
			}
			canceled := 0
			for _, l := range callLines(t, h.logs)[seen:] {
				if l["grpc.code"] == codes.Canceled.String() {
					canceled++
				}
			}
			// One line per second per method and code, plus the first.
			if limit := int(took/time.Second) + 2; canceled > limit {
				t.Errorf("%d log lines of canceled calls in %v, want at most %d", canceled, took, limit)
			}
		})
	}
}

// callLines are the call log's lines so far.
func callLines(t *testing.T, logs *logBuffer) []map[string]any {
	if logs.String() == "" {
		return nil
	}
	return logs.lines(t, "finished call")
}

// grpcReset opens stream id as a GetConnectorPlugin call to authority, for
// a distinct plugin per stream: no coalescing to hide behind.
func grpcReset(authority string) func(c *h2Conn, id uint32, i int) error {
	return func(c *h2Conn, id uint32, i int) error {
		hdr := c.headers(":method", "POST", ":scheme", "https", ":authority", authority,
			":path", pluginv1.PluginService_GetConnectorPlugin_FullMethodName,
			"content-type", "application/grpc", "te", "trailers")
		if err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hdr, EndHeaders: true}); err != nil {
			return err
		}
		return c.fr.WriteData(id, true, grpcFrame(&pluginv1.GetConnectorPluginRequest{Id: fmt.Sprintf("ccp-%05d", i)}))
	}
}

// waitFor polls cond until it holds, for at most 5 seconds.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A caller's baggage and tracestate stop at the facade; its traceparent's
// trace goes on to the upstream, over gRPC and REST.
func TestBaggageAndTraceStateAreNotForwarded(t *testing.T) {
	up := upstreamtest.Start(t, upstreamtest.Response{Status: 200, Body: connectorPluginJSON})
	tp, err := telemetry.NewTracerProvider(t.Context(), "test", func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	uc, err := upstream.New(up.URL, upstream.WithTransport(telemetry.Transport(tp)))
	if err != nil {
		t.Fatal(err)
	}
	s := startServer(t, service.New(uc, service.WithDefaultCredentials(sandboxKey)), nil, WithTracerProvider(tp))
	const (
		traceID     = "4bf92f3577b34da6a3ce929d0e0e4736"
		traceparent = "00-" + traceID + "-00f067aa0ba902b7-01"
	)
	caller := []string{"traceparent", traceparent, "tracestate", "v=evil", "baggage", "tenant=evil"}
	check := func(protocol string, r *http.Request) {
		if got := r.Header.Get("Traceparent"); !strings.Contains(got, traceID) {
			t.Errorf("%s: traceparent %q, want trace %s", protocol, got, traceID)
		}
		for _, h := range []string{"Tracestate", "Baggage"} {
			if v, ok := r.Header[h]; ok {
				t.Errorf("%s: %s %q forwarded to the upstream", protocol, h, v)
			}
		}
	}
	ctx := metadata.AppendToOutgoingContext(t.Context(), caller...)
	if _, err := s.client.GetConnectorPlugin(ctx, &pluginv1.GetConnectorPluginRequest{Id: "ccp-1"}); err != nil {
		t.Fatal(err)
	}
	check("gRPC", up.Last(t))
	if r := s.get(t, "/connect/v1/custom-connector-plugins/ccp-1", caller...); r.status != 200 {
		t.Fatalf("REST: %d %s", r.status, r.body)
	}
	check("REST", up.Last(t))
	if up.Count() != 2 {
		t.Errorf("%d upstream requests, want 2", up.Count())
	}
}

// A credential over 8 KiB is refused before anything reaches the upstream;
// an 8 KiB one is sent on (and refused by the upstream, to which it means
// nothing).
func TestLongCredentialIsRefused(t *testing.T) {
	h := startHardened(t, false)
	bearer := func(n int) string { return "Bearer " + strings.Repeat("t", n-len("Bearer ")) }
	tests := []struct {
		name      string
		value     string
		wantCalls int64
	}{
		{"8 KiB", bearer(upstream.MaxAuthorizationBytes), 1},
		{"9 KiB", bearer(9 << 10), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name+" over gRPC", func(t *testing.T) {
			ctx := metadata.AppendToOutgoingContext(t.Context(), "authorization", tt.value)
			var err error
			calls := h.upstreamCalls(func() {
				_, err = h.client.GetConnectorPlugin(ctx, &pluginv1.GetConnectorPluginRequest{Id: sandbox.PluginID})
			})
			if status.Code(err) != codes.Unauthenticated || calls != tt.wantCalls {
				t.Errorf("%v with %d upstream calls, want UNAUTHENTICATED with %d", err, calls, tt.wantCalls)
			}
		})
		t.Run(tt.name+" over REST", func(t *testing.T) {
			var r restResponse
			calls := h.upstreamCalls(func() {
				r = h.get(t, "/connect/v1/custom-connector-plugins/"+sandbox.PluginID, "Authorization", tt.value)
			})
			if r.status != http.StatusUnauthorized || calls != tt.wantCalls {
				t.Errorf("%d with %d upstream calls, want 401 with %d", r.status, calls, tt.wantCalls)
			}
			if bytes.Contains(r.body, []byte("tttttttt")) {
				t.Errorf("the answer repeats the credential: %.200s", r.body)
			}
		})
	}
}

// A form POST to a version's path is not served as the GET it would name,
// nor is a method override; the upstream never hears of either.
func TestFormPostIsRefused(t *testing.T) {
	h := startHardened(t, false)
	path := h.httpURL + "/ccpm/v1/plugins/" + sandbox.PluginID + "/versions/" + sandbox.VersionID
	tests := []struct {
		name   string
		method string
		header http.Header
		body   string
		want   int
	}{
		{"form POST", http.MethodPost, http.Header{"Content-Type": {"application/x-www-form-urlencoded"}},
			"environment=" + sandbox.Environment, http.StatusMethodNotAllowed},
		{"form POST with a method override", http.MethodPost, http.Header{"Content-Type": {"application/x-www-form-urlencoded"},
			"X-Http-Method-Override": {"GET"}}, "environment=" + sandbox.Environment, http.StatusMethodNotAllowed},
		{"PUT", http.MethodPut, nil, "{}", http.StatusMethodNotAllowed},
		{"GET with a form body", http.MethodGet, http.Header{"Content-Type": {"application/x-www-form-urlencoded"}},
			"environment=" + sandbox.Environment, http.StatusRequestEntityTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(t.Context(), tt.method, path, strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range tt.header {
				req.Header[k] = v
			}
			var resp *http.Response
			calls := h.upstreamCalls(func() {
				if resp, err = http.DefaultClient.Do(req); err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			})
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tt.want || calls != 0 {
				t.Errorf("%d with %d upstream calls, want %d with 0", resp.StatusCode, calls, tt.want)
			}
		})
	}
	if r := h.get(t, "/ccpm/v1/plugins/"+sandbox.PluginID+"/versions/"+sandbox.VersionID+"?environment="+sandbox.Environment); r.status != 200 {
		t.Errorf("the GET itself: %d %s", r.status, r.body)
	}
}

// Error bodies repeat at most a short, escaped prefix of what the caller
// sent: a 2,500-value query, a long path, control characters.
func TestErrorBodiesEchoLittle(t *testing.T) {
	h := startHardened(t, false)
	version := "/ccpm/v1/plugins/" + sandbox.PluginID + "/versions/" + sandbox.VersionID
	many := func(n int, v string) string {
		q := url.Values{"environment": make([]string, n)}
		for i := range q["environment"] {
			q["environment"][i] = v
		}
		return q.Encode()
	}
	tests := []struct {
		name, path string
		want       int
	}{
		{"2,500 values", version + "?" + many(2500, "env-00000"), http.StatusRequestHeaderFieldsTooLarge},
		{"1,000 short values", version + "?" + many(1000, "e"), http.StatusBadRequest},
		{"a long unknown path", "/" + strings.Repeat("x", 12<<10), http.StatusNotFound},
		{"control characters", "/nope%0d%0aX-Evil:%201" + strings.Repeat("%01", 50), http.StatusNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r restResponse
			calls := h.upstreamCalls(func() { r = h.get(t, tt.path) })
			if r.status != tt.want || calls != 0 {
				t.Errorf("%d with %d upstream calls, want %d with 0", r.status, calls, tt.want)
			}
			if len(r.body) >= 4<<10 {
				t.Errorf("a %d-byte answer, want under 4 KiB", len(r.body))
			}
			if bytes.ContainsAny(r.body, "\r\x01") {
				t.Errorf("control characters echoed unescaped: %q", r.body)
			}
		})
	}
}

func TestEcho(t *testing.T) {
	tests := []struct{ in, want string }{
		{"/connect/v1/x", "/connect/v1/x"},
		{"a\r\nb\x01", `a\r\nb\x01`},
		{"é", `\u00e9`},
		{strings.Repeat("x", 200), strings.Repeat("x", maxEcho) + "... (72 more bytes)"},
		{strings.Repeat("x", maxEcho-1) + "é", strings.Repeat("x", maxEcho-1) + "... (2 more bytes)"},
	}
	for _, tt := range tests {
		if got := echo(tt.in); got != tt.want {
			t.Errorf("echo(%.20q...) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// Watchers beyond the caps are refused, per caller and in total, over gRPC
// and REST; those that leave, read or not, give back their place and their
// memory.
func TestWatcherCaps(t *testing.T) {
	const perCaller, total = 3, 5
	callerOf := func(ctx context.Context) string {
		md, _ := metadata.FromIncomingContext(ctx)
		return strings.Join(md.Get("x-test-caller"), ",")
	}
	h := startHardened(t, false, WithCallerKey(callerOf), WithLimits(Limits{ReadTimeout: time.Second,
		MaxConcurrentStreams: 100, MaxHeaderBytes: DefaultMaxHeaderBytes, MaxInFlight: 8,
		MaxWatchers: total, MaxWatchersPerCaller: perCaller}))
	req := &pluginv1.WatchPluginVersionRequest{PluginId: sandbox.PluginID, Id: sandbox.ProcessingVersionID, Environment: sandbox.Environment}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	// open opens a watch as caller and waits for its first message, or
	// returns the error that refused it. The stream is never read again.
	open := func(caller string) error {
		stream, err := h.client.WatchPluginVersion(metadata.AppendToOutgoingContext(ctx, "x-test-caller", caller), req)
		if err != nil {
			return err
		}
		_, err = stream.Recv()
		return err
	}
	for i := range perCaller {
		if err := open("a"); err != nil {
			t.Fatalf("watch %d of caller a: %v", i+1, err)
		}
	}
	if err := open("a"); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("caller a's watch %d: %v, want RESOURCE_EXHAUSTED", perCaller+1, err)
	}
	for i := range total - perCaller {
		if err := open("b"); err != nil {
			t.Fatalf("watch %d of caller b: %v", i+1, err)
		}
	}
	if err := open("c"); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("watch %d in all: %v, want RESOURCE_EXHAUSTED", total+1, err)
	}
	r := h.get(t, "/ccpm/v1/plugins/"+sandbox.PluginID+"/versions/"+sandbox.ProcessingVersionID+":watch?environment="+sandbox.Environment, "X-Test-Caller", "c")
	if r.status != http.StatusTooManyRequests || !bytes.Contains(r.body, []byte("too_many_watchers")) || r.header.Get("Retry-After") != "1" {
		t.Errorf("REST watch beyond the cap: %d %s (Retry-After %q), want 429 too_many_watchers, Retry-After 1", r.status, r.body, r.header.Get("Retry-After"))
	}
	if got := h.srv.watchers.held(); got != total {
		t.Errorf("%d watchers held, want %d", got, total)
	}
	cancel()
	waitFor(t, func() bool { return h.srv.watchers.held() == 0 })
	if err := open("c"); err == nil || status.Code(err) != codes.Canceled {
		// ctx is canceled: a new watch needs a new context.
		_ = err
	}
	stream, err := h.client.WatchPluginVersion(metadata.AppendToOutgoingContext(t.Context(), "x-test-caller", "c"), req)
	if err == nil {
		_, err = stream.Recv()
	}
	if err != nil {
		t.Errorf("a watch once the others left: %v", err)
	}
}

// Memory held by never-read watchers is released when they disconnect.
func TestWatcherMemoryIsReleased(t *testing.T) {
	const n = 200
	l := DefaultLimits()
	l.MaxWatchersPerCaller = n // every watcher here is one caller, 127.0.0.1
	h := startHardened(t, false, WithLimits(l))
	req := &pluginv1.WatchPluginVersionRequest{PluginId: sandbox.PluginID, Id: sandbox.ProcessingVersionID, Environment: sandbox.Environment}
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapInuse
	}
	before, goroutines := heap(), runtime.NumGoroutine()
	ctx, cancel := context.WithCancel(t.Context())
	var conns []*grpc.ClientConn
	for i := range n {
		// A connection each, as many separate clients would have.
		conn, err := grpc.NewClient(h.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, conn)
		stream, err := pluginv1.NewPluginServiceClient(conn).WatchPluginVersion(ctx, req)
		if err == nil {
			_, err = stream.Recv()
		}
		if err != nil {
			t.Fatalf("watch %d: %v", i, err)
		}
	}
	open := heap()
	cancel()
	for _, c := range conns {
		c.Close()
	}
	waitFor(t, func() bool { return h.srv.watchers.held() == 0 && runtime.NumGoroutine() <= goroutines+10 })
	grown := int64(open) - int64(before)
	// The heap holds more than the watchers (the sandbox's, the clients'
	// connections, which closing tears down after Close returns), so "most"
	// is more than half, once the teardown is over: the heap is read again
	// until it is, or until a leak is plain (waitFor's deadline).
	var left int64
	deadline := time.Now().Add(5 * time.Second)
	for left = int64(heap()) - int64(before); left > grown/2 && time.Now().Before(deadline); left = int64(heap()) - int64(before) {
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("%d watchers: heap in use %+d KiB open (%.1f KiB each, client side included), %+d KiB after they left",
		n, grown>>10, float64(grown)/1024/n, left>>10)
	if left > grown/2 {
		t.Errorf("heap %+d KiB 5s after the watchers left, want most of the %+d KiB they took back", left>>10, grown>>10)
	}
}

// Beyond MaxInFlight calls at once on a listener, a call is refused at once
// (RESOURCE_EXHAUSTED, 429) without reaching the upstream.
func TestInFlightBound(t *testing.T) {
	up := upstreamtest.Start(t, upstreamtest.Response{Status: 200, Body: connectorPluginJSON, Delay: time.Second})
	uc, err := upstream.New(up.URL)
	if err != nil {
		t.Fatal(err)
	}
	s := startServer(t, service.New(uc, service.WithDefaultCredentials(sandboxKey)), nil, WithLimits(Limits{
		ReadTimeout: time.Second, MaxConcurrentStreams: 100, MaxHeaderBytes: DefaultMaxHeaderBytes,
		MaxInFlight: 2, MaxWatchers: 8, MaxWatchersPerCaller: 8}))
	var wg sync.WaitGroup
	for i := range 2 { // distinct ids: two exchanges, not one shared
		wg.Go(func() {
			_, _ = s.client.GetConnectorPlugin(t.Context(), &pluginv1.GetConnectorPluginRequest{Id: fmt.Sprintf("ccp-%d", i)})
		})
	}
	for up.Count() < 2 {
		runtime.Gosched()
	}
	_, err = s.client.GetConnectorPlugin(t.Context(), &pluginv1.GetConnectorPluginRequest{Id: "ccp-3"})
	if status.Code(err) != codes.ResourceExhausted {
		t.Errorf("gRPC call 3: %v, want RESOURCE_EXHAUSTED", err)
	}
	// REST has its own bound: two of its calls pass while gRPC's are full.
	r := s.get(t, "/connect/v1/custom-connector-plugins/ccp-4")
	if r.status != 200 {
		t.Errorf("REST call: %d %s, want 200", r.status, r.body)
	}
	wg.Wait()
	if got := up.Count(); got != 3 {
		t.Errorf("%d upstream requests, want 3", got)
	}
}

// Garbage where a watch request should be is the caller's fault: logged at
// INFO as INVALID_ARGUMENT, not as a server fault. (The caller gets grpc-go's
// own INTERNAL, written before the handler returns.)
func TestUndecodableWatchRequest(t *testing.T) {
	h := startHardened(t, false)
	desc := &grpc.StreamDesc{ServerStreams: true}
	stream, err := h.conn.NewStream(t.Context(), desc, pluginv1.PluginService_WatchPluginVersion_FullMethodName, grpc.ForceCodec(rawCodec{}))
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.SendMsg([]byte{0xff, 0xff, 0xff, 0xff}); err != nil {
		t.Fatal(err)
	}
	_ = stream.CloseSend()
	var out []byte
	if err = stream.RecvMsg(&out); err == nil {
		t.Fatal("garbage accepted")
	}
	waitFor(t, func() bool { return len(callLines(t, h.logs)) > 0 })
	for _, l := range callLines(t, h.logs) {
		if l["level"] != "INFO" || l["grpc.code"] != codes.InvalidArgument.String() {
			t.Errorf("logged at %v with %v, want INFO with InvalidArgument", l["level"], l["grpc.code"])
		}
	}
}

// rawCodec sends and receives messages as the bytes they are.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return v.([]byte), nil }
func (rawCodec) Unmarshal(data []byte, v any) error {
	*(v.(*[]byte)) = append([]byte(nil), data...)
	return nil
}
func (rawCodec) Name() string { return "proto" }

// connectorPluginJSON is a connector plugin as the upstream answers it.
const connectorPluginJSON = `{"api_version":"connect/v1","kind":"CustomConnectorPlugin","id":"ccp-1"}`
