package fleet

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine outlives them: a
// writer, a receiver or a connection of a Fleet that was closed.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
