package sandbox

import (
	"net/http"
	"strconv"
	"sync"
	"time"
)

// fixedWindow is a global fixed-window rate limiter. A window opens with the
// first counted request after the previous one has expired.
type fixedWindow struct {
	limit  int
	window time.Duration

	mu    sync.Mutex
	start time.Time // zero until the first counted request
	used  int
}

// quota is the limiter's state as reported to a client.
type quota struct {
	limit     int
	remaining int
	reset     int // seconds until the window resets, at least 1
}

// take counts one request at now and reports whether it is within the limit.
func (f *fixedWindow) take(now time.Time) (quota, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.expired(now) {
		f.start, f.used = now, 0
	}
	q := quota{limit: f.limit, reset: f.resetSeconds(now)}
	if f.used >= f.limit {
		return q, false
	}
	f.used++
	q.remaining = f.limit - f.used
	return q, true
}

// peek reports the quota at now without counting a request.
func (f *fixedWindow) peek(now time.Time) quota {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.expired(now) {
		return quota{limit: f.limit, remaining: f.limit, reset: ceilSeconds(f.window)}
	}
	return quota{limit: f.limit, remaining: f.limit - f.used, reset: f.resetSeconds(now)}
}

// expired reports whether now lies outside the current window. A clock that
// went backwards (only possible with WithClock) also opens a new window.
func (f *fixedWindow) expired(now time.Time) bool {
	return f.start.IsZero() || now.Before(f.start) || !now.Before(f.start.Add(f.window))
}

func (f *fixedWindow) resetSeconds(now time.Time) int {
	return ceilSeconds(f.start.Add(f.window).Sub(now))
}

// ceilSeconds rounds up, and never below 1: the specification documents the
// reset as an integer number of seconds, and 0 would invite a client to
// retry at once into the same exhausted window.
func ceilSeconds(d time.Duration) int {
	s := int((d + time.Second - 1) / time.Second)
	return max(s, 1)
}

func (q quota) setHeaders(h http.Header) {
	h.Set("X-RateLimit-Limit", strconv.Itoa(q.limit))
	h.Set("X-RateLimit-Remaining", strconv.Itoa(q.remaining))
	// Relative seconds, not an epoch timestamp: the specification insists.
	h.Set("X-RateLimit-Reset", strconv.Itoa(q.reset))
}
