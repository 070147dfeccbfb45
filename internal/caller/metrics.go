package caller

import (
	"errors"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// otherCallers is the metrics label of every caller no policy rule names:
// labels are the policy's caller names only, so their number stays bounded.
const otherCallers = "other"

// Outcomes of a call, as counted.
const (
	outcomeAllowed         = "allowed"
	outcomeDenied          = "denied"
	outcomeThrottled       = "throttled"
	outcomeUnauthenticated = "unauthenticated"
)

type metrics struct {
	calls *prometheus.CounterVec
	// byCaller holds each caller label's counters (*outcomes), so that a call
	// need not hash its labels again; the policy's names bound it.
	byCaller *sync.Map
	reloads  *prometheus.CounterVec
	rules    prometheus.Gauge
	loaded   prometheus.Gauge
}

// outcomes are one caller label's counters.
type outcomes struct {
	allowed, denied, throttled, unauthenticated prometheus.Counter
}

// of returns the counters of a caller label.
func (m metrics) of(label string) *outcomes {
	if o, ok := m.byCaller.Load(label); ok {
		return o.(*outcomes)
	}
	o, _ := m.byCaller.LoadOrStore(label, &outcomes{
		allowed:         m.calls.WithLabelValues(label, outcomeAllowed),
		denied:          m.calls.WithLabelValues(label, outcomeDenied),
		throttled:       m.calls.WithLabelValues(label, outcomeThrottled),
		unauthenticated: m.calls.WithLabelValues(label, outcomeUnauthenticated),
	})
	return o.(*outcomes)
}

func newMetrics(reg prometheus.Registerer) (metrics, error) {
	m := metrics{
		byCaller: &sync.Map{},
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "plugin_facade_caller_calls_total",
			Help: "Calls by caller (the caller policy's names, \"other\" for the rest) and outcome: allowed, denied (caller policy), throttled (fair share), unauthenticated (a bad token).",
		}, []string{"caller", "outcome"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "plugin_facade_caller_policy_reloads_total",
			Help: "Reloads of the caller policy file, by result: ok, or failed (the last good policy stays).",
		}, []string{"result"}),
		rules: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "plugin_facade_caller_policy_rules",
			Help: "Rules of the caller policy in force (0 without a policy).",
		}),
		loaded: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "plugin_facade_caller_policy_last_reload_ok",
			Help: "1 when the last load of the caller policy file succeeded, 0 when it failed and an older policy is in force.",
		}),
	}
	m.of(otherCallers)
	m.reloads.WithLabelValues("ok")
	m.reloads.WithLabelValues("failed")
	m.loaded.Set(1)
	if reg != nil {
		for _, c := range []prometheus.Collector{m.calls, m.reloads, m.rules, m.loaded} {
			if err := reg.Register(c); err != nil {
				return m, errors.Join(errors.New("registering the caller metrics"), err)
			}
		}
	}
	return m, nil
}

func (m metrics) setPolicy(p *Policy) {
	if p == nil {
		m.rules.Set(0)
		return
	}
	m.rules.Set(float64(len(p.rules)))
}
