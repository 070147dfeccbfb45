package sandbox

import (
	"sync"
	"time"
)

// Versions whose phase changes while they are read, so that a watcher (and a
// new user of `make run`) can see a version become ready. Both belong to
// PluginID in Environment.
const (
	// ProcessingVersionID is PROCESSING when first read, and READY a few
	// seconds later (see WithLifecycle).
	ProcessingVersionID = "ver-56789"
	// FailingVersionID is PROCESSING when first read, and FAILED, with an
	// error_message, a few seconds later.
	FailingVersionID = "ver-67890"
)

const (
	defaultProcessing = 5 * time.Second
	// lifecycleRestart is how many processing periods a version stays
	// terminal before the next read starts its lifecycle again, so that the
	// demonstration can be watched more than once per sandbox.
	lifecycleRestart = 12
)

// WithLifecycle sets how long ProcessingVersionID and FailingVersionID stay
// PROCESSING after they are first read (default 5s). Once terminal, they stay
// so for twelve times as long; the read after that starts them over.
func WithLifecycle(processing time.Duration) Option {
	return func(c *config) {
		if processing > 0 {
			c.processing = processing
		}
	}
}

// lifecycle remembers when each changing version started processing.
type lifecycle struct {
	processing time.Duration

	mu      sync.Mutex
	started map[string]time.Time // by version id
}

// terminalPhase is where each changing version ends up, and why.
var terminalPhase = map[string]versionStatus{
	ProcessingVersionID: {Phase: "READY"},
	FailingVersionID: {Phase: "FAILED",
		ErrorMessage: "Version creation failed due to invalid plugin archive: the manifest names a connector class the archive does not contain."},
}

// apply returns v as it reads at now: PROCESSING until the processing period
// since its first read has passed, then its terminal phase, with updated_at
// set to when the phase last changed.
func (l *lifecycle) apply(v pluginVersion, now time.Time) pluginVersion {
	terminal, ok := terminalPhase[v.ID]
	if !ok {
		return v
	}
	l.mu.Lock()
	start, seen := l.started[v.ID]
	if !seen || now.Sub(start) >= time.Duration(lifecycleRestart+1)*l.processing || now.Before(start) {
		start = now
		l.started[v.ID] = start
	}
	l.mu.Unlock()

	ready := start.Add(l.processing)
	if v.Metadata != nil {
		m := *v.Metadata
		m.UpdatedAt = start.UTC()
		if !now.Before(ready) {
			m.UpdatedAt = ready.UTC()
		}
		v.Metadata = &m
	}
	if now.Before(ready) {
		v.Status = versionStatus{Phase: "PROCESSING"}
	} else {
		v.Status = terminal
	}
	return v
}
