package service

import (
	"time"

	"github.com/acme/plugin-facade/internal/settings"
)

// Config is what a deployment chooses about the service; its dependencies
// (the client, a logger, a watch relay, the default credential) come as
// arguments and Options. Validate is the one check of every field.
type Config struct {
	// UpstreamTimeout bounds each upstream call (WithUpstreamTimeout); 0
	// leaves the bound to the caller's deadline.
	UpstreamTimeout time.Duration
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{UpstreamTimeout: DefaultUpstreamTimeout}
}

// Validate returns every invalid field as a *settings.Problem.
func (c Config) Validate() error {
	var ps settings.Problems
	ps.Check(c.UpstreamTimeout >= 0, "UpstreamTimeout", "must not be negative")
	return ps.Err()
}

// Options returns the options that apply c to a Service.
func (c Config) Options() []Option {
	return []Option{WithUpstreamTimeout(c.UpstreamTimeout)}
}
