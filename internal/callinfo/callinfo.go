// Package callinfo carries, from the service to the server's call log, what one
// RPC learned from the upstream: the HTTP status of its last exchange, the
// upstream's request id, how many requests it sent and how it was answered
// otherwise (by a request another call sent, or by the cache). The server's logging
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
	mu     sync.Mutex
	u      Upstream
	caller [2]string // name and source, set by the caller guard
}

// Upstream is what one RPC learned from the upstream.
type Upstream struct {
	// Status is the HTTP status of the last answer (0 when there was none).
	Status int
	// RequestID is the last answer's X-Request-Id.
	RequestID string
	// Attempts is how many requests the call sent (0 when it was answered
	// without reaching the upstream: by validation, the rate-limit guard or
	// the cache).
	Attempts int
	// Shared is how many answers it took from a request an identical
	// concurrent call had sent.
	Shared int
	// Cached means the cache answered.
	Cached bool
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

// Record sets what the upstream answered; the last record wins.
func (i *Info) Record(u Upstream) {
	if i == nil {
		return
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	i.u = u
}

// SetCaller records who the call comes from (internal/caller's identity:
// never a token).
func (i *Info) SetCaller(name, source string) {
	if i == nil {
		return
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	i.caller = [2]string{name, source}
}

// Attempts is how many requests the call sent upstream, as recorded so far.
func (i *Info) Attempts() int {
	if i == nil {
		return 0
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.u.Attempts
}

// AppendAttrs appends the recorded facts to dst as log attributes: caller
// and caller_source when known, upstream_status, upstream_request_id,
// upstream_attempts, upstream_shared and upstream_cached, each only when
// known (or true).
func (i *Info) AppendAttrs(dst []slog.Attr) []slog.Attr {
	if i == nil {
		return dst
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.caller[0] != "" {
		dst = append(dst, slog.String("caller", i.caller[0]), slog.String("caller_source", i.caller[1]))
	}
	if i.u.Status != 0 {
		dst = append(dst, slog.Int("upstream_status", i.u.Status))
	}
	if i.u.RequestID != "" {
		dst = append(dst, slog.String("upstream_request_id", i.u.RequestID))
	}
	if i.u.Attempts != 0 {
		dst = append(dst, slog.Int("upstream_attempts", i.u.Attempts))
	}
	if i.u.Shared != 0 {
		dst = append(dst, slog.Int("upstream_shared", i.u.Shared))
	}
	if i.u.Cached {
		dst = append(dst, slog.Bool("upstream_cached", true))
	}
	return dst
}
