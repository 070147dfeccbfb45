package upstream

import (
	"encoding/json"
	"log/slog"
	"reflect"
	"sort"
	"strings"
	"sync"
	"time"
)

// fieldTree is the JSON field names a resource type declares, each with the
// tree of its own value when that is an object (or a list of objects).
type fieldTree map[string]fieldTree

// knownFields are the trees of the two resources, by route: what this
// version decodes. Anything else the upstream sends is drift.
var knownFields = map[string]fieldTree{
	RoutePluginVersion:   treeOf(reflect.TypeFor[PluginVersion]()),
	RouteConnectorPlugin: treeOf(reflect.TypeFor[ConnectorPlugin]()),
}

// treeOf reads the json tags of a struct type (through pointers and
// slices); a leaf (a string, a time) has a nil tree.
func treeOf(t reflect.Type) fieldTree {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || t == reflect.TypeFor[time.Time]() {
		return nil
	}
	tree := fieldTree{}
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "" || name == "-" {
			continue
		}
		tree[name] = treeOf(f.Type)
	}
	return tree
}

// maxDriftNames bounds how many distinct unknown field names a client
// reports by name (log line and metric label); past it they are reported as
// otherDrift. The upstream adds a field now and then, not hundreds.
const maxDriftNames = 64

const otherDrift = "(other)"

// drift makes visible the fields the upstream sends that this version does
// not know: Hooks.UnknownField for each occurrence, and one log line per
// field name, the first time it is seen.
type drift struct {
	hook func(route, field string)
	log  *slog.Logger

	mu   sync.Mutex
	seen map[string]bool // route + " " + field
}

// inspect reports the unknown fields of body, a 2xx answer of route that
// decoded into its resource.
func (d *drift) inspect(route string, body []byte) {
	var doc any
	if json.Unmarshal(body, &doc) != nil {
		return
	}
	var unknown []string
	walk(doc, knownFields[route], "", &unknown)
	for _, field := range unknown {
		d.report(route, field)
	}
}

func (d *drift) report(route, field string) {
	d.mu.Lock()
	key := route + " " + field
	first := !d.seen[key]
	switch {
	case first && len(d.seen) >= maxDriftNames:
		field, first = otherDrift, false
	case first:
		d.seen[key] = true
	}
	d.mu.Unlock()
	if first {
		d.log.Warn("the upstream sent a field this version does not know: REST callers get it as sent, gRPC callers do not until the contract has it",
			"route", route, "field", field)
	}
	if d.hook != nil {
		d.hook(route, field)
	}
}

// walk appends to unknown the dotted path of every member of v that tree
// does not name, in a stable order.
func walk(v any, tree fieldTree, path string, unknown *[]string) {
	switch v := v.(type) {
	case []any:
		for _, e := range v {
			walk(e, tree, path, unknown)
		}
	case map[string]any:
		if tree == nil {
			return // an object where a leaf was expected: the decoder said so already
		}
		names := make([]string, 0, len(v))
		for name := range v {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			sub, ok := tree[name]
			if !ok {
				if !containsString(*unknown, path+name) {
					*unknown = append(*unknown, path+name)
				}
				continue
			}
			walk(v[name], sub, path+name+".", unknown)
		}
	}
}

func containsString(s []string, v string) bool {
	for _, e := range s {
		if e == v {
			return true
		}
	}
	return false
}
