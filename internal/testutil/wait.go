package testutil

import (
	"net"
	"testing"
	"time"
)

// Eventually checks cond every 10ms until it holds, and fails the test if it
// still does not within the given time: a condition awaited, never a sleep
// standing in for it. what says, for the failure, what was awaited.
func Eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// FreeAddr returns a loopback address (127.0.0.1:port) that nothing listened
// on a moment ago, for a process the test starts to listen on. Prefer
// listening on port 0 where the code under test accepts a listener.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
