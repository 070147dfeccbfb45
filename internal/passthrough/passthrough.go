// Package passthrough carries the upstream's JSON of a resource, exactly as
// the upstream sent it, from the service to the REST face, beside the typed
// message the service answers with. The REST face speaks the upstream's own
// dialect: writing what the upstream sent, rather than the message rebuilt,
// passes on a field or an enum value the contract does not know yet the day
// the upstream adds it. gRPC callers get the typed message alone.
//
// The REST face puts a Carrier in each request's context; the service
// attaches the JSON to the message it is about to answer with; the REST face
// takes it for that very message, and writes the message itself otherwise.
// Neither knows the other.
package passthrough

import (
	"context"
	"sync"
)

// Carrier holds the JSON of the last message attached in one call. A nil
// *Carrier ignores Attach, so that calls without one (gRPC) need no case.
type Carrier struct {
	mu  sync.Mutex
	msg any
	raw []byte
}

type key struct{}

// NewContext returns ctx carrying a new, empty Carrier, and that Carrier.
func NewContext(ctx context.Context) (context.Context, *Carrier) {
	c := &Carrier{}
	return context.WithValue(ctx, key{}, c), c
}

// Wanted reports whether the call of ctx has a Carrier: its face writes the
// JSON attached to a message in place of the message, and reads nothing else
// of it, so that the service may answer with an empty message carrying the
// JSON and spare the work of filling it.
func Wanted(ctx context.Context) bool { return FromContext(ctx) != nil }

// FromContext returns the Carrier in ctx, or nil.
func FromContext(ctx context.Context) *Carrier {
	c, _ := ctx.Value(key{}).(*Carrier)
	return c
}

// Attach records raw as the upstream's JSON of msg, for the call of ctx.
func Attach(ctx context.Context, msg any, raw []byte) {
	c := FromContext(ctx)
	if c == nil || len(raw) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.msg, c.raw = msg, raw
}

// Take returns the JSON attached to msg (the same value, not an equal one),
// and forgets it.
func (c *Carrier) Take(msg any) ([]byte, bool) {
	if c == nil {
		return nil, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.msg != msg || c.raw == nil {
		return nil, false
	}
	raw := c.raw
	c.msg, c.raw = nil, nil
	return raw, true
}
