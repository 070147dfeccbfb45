package testutil

import (
	"testing"

	"github.com/acme/plugin-facade/internal/sandbox"
)

// StartSandbox starts a sandbox upstream with opts on loopback, closed when
// t ends.
func StartSandbox(t testing.TB, opts ...sandbox.Option) *sandbox.Server {
	t.Helper()
	sb, err := sandbox.Start(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sb.Close() })
	return sb
}
