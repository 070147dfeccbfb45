// Package callinfo carries, from the service to the server's call log, what one
// RPC learned from the upstream: the HTTP status of its last exchange, the
// upstream's request id and how many attempts it took. The server's logging
// interceptor puts an Info in the call's context before the handler runs and
// reads it after; the service records into it. Neither knows the other.
package callinfo

import (
	"context"
	"log/slog"
	"sync"
)

// Info is the upstream side of one RPC. The zero value records nothing yet; a
// nil *Info ignores Record, so handlers called without the interceptor (as in
// unit tests) need no special case.
type Info struct {
	mu        sync.Mutex
	status    int
	requestID string
	attempts  int
}

type key struct{}

// NewContext returns ctx carrying a new, empty Info, and that Info.
func NewContext(ctx context.Context) (context.Context, *Info) {
	i := &Info{}
	return context.WithValue(ctx, key{}, i), i
}

// FromContext returns the Info in ctx, or nil.
func FromContext(ctx context.Context) *Info {
	i, _ := ctx.Value(key{}).(*Info)
	return i
}

// Record sets what the upstream answered: status is the HTTP status of the
// last exchange (0 when there was no answer), requestID its X-Request-Id, and
// attempts the number of HTTP exchanges tried (0 when the call was answered
// without reaching the upstream, by validation or the rate-limit guard).
func (i *Info) Record(status int, requestID string, attempts int) {
	if i == nil {
		return
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	i.status, i.requestID, i.attempts = status, requestID, attempts
}

// Attrs returns the recorded facts as log attributes: upstream_status,
// upstream_request_id and upstream_attempts, each only when known.
func (i *Info) Attrs() []slog.Attr {
	if i == nil {
		return nil
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	var a []slog.Attr
	if i.status != 0 {
		a = append(a, slog.Int("upstream_status", i.status))
	}
	if i.requestID != "" {
		a = append(a, slog.String("upstream_request_id", i.requestID))
	}
	if i.attempts != 0 {
		a = append(a, slog.Int("upstream_attempts", i.attempts))
	}
	return a
}
