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
	// Limits bound what callers may hold of the listeners (WithLimits).
	Limits Limits
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{ShutdownTimeout: DefaultShutdownTimeout, Limits: DefaultLimits()}
}

// Validate returns every invalid field as a *settings.Problem.
func (c Config) Validate() error {
	var ps settings.Problems
	ps.Check(c.ShutdownTimeout > 0, "ShutdownTimeout", "must be positive")
	for _, p := range settings.All(c.Limits.Validate()) {
		ps.Check(false, "Limits."+p.Field, "%s", p.Reason)
	}
	return ps.Err()
}

// Options returns the options that apply c to a Server.
func (c Config) Options() []Option {
	return []Option{WithShutdownTimeout(c.ShutdownTimeout), WithLimits(c.Limits)}
}
