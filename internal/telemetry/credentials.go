package telemetry

import (
	"net/http"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/acme/plugin-facade/internal/upstream"
)

// DefaultCredential follows whether the upstream accepts the service's own
// Cloud API key (the one used for callers who send none), from the answers
// to requests made with it: a 401 says it is rejected; any answer that shows
// the key was authenticated (2xx, 403: known but not allowed, 404) says it is
// accepted; other answers (429, 5xx, no answer) say nothing about the key.
// It learns from real traffic, which costs no request of the shared key's
// rate limit; the start-up check (cmd/server) is one more request of that
// kind, so that a wrong key shows before the first caller's call.
//
// Status is /readyz's "default_credentials" detail; the gauge
// plugin_facade_default_credentials_rejected is 1 while the key is rejected.
// Neither fails readiness: callers with credentials of their own are still
// served, and a fleet whose key was revoked must not take itself out.
type DefaultCredential struct {
	auth     upstream.Authorization
	state    atomic.Int32
	rejected prometheus.Gauge
}

const (
	credentialUnchecked int32 = iota
	credentialAccepted
	credentialRejected
)

// NewDefaultCredential registers the gauge with reg and follows auth, which
// may be zero (no default credential: Status says "none").
func NewDefaultCredential(reg prometheus.Registerer, auth upstream.Authorization) *DefaultCredential {
	d := &DefaultCredential{auth: auth, rejected: prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "plugin_facade_default_credentials_rejected",
		Help: "1 while Confluent Cloud answers 401 to the service's default Cloud API key (CONFLUENT_CLOUD_API_KEY), else 0.",
	})}
	reg.MustRegister(d.rejected)
	return d
}

// Status is "none" without a default credential, else "unchecked" until an
// answer to a request with it arrived, then "accepted" or "rejected".
func (d *DefaultCredential) Status() string {
	if d.auth.IsZero() {
		return "none"
	}
	switch d.state.Load() {
	case credentialAccepted:
		return "accepted"
	case credentialRejected:
		return "rejected"
	}
	return "unchecked"
}

// observe learns from one answer to a request sent with the default credential.
func (d *DefaultCredential) observe(status int) {
	switch {
	case status == http.StatusUnauthorized:
		d.state.Store(credentialRejected)
		d.rejected.Set(1)
	case status >= 200 && status <= 299, status == http.StatusForbidden, status == http.StatusNotFound:
		d.state.Store(credentialAccepted)
		d.rejected.Set(0)
	}
}

// Transport returns an upstream.WithTransport wrapper that shows d the
// answers to requests made with the default credential.
func (d *DefaultCredential) Transport() func(http.RoundTripper) http.RoundTripper {
	return func(next http.RoundTripper) http.RoundTripper {
		if d.auth.IsZero() {
			return next
		}
		return roundTripFunc(func(r *http.Request) (*http.Response, error) {
			resp, err := next.RoundTrip(r)
			if err == nil {
				if a, perr := upstream.ParseAuthorization(r.Header.Get("Authorization")); perr == nil && a == d.auth {
					d.observe(resp.StatusCode)
				}
			}
			return resp, err
		})
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
