package server

import (
	"net"
	"testing"
	"time"
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
