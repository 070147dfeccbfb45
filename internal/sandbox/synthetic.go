package sandbox

import (
	"strings"
)

// Synthetic identifiers, served under WithSyntheticIDs. n is one or more
// decimal digits.
const (
	// SyntheticPluginPrefix + n is a plugin: a copy of PluginID under that id.
	SyntheticPluginPrefix = "ccp-load-"
	// SyntheticVersionPrefix + n is a version of every synthetic plugin in
	// Environment: a copy of VersionID under that id.
	SyntheticVersionPrefix = "ver-load-"
	// SyntheticPendingVersionPrefix + n is like SyntheticVersionPrefix + n,
	// but PROCESSING for good: a version a watch never sees become ready, for
	// load tests that hold many watches open.
	SyntheticPendingVersionPrefix = "ver-pending-"
)

// WithSyntheticIDs makes every plugin id "ccp-load-<n>" readable, and every
// version "ver-load-<k>" of such a plugin in Environment, each as a copy of
// the seeded PluginID or VersionID with its id (and the id in its resource
// name and links) substituted; "ver-pending-<k>" is such a version that stays
// PROCESSING. Use it for load tests that need as many
// distinct resources as requests, so that nothing between the caller and the
// sandbox (a cache, request coalescing) can serve one request from another.
func WithSyntheticIDs() Option {
	return func(c *config) { c.synthetic = true }
}

// isSynthetic reports whether id is prefix followed by decimal digits.
func isSynthetic(id, prefix string) bool {
	n, ok := strings.CutPrefix(id, prefix)
	if !ok || n == "" || len(n) > 20 {
		return false
	}
	for _, r := range n {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

func (st *seedStore) syntheticPlugin(id string) (connectorPlugin, bool) {
	if !st.synthetic || !isSynthetic(id, SyntheticPluginPrefix) {
		return connectorPlugin{}, false
	}
	p := st.plugins[PluginID]
	p.ID = id
	if p.Metadata != nil {
		m := *p.Metadata
		m.ResourceName = strings.Replace(m.ResourceName, PluginID, id, 1)
		p.Metadata = &m
	}
	return p, true
}

func (st *seedStore) syntheticVersion(pluginID, id, env string) (versionSeed, bool) {
	pending := isSynthetic(id, SyntheticPendingVersionPrefix)
	if !st.synthetic || env != Environment || !isSynthetic(pluginID, SyntheticPluginPrefix) || !isSynthetic(id, SyntheticVersionPrefix) && !pending {
		return versionSeed{}, false
	}
	s := st.versions[versionKey{PluginID, VersionID, Environment}]
	if pending {
		s.v.Status = versionStatus{Phase: "PROCESSING"}
	}
	s.pluginID = pluginID
	s.v.ID = id
	if s.v.Metadata != nil {
		m := *s.v.Metadata
		m.ResourceName = strings.NewReplacer("="+PluginID+"/", "="+pluginID+"/", "="+VersionID, "="+id).Replace(m.ResourceName)
		s.v.Metadata = &m
	}
	return s, true
}
