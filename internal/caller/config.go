package caller

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/acme/plugin-facade/internal/settings"
)

// Config is what a deployment chooses about its callers; what the Guard
// needs besides (the service's key, a logger, a registry, the fleet's
// budgets, a discovered OIDC issuer, the policy parsed from PolicyFile) comes
// as Options. Validate is the one check of every field.
type Config struct {
	// Share is WithShare's part of the key's window (0 < Share ≤ 1).
	Share float64
	// PolicyFile is the caller policy's file (LoadPolicy, WatchPolicy); empty
	// means no policy.
	PolicyFile string
	// PolicyCheck is how often WatchPolicy looks for a changed file.
	PolicyCheck time.Duration
	// OIDCIssuer and OIDCAudience, both or neither, are NewOIDC's.
	OIDCIssuer, OIDCAudience string
	// TrustedProxies is a comma-separated list of CIDR ranges
	// (WithTrustedProxies).
	TrustedProxies string
}

// DefaultConfig returns the defaults: DefaultShare, no policy (checked every
// DefaultPolicyCheck when there is one), no issuer, no trusted proxy.
func DefaultConfig() Config {
	return Config{Share: DefaultShare, PolicyCheck: DefaultPolicyCheck}
}

// Validate returns every invalid field as a *settings.Problem. It reads and
// parses the policy file, so that a bad one stops start-up with the line at
// fault.
func (c Config) Validate() error {
	var ps settings.Problems
	ps.Check(c.Share > 0 && c.Share <= 1, "Share", "must be more than 0 and at most 1")
	ps.Check(c.PolicyCheck > 0, "PolicyCheck", "must be positive")
	if c.PolicyFile != "" {
		_, err := LoadPolicy(c.PolicyFile)
		ps.Add("PolicyFile", err)
	}
	ps.Check((c.OIDCIssuer == "") == (c.OIDCAudience == ""), "OIDCIssuer", "and the OIDC audience go together: give both or neither")
	_, err := c.proxies()
	ps.Add("TrustedProxies", err)
	return ps.Err()
}

// proxies parses TrustedProxies.
func (c Config) proxies() ([]netip.Prefix, error) {
	var out []netip.Prefix
	var errs []error
	for _, r := range strings.Split(c.TrustedProxies, ",") {
		if r = strings.TrimSpace(r); r == "" {
			continue
		}
		p, err := netip.ParsePrefix(r)
		if err != nil {
			errs = append(errs, fmt.Errorf("%q is not a CIDR range such as 10.0.0.0/8", r))
			continue
		}
		out = append(out, p.Masked())
	}
	return out, errors.Join(errs...)
}

// Options returns the options that apply c's plain values to a Guard: the
// share and the trusted proxies. The policy (LoadPolicy) and the issuer
// (NewOIDC) read files and the network, and are given by their own options.
func (c Config) Options() []Option {
	proxies, _ := c.proxies() // Validate reported what does not parse
	return []Option{WithShare(c.Share), WithTrustedProxies(proxies)}
}
