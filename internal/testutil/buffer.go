// Package testutil holds what the tests of several packages share. Only tests
// import it.
package testutil

import (
	"bytes"
	"sync"
)

// Buffer is a bytes.Buffer that is safe to read while others write to it: the
// output a test gives a logger, a server or a command, and reads meanwhile.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns what has been written so far.
func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
