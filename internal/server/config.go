package server

import (
	"time"

	"github.com/acme/plugin-facade/internal/settings"
)

// Config is what a deployment chooses about the servers; their dependencies
// (a logger, a registry, a tracer provider, TLS material) come as Options.
// Validate is the one check of every field.
type Config struct {
	// ShutdownTimeout is WithShutdownTimeout's bound.
	ShutdownTimeout time.Duration
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{ShutdownTimeout: DefaultShutdownTimeout}
}

// Validate returns every invalid field as a *settings.Problem.
func (c Config) Validate() error {
	var ps settings.Problems
	ps.Check(c.ShutdownTimeout > 0, "ShutdownTimeout", "must be positive")
	return ps.Err()
}

// Options returns the options that apply c to a Server.
func (c Config) Options() []Option {
	return []Option{WithShutdownTimeout(c.ShutdownTimeout)}
}
