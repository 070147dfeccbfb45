package upstream

import (
	"time"

	"github.com/acme/plugin-facade/internal/settings"
)

// Config is what a deployment chooses about the upstream client; everything
// else a Client needs (hooks, a transport wrapper, shared stores) comes as an
// Option. DefaultConfig has the defaults; Validate is the one check of every
// field, which cmd/server reports under each field's flag.
type Config struct {
	// BaseURL is the API's base URL (see ParseBaseURL).
	BaseURL string
	// AllowInsecure accepts a plain-HTTP BaseURL whose host is not loopback.
	AllowInsecure bool
	// MaxAttempts and MaxRetryWait are RetryPolicy's fields of that name
	// (MaxRetryWait is its MaxWait); the backoff keeps its defaults.
	MaxAttempts  int
	MaxRetryWait time.Duration
	// MaxBodyBytes caps a response body read (WithMaxBodyBytes).
	MaxBodyBytes int64
	// RateLimitGuard turns the guard on (WithRateLimitGuard).
	RateLimitGuard bool
	// CacheTTL and CacheMaxEntries are WithCache's ttl (0: no cache) and size.
	CacheTTL        time.Duration
	CacheMaxEntries int
}

// MaxAttemptsLimit is the largest MaxAttempts Validate accepts: more would
// multiply one call's load on an upstream that is already failing.
const MaxAttemptsLimit = 10

// MinMaxBodyBytes is the smallest MaxBodyBytes Validate accepts: the
// upstream's smallest failure envelope must fit.
const MinMaxBodyBytes = 1024

// DefaultCacheMaxEntries is the cache's size unless configured otherwise.
const DefaultCacheMaxEntries = 1024

// DefaultConfig returns the defaults: Confluent Cloud over HTTPS, the default
// retry policy and body cap, the guard on, no cache.
func DefaultConfig() Config {
	return Config{
		BaseURL:         DefaultBaseURL,
		MaxAttempts:     DefaultRetryPolicy.MaxAttempts,
		MaxRetryWait:    DefaultRetryPolicy.MaxWait,
		MaxBodyBytes:    DefaultMaxBodyBytes,
		RateLimitGuard:  true,
		CacheMaxEntries: DefaultCacheMaxEntries,
	}
}

// Validate returns every invalid field as a *settings.Problem.
func (c Config) Validate() error {
	var ps settings.Problems
	_, err := ParseBaseURL(c.BaseURL, c.AllowInsecure)
	ps.Add("BaseURL", err)
	ps.Check(c.MaxAttempts >= 1 && c.MaxAttempts <= MaxAttemptsLimit, "MaxAttempts", "must be between 1 and %d", MaxAttemptsLimit)
	ps.Check(c.MaxRetryWait > 0, "MaxRetryWait", "must be positive")
	ps.Check(c.MaxBodyBytes >= MinMaxBodyBytes, "MaxBodyBytes", "must be at least %d", MinMaxBodyBytes)
	ps.Check(c.CacheTTL >= 0, "CacheTTL", "must not be negative")
	ps.Check(c.CacheMaxEntries >= 1, "CacheMaxEntries", "must be at least 1")
	return ps.Err()
}

// Options returns the options that apply c to a Client; New takes c.BaseURL
// as its first argument.
func (c Config) Options() []Option {
	return []Option{
		WithInsecure(c.AllowInsecure),
		WithRetry(RetryPolicy{MaxAttempts: c.MaxAttempts, MaxWait: c.MaxRetryWait}),
		WithMaxBodyBytes(c.MaxBodyBytes),
		WithRateLimitGuard(c.RateLimitGuard),
		WithCache(c.CacheTTL, c.CacheMaxEntries),
	}
}
