package service

// WatchObserver is told what the watches' poll loops do, for metrics. Each
// func is optional, must be safe for concurrent use and quick.
type WatchObserver struct {
	// Loop is called with +1 when a poll loop starts on this replica (one
	// per version and credential watched here, whether it polls or, in a
	// fleet, relays another replica's polls) and with -1 when it ends.
	Loop func(delta int)
	// Poll is called after each poll of the upstream, with whether it
	// answered with the version (false: a failure, retried or final).
	Poll func(ok bool)
}

// WithWatchObserver sets the observer of the watches' poll loops.
func WithWatchObserver(o WatchObserver) Option {
	return func(c *config) { c.watchObserver = o }
}

func (o WatchObserver) loop(delta int) {
	if o.Loop != nil {
		o.Loop(delta)
	}
}

func (o WatchObserver) poll(ok bool) {
	if o.Poll != nil {
		o.Poll(ok)
	}
}
