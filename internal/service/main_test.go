package service

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine outlives them: an
// upstream call, a retry wait or a connection left running after its caller
// has gone.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
