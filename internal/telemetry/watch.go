package telemetry

import "github.com/prometheus/client_golang/prometheus"

// WatchMetrics count the watches' poll loops: give Loop and Poll to
// service.WatchObserver.
//
//   - plugin_facade_watch_poll_loops: poll loops on this replica (one per
//     version and credential watched here);
//   - plugin_facade_watch_polls_total{result}: polls of the upstream, result
//     ok (the version came back) or error (a failure, retried or final).
type WatchMetrics struct {
	loops prometheus.Gauge
	polls *prometheus.CounterVec
}

// NewWatchMetrics registers the watch metrics with reg.
func NewWatchMetrics(reg prometheus.Registerer) *WatchMetrics {
	m := &WatchMetrics{
		loops: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "plugin_facade_watch_poll_loops",
			Help: "WatchPluginVersion poll loops on this replica: one per version and credential watched here, polling or (in a fleet) relaying.",
		}),
		polls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "plugin_facade_watch_polls_total",
			Help: "Polls of Confluent Cloud by watch loops, by result: ok (the version came back) or error.",
		}, []string{"result"}),
	}
	m.polls.WithLabelValues("ok")
	m.polls.WithLabelValues("error")
	reg.MustRegister(m.loops, m.polls)
	return m
}

// Loop counts a poll loop starting (+1) or ending (-1).
func (m *WatchMetrics) Loop(delta int) { m.loops.Add(float64(delta)) }

// Poll counts one poll.
func (m *WatchMetrics) Poll(ok bool) {
	if ok {
		m.polls.WithLabelValues("ok").Inc()
	} else {
		m.polls.WithLabelValues("error").Inc()
	}
}
