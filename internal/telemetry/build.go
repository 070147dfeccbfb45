package telemetry

import (
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
)

// RegisterBuildInfo registers plugin_facade_build_info{version,revision,goversion},
// always 1: the version the binary was stamped with (make build and make image
// stamp the git tag), the VCS revision the build recorded ("unknown" when it
// recorded none) and the Go version. Dashboards join on it to show what runs.
func RegisterBuildInfo(reg prometheus.Registerer, version string) {
	revision := "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				revision = s.Value
			}
		}
	}
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "plugin_facade_build_info",
		Help:        "Always 1; the labels say which build runs: version (the git tag it was stamped with), revision (VCS), goversion.",
		ConstLabels: prometheus.Labels{"version": version, "revision": revision, "goversion": runtime.Version()},
	})
	g.Set(1)
	reg.MustRegister(g)
}
