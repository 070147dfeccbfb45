// Package telemetry holds what the facade reports about itself beyond logs: the
// Prometheus registry with the upstream client's metrics, and the OpenTelemetry
// tracer provider and propagator. internal/server serves and uses them;
// cmd/server builds them once per process.
package telemetry

import (
	"errors"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/acme/plugin-facade/internal/upstream"
)

// NewRegistry returns a registry holding the Go runtime and process
// collectors. Each server gets its own registry rather than the global one, so
// that tests (and two servers in one process) never share counters.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return reg
}

// UpstreamMetrics counts the upstream client's traffic. Create it with
// NewUpstreamMetrics and give its Hooks to upstream.WithHooks.
type UpstreamMetrics struct {
	requests  *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	retries   *prometheus.CounterVec
	remaining *prometheus.GaugeVec
	limit     *prometheus.GaugeVec
	hits      *prometheus.CounterVec
	misses    *prometheus.CounterVec
	coalesced *prometheus.CounterVec
	refused   *prometheus.CounterVec
	unknown   *prometheus.CounterVec
}

// NewUpstreamMetrics registers the upstream metrics with reg:
//
//   - plugin_facade_upstream_requests_total{route,code}: HTTP exchanges by
//     route template and HTTP status ("none" when no answer arrived);
//   - plugin_facade_upstream_request_duration_seconds{route}: time until the
//     answer's body was read;
//   - plugin_facade_upstream_retries_total{route,reason}: retries, by the
//     status retried or "connection";
//   - plugin_facade_upstream_rate_limit_remaining{route} and
//     plugin_facade_upstream_rate_limit_limit{route}: the requests left in,
//     and the size of, the last rate-limit window the upstream described;
//   - plugin_facade_cache_hits_total{route}, plugin_facade_cache_misses_total{route}:
//     calls the cache answered, and calls it was asked for and could not;
//   - plugin_facade_coalesced_calls_total{route}: calls that took their
//     answer from an identical call's exchange instead of one of their own;
//   - plugin_facade_guard_refusals_total{route}: calls the rate-limit guard
//     answered without calling the upstream (the window was exhausted).
//   - plugin_facade_upstream_unknown_fields_total{route,field}: fields of the
//     upstream's resources this version does not know (the contract's drift
//     from the upstream), per answer they came in.
func NewUpstreamMetrics(reg prometheus.Registerer) *UpstreamMetrics {
	m := &UpstreamMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "plugin_facade_upstream_requests_total",
			Help: "HTTP exchanges with Confluent Cloud, by route template and HTTP status (none: no answer).",
		}, []string{"route", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "plugin_facade_upstream_request_duration_seconds",
			Help: "Duration of HTTP exchanges with Confluent Cloud, until the answer's body was read.",
			// From a fast cached answer to the 30s upstream timeout.
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"route"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "plugin_facade_upstream_retries_total",
			Help: "Retries of calls to Confluent Cloud, by route template and reason (the HTTP status retried, or connection).",
		}, []string{"route", "reason"}),
		remaining: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "plugin_facade_upstream_rate_limit_remaining",
			Help: "Requests left in the last rate-limit window Confluent Cloud described (X-RateLimit-Remaining), by route template.",
		}, []string{"route"}),
		unknown: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "plugin_facade_upstream_unknown_fields_total",
			Help: "Fields of Confluent Cloud's resources this version does not know, by route template and field path, per answer: REST callers get them as sent, gRPC callers do not until the contract has them.",
		}, []string{"route", "field"}),
	}
	counter := func(name, help string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, []string{"route"})
	}
	m.limit = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "plugin_facade_upstream_rate_limit_limit",
		Help: "Requests allowed in the last rate-limit window Confluent Cloud described (X-RateLimit-Limit), by route template.",
	}, []string{"route"})
	m.hits = counter("plugin_facade_cache_hits_total", "Calls answered from the cache (--cache-ttl), by upstream route template.")
	m.misses = counter("plugin_facade_cache_misses_total", "Calls the cache was asked for and had no answer for, by upstream route template.")
	m.coalesced = counter("plugin_facade_coalesced_calls_total", "Calls that took the answer of an identical call's upstream exchange in flight, by upstream route template.")
	m.refused = counter("plugin_facade_guard_refusals_total", "Calls the rate-limit guard answered RESOURCE_EXHAUSTED without calling the upstream, by upstream route template.")
	for _, route := range []string{upstream.RoutePluginVersion, upstream.RouteConnectorPlugin} {
		for _, c := range []*prometheus.CounterVec{m.hits, m.misses, m.coalesced, m.refused} {
			c.WithLabelValues(route) // present at zero from the start
		}
	}
	reg.MustRegister(m.requests, m.latency, m.retries, m.remaining, m.unknown, m.limit, m.hits, m.misses, m.coalesced, m.refused)
	return m
}

// Hooks returns the upstream client hooks that feed the metrics.
func (m *UpstreamMetrics) Hooks() upstream.Hooks {
	return upstream.Hooks{
		Exchange: func(route string, status int, elapsed time.Duration) {
			code := "none"
			if status != 0 {
				code = strconv.Itoa(status)
			}
			m.requests.WithLabelValues(route, code).Inc()
			m.latency.WithLabelValues(route).Observe(elapsed.Seconds())
		},
		Retry: func(route, reason string) {
			m.retries.WithLabelValues(route, reason).Inc()
		},
		RateLimit: func(route string, rl upstream.RateLimit) {
			if rl.Remaining >= 0 {
				m.remaining.WithLabelValues(route).Set(float64(rl.Remaining))
			}
			if rl.Limit > 0 {
				m.limit.WithLabelValues(route).Set(float64(rl.Limit))
			}
		},
		Cache: func(route string, hit bool) {
			if hit {
				m.hits.WithLabelValues(route).Inc()
			} else {
				m.misses.WithLabelValues(route).Inc()
			}
		},
		Call: func(route string, meta upstream.Meta, err error) {
			if meta.Shared > 0 {
				m.coalesced.WithLabelValues(route).Inc()
			}
			if _, ok := errors.AsType[*upstream.ThrottledError](err); ok {
				m.refused.WithLabelValues(route).Inc()
			}
		},
		UnknownField: func(route, field string) {
			m.unknown.WithLabelValues(route, field).Inc()
		},
	}
}
