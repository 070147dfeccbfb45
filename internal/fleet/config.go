package fleet

import (
	"time"

	"github.com/acme/plugin-facade/internal/settings"
)

// Config is what a deployment chooses about the fleet: the Redis it shares
// state through (none: every replica on its own) and the bound of each
// operation. Validate is the one check of every field.
type Config struct {
	// URL is redis:// or rediss:// (see Open); empty means no fleet. It may
	// hold a password, which no Problem repeats.
	URL string
	// Timeout is WithTimeout's.
	Timeout time.Duration
}

// DefaultConfig returns the defaults: no Redis, DefaultTimeout.
func DefaultConfig() Config {
	return Config{Timeout: DefaultTimeout}
}

// Validate returns every invalid field as a *settings.Problem.
func (c Config) Validate() error {
	var ps settings.Problems
	if c.URL != "" {
		_, _, _, err := parseURL(c.URL)
		ps.Add("URL", err)
	}
	ps.Check(c.Timeout > 0, "Timeout", "must be positive")
	return ps.Err()
}
