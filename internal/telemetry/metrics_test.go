package telemetry

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/acme/plugin-facade/internal/upstream"
)

// TestUpstreamHooks calls the hooks as the upstream client does (Retry is
// not called by the client yet) and reads the metrics back.
func TestUpstreamHooks(t *testing.T) {
	reg := prometheus.NewRegistry()
	h := NewUpstreamMetrics(reg).Hooks()
	r := upstream.RouteConnectorPlugin
	h.Exchange(r, 503, 20*time.Millisecond)
	h.Retry(r, "503")
	h.Exchange(r, 0, time.Second)
	h.Retry(r, "connection")
	h.Exchange(r, 200, 30*time.Millisecond)
	h.RateLimit(r, upstream.RateLimit{Limit: 100, Remaining: 42, Reset: time.Minute})
	h.RateLimit(r, upstream.RateLimit{Limit: -1, Remaining: -1, Reset: -1}) // absent: the last known stays
	h.UnknownField(r, "spec.signed")
	h.UnknownField(r, "spec.signed")

	want := `
# HELP plugin_facade_upstream_rate_limit_remaining Requests left in the last rate-limit window Confluent Cloud described (X-RateLimit-Remaining), by route template.
# TYPE plugin_facade_upstream_rate_limit_remaining gauge
plugin_facade_upstream_rate_limit_remaining{route="/connect/v1/custom-connector-plugins/{id}"} 42
# HELP plugin_facade_upstream_requests_total HTTP exchanges with Confluent Cloud, by route template and HTTP status (none: no answer).
# TYPE plugin_facade_upstream_requests_total counter
plugin_facade_upstream_requests_total{code="200",route="/connect/v1/custom-connector-plugins/{id}"} 1
plugin_facade_upstream_requests_total{code="503",route="/connect/v1/custom-connector-plugins/{id}"} 1
plugin_facade_upstream_requests_total{code="none",route="/connect/v1/custom-connector-plugins/{id}"} 1
# HELP plugin_facade_upstream_retries_total Retries of calls to Confluent Cloud, by route template and reason (the HTTP status retried, or connection).
# TYPE plugin_facade_upstream_retries_total counter
plugin_facade_upstream_retries_total{reason="503",route="/connect/v1/custom-connector-plugins/{id}"} 1
plugin_facade_upstream_retries_total{reason="connection",route="/connect/v1/custom-connector-plugins/{id}"} 1
# HELP plugin_facade_upstream_unknown_fields_total Fields of Confluent Cloud's resources this version does not know, by route template and field path, per answer: REST callers get them as sent, gRPC callers do not until the contract has them.
# TYPE plugin_facade_upstream_unknown_fields_total counter
plugin_facade_upstream_unknown_fields_total{field="spec.signed",route="/connect/v1/custom-connector-plugins/{id}"} 2
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"plugin_facade_upstream_requests_total", "plugin_facade_upstream_retries_total", "plugin_facade_upstream_rate_limit_remaining",
		"plugin_facade_upstream_unknown_fields_total"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(reg, "plugin_facade_upstream_request_duration_seconds"); n != 1 {
		t.Errorf("%d latency series, want 1 (by route)", n)
	}
}
