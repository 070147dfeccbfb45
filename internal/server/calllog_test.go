package server

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/acme/plugin-facade/internal/callinfo"
)

// TestLineMemo checks that the remembered strings are those of the address
// and second asked for, whatever was asked before.
func TestLineMemo(t *testing.T) {
	a := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1111}
	b := &net.TCPAddr{IP: net.ParseIP("::1"), Port: 2222}
	unix := &net.UnixAddr{Name: "/run/x.sock", Net: "unix"}
	t0 := time.Date(2026, 12, 1, 21, 0, 0, 100, time.UTC)
	paris := time.FixedZone("CET", 3600)
	m := &lineMemo{}
	for _, tt := range []struct {
		addr net.Addr
		want string
	}{{a, "127.0.0.1:1111"}, {a, "127.0.0.1:1111"}, {b, "[::1]:2222"}, {a, "127.0.0.1:1111"}, {unix, "/run/x.sock"}, {b, "[::1]:2222"}} {
		if got := m.peerAddress(tt.addr); got != tt.want {
			t.Errorf("peerAddress(%v) = %q, want %q", tt.addr, got, tt.want)
		}
	}
	for _, tt := range []struct {
		at   time.Time
		want string
	}{
		{t0, "2026-12-01T21:00:00Z"},
		{t0.Add(900 * time.Millisecond), "2026-12-01T21:00:00Z"},
		{t0.Add(time.Second), "2026-12-01T21:00:01Z"},
		{t0.Add(time.Second).In(paris), "2026-12-01T22:00:01+01:00"},
		{t0, "2026-12-01T21:00:00Z"},
	} {
		if got := m.startTime(tt.at); got != tt.want {
			t.Errorf("startTime(%v) = %q, want %q", tt.at, got, tt.want)
		}
	}
	var none *lineMemo
	if got := none.peerAddress(a); got != "127.0.0.1:1111" {
		t.Errorf("nil memo: peerAddress = %q", got)
	}
}

// TestMethodLoggersWriteTheSameLine: a line written through a method's
// logger (its first attributes formatted once, slog.Logger.With) is the line
// written with every attribute its own, as past maxMethodLoggers, in JSON and
// text, on the gRPC server's chain and the gateway's, for several methods.
func TestMethodLoggersWriteTheSameLine(t *testing.T) {
	noTime := func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}
	ctx := peer.NewContext(context.Background(), &peer.Peer{Addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 54321}})
	ctx = metadata.NewIncomingContext(ctx, metadata.Pairs("x-forwarded-for", "10.0.0.1, 192.0.2.7"))
	start := time.Date(2026, 12, 1, 21, 0, 0, 0, time.UTC)
	for _, format := range []string{"json", "text"} {
		for _, rest := range []bool{false, true} {
			handler := func(w io.Writer) slog.Handler {
				if format == "text" {
					return slog.NewTextHandler(w, &slog.HandlerOptions{ReplaceAttr: noTime})
				}
				return slog.NewJSONHandler(w, &slog.HandlerOptions{ReplaceAttr: noTime})
			}
			var cached, own bytes.Buffer
			withLoggers := newCallLog(slog.New(handler(&cached)), rest, nil)
			without := newCallLog(slog.New(handler(&own)), rest, nil)
			for i := range maxMethodLoggers {
				without.methods.get(fmt.Sprint("/filler/", i), func() *slog.Logger { return without.log })
			}
			for _, m := range []string{"/confluent.plugin.v1.PluginService/GetPluginVersion", "/confluent.plugin.v1.PluginService/GetConnectorPlugin"} {
				for _, err := range []error{nil, status.Error(codes.NotFound, "gone")} {
					for _, c := range []callLog{withLoggers, without} {
						ctx, info := callinfo.NewContext(ctx)
						info.Record(callinfo.Upstream{Status: 200, RequestID: "r-1", Attempts: 1})
						c.finished(ctx, m, "unary", start, err)
					}
				}
			}
			// grpc.time_ms differs from one line to the next.
			timeMS := regexp.MustCompile(`"?grpc\.time_ms"?[:=]"?[0-9.e+-]+"?`)
			got, want := timeMS.ReplaceAllString(cached.String(), "T"), timeMS.ReplaceAllString(own.String(), "T")
			if got != want || strings.Count(got, "\n") != 4 {
				t.Errorf("%s, rest %v: lines through the method loggers\n%s\nwant\n%s", format, rest, got, want)
			}
		}
	}
}
