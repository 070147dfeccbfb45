package upstream

import (
	"log/slog"
	"reflect"
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

// maxDriftNameBytes bounds the length of a field path reported by name.
const maxDriftNameBytes = 128

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

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
// decoded into its resource (so body is valid JSON).
func (d *drift) inspect(route string, body []byte) {
	sc := scanner{body: body, report: func(field string) { d.report(route, field) }}
	sc.value(knownFields[route])
}

func (d *drift) report(route, field string) {
	if len(field) > maxDriftNameBytes || !printableASCII(field) {
		field = otherDrift // a name no log line or metric label should carry as is
	}
	d.mu.Lock()
	key := route + " " + field
	first := !d.seen[key]
	if first && len(d.seen) >= maxDriftNames {
		field, key = otherDrift, route+" "+otherDrift
		first = !d.seen[key]
	}
	if first {
		d.seen[key] = true // past maxDriftNames, at most one "(other)" per route
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

// scanner walks a valid JSON document and reports each member name that its
// tree does not know, as a dotted path. It reads the names in place and
// skips every value it need not look into, so that an answer without drift
// costs no allocation: it runs on every answer the upstream sends.
type scanner struct {
	body   []byte
	pos    int
	report func(field string)
	path   [][]byte // the names of the objects the scanner is in
}

// value walks the value at pos, whose members tree names (nil: a leaf).
func (s *scanner) value(tree fieldTree) {
	s.space()
	if s.pos >= len(s.body) {
		return
	}
	switch s.body[s.pos] {
	case '{':
		s.object(tree)
	case '[':
		s.pos++
		for s.space(); s.pos < len(s.body) && s.body[s.pos] != ']'; s.space() {
			if s.body[s.pos] == '}' {
				return // not valid JSON, which the decoder refused already
			}
			s.value(tree)
			s.space()
			if s.pos < len(s.body) && s.body[s.pos] == ',' {
				s.pos++
			}
		}
		s.pos++
	case '"':
		s.str()
	default:
		for s.pos < len(s.body) && !strings.ContainsRune(",]} \t\r\n", rune(s.body[s.pos])) {
			s.pos++
		}
	}
}

func (s *scanner) object(tree fieldTree) {
	s.pos++
	for s.space(); s.pos < len(s.body) && s.body[s.pos] != '}'; s.space() {
		name := s.str()
		s.space()
		s.pos++ // ':'
		sub, known := tree[string(name)]
		switch {
		case tree == nil:
			s.value(nil) // an object where a leaf was expected: the decoder said so already
		case !known:
			s.report(s.dotted(name))
			s.value(nil)
		default:
			s.path = append(s.path, name)
			s.value(sub)
			s.path = s.path[:len(s.path)-1]
		}
		s.space()
		if s.pos < len(s.body) && s.body[s.pos] == ',' {
			s.pos++
		}
	}
	s.pos++
}

// str reads the string at pos and returns its bytes between the quotes, as
// written (a name with escapes is reported as written).
func (s *scanner) str() []byte {
	s.pos++
	start := s.pos
	for s.pos < len(s.body) && s.body[s.pos] != '"' {
		if s.body[s.pos] == '\\' {
			s.pos++
		}
		s.pos++
	}
	end := min(s.pos, len(s.body))
	s.pos++
	return s.body[start:end]
}

// dotted is the path of member name of the object the scanner is in.
func (s *scanner) dotted(name []byte) string {
	var b strings.Builder
	for _, n := range s.path {
		b.Write(n)
		b.WriteByte('.')
	}
	b.Write(name)
	return b.String()
}

func (s *scanner) space() {
	for s.pos < len(s.body) && (s.body[s.pos] == ' ' || s.body[s.pos] == '\t' || s.body[s.pos] == '\r' || s.body[s.pos] == '\n') {
		s.pos++
	}
}
