package caller

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	pluginv1 "github.com/acme/plugin-facade/gen/go/confluent/plugin/v1"
)

// Policy is a parsed caller policy file (docs/callers.md has the format):
// rules that name callers by identity globs, say what each may read with the
// service's own key, per method, and optionally give it a rate of its own.
// Once a policy is set, whatever it does not allow is denied, anonymous
// callers included. It is immutable; a reload builds a new one.
type Policy struct {
	rules []rule
	// open lists the services every caller may call (health and reflection
	// unless the file says otherwise).
	open map[string]bool
}

// rule is one entry of callers:.
type rule struct {
	name  string
	match []string // path.Match globs over Identity.Name
	rate  *Rate
	allow map[string]access // by method short name
}

// access is what a rule allows of one method: nil lists allow everything.
type access struct {
	environments []string
	plugins      []string
}

// Rate is a number of calls per period.
type Rate struct {
	Calls  int
	Period time.Duration
}

// The file's shape, decoded with unknown keys refused.
type policyDoc struct {
	Open    *openDoc   `yaml:"open"`
	Callers *[]ruleDoc `yaml:"callers"`
}

type openDoc struct {
	Health     *bool `yaml:"health"`
	Reflection *bool `yaml:"reflection"`
}

type ruleDoc struct {
	Name  string                `yaml:"name"`
	Match []string              `yaml:"match"`
	Rate  string                `yaml:"rate"`
	Allow map[string]*accessDoc `yaml:"allow"`
}

type accessDoc struct {
	Environments []string `yaml:"environments"`
	Plugins      []string `yaml:"plugins"`
}

// Method short names a rule may allow, and the gRPC methods (or, ending in
// '/', services) each stands for.
var (
	methodHealth     = "Health"
	methodReflection = "Reflection"
	policyMethods    = map[string][]string{
		"GetPluginVersion":   {pluginv1.PluginService_GetPluginVersion_FullMethodName},
		"GetConnectorPlugin": {pluginv1.PluginService_GetConnectorPlugin_FullMethodName},
		"WatchPluginVersion": {pluginv1.PluginService_WatchPluginVersion_FullMethodName},
		methodHealth:         {"/grpc.health.v1.Health/"},
		methodReflection:     {"/grpc.reflection.v1.ServerReflection/", "/grpc.reflection.v1alpha.ServerReflection/"},
	}
	// versionMethods are those whose requests name an environment.
	versionMethods = map[string]bool{"GetPluginVersion": true, "WatchPluginVersion": true}
)

// maxPolicyBytes bounds a policy file.
const maxPolicyBytes = 1 << 20

// ParsePolicy reads a policy file (name is for messages). Its error names
// the line at fault: unknown keys, bad globs, bad rates, methods or fields
// that do not exist, and duplicate caller names.
func ParsePolicy(name string, data []byte) (*Policy, error) {
	if len(data) > maxPolicyBytes {
		return nil, fmt.Errorf("%s: larger than %d bytes", name, maxPolicyBytes)
	}
	var doc policyDoc
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: %s", name, yamlProblem(err))
	}
	if doc.Callers == nil {
		// An empty or truncated file is more likely an accident than a wish
		// to deny everything, which "callers: []" says.
		return nil, fmt.Errorf("%s: no callers: key (write \"callers: []\" to deny every call)", name)
	}
	var root yaml.Node // the same document again, for the lines of its values
	_ = yaml.Unmarshal(data, &root)
	at := func(line int, format string, args ...any) error {
		return fmt.Errorf("%s:%d: %s", name, line, fmt.Sprintf(format, args...))
	}

	p := &Policy{open: map[string]bool{methodHealth: true, methodReflection: true}}
	if o := doc.Open; o != nil {
		if o.Health != nil {
			p.open[methodHealth] = *o.Health
		}
		if o.Reflection != nil {
			p.open[methodReflection] = *o.Reflection
		}
	}
	callers := lookup(&root, "callers")
	seen := map[string]int{}
	for i, rd := range *doc.Callers {
		rn := child(callers, i)
		line := lineOf(rn)
		if rd.Name == "" {
			return nil, at(line, "a caller needs a name (the label of its metrics)")
		}
		if first, dup := seen[rd.Name]; dup {
			return nil, at(lineOf(lookup(rn, "name")), "caller %q is already defined at line %d", rd.Name, first)
		}
		seen[rd.Name] = lineOf(lookup(rn, "name"))
		if len(rd.Match) == 0 {
			return nil, at(line, "caller %q matches no identity: give match: a list of globs", rd.Name)
		}
		for j, g := range rd.Match {
			if err := checkGlob(g); err != nil {
				return nil, at(lineOf(child(lookup(rn, "match"), j)), "caller %q: match %q: %v", rd.Name, g, err)
			}
		}
		r := rule{name: rd.Name, match: rd.Match, allow: map[string]access{}}
		if rd.Rate != "" {
			rate, err := parseRate(rd.Rate)
			if err != nil {
				return nil, at(lineOf(lookup(rn, "rate")), "caller %q: rate %q: %v", rd.Name, rd.Rate, err)
			}
			r.rate = &rate
		}
		allowNode := lookup(rn, "allow")
		for m, ad := range rd.Allow {
			mline := lineOf(keyNode(allowNode, m))
			if _, ok := policyMethods[m]; !ok {
				return nil, at(mline, "caller %q: unknown method %q (one of GetPluginVersion, GetConnectorPlugin, WatchPluginVersion, Health, Reflection)", rd.Name, m)
			}
			var a access
			if ad != nil {
				if ad.Environments != nil && !versionMethods[m] {
					return nil, at(mline, "caller %q: %s has no environment to restrict", rd.Name, m)
				}
				if ad.Plugins != nil && (m == methodHealth || m == methodReflection) {
					return nil, at(mline, "caller %q: %s has no plugin to restrict", rd.Name, m)
				}
				for key, globs := range map[string][]string{"environments": ad.Environments, "plugins": ad.Plugins} {
					for j, g := range globs {
						if err := checkGlob(g); err != nil {
							return nil, at(lineOf(child(lookup(valueNode(allowNode, m), key), j)), "caller %q: %s %s %q: %v", rd.Name, m, key, g, err)
						}
					}
				}
				a = access{environments: ad.Environments, plugins: ad.Plugins}
			}
			r.allow[m] = a
		}
		p.rules = append(p.rules, r)
	}
	return p, nil
}

// yamlProblem is a decoding error in the file's terms: yaml.v3 says
// "line 4: field foo not found in type caller.ruleDoc".
func yamlProblem(err error) string {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return strings.TrimPrefix(err.Error(), "yaml: ")
	}
	var out []string
	for _, e := range te.Errors {
		if i := strings.Index(e, " not found in type"); i >= 0 {
			e = strings.Replace(e[:i], "field ", "unknown key ", 1)
		}
		out = append(out, e)
	}
	return strings.Join(out, "; ")
}

func checkGlob(g string) error {
	if g == "" {
		return errors.New("empty glob")
	}
	if _, err := path.Match(g, ""); err != nil {
		return errors.New("bad glob (path.Match syntax: * ? [a-z] \\)")
	}
	return nil
}

// parseRate reads "<calls>/<period>", such as "60/1m" or "5/2s".
func parseRate(s string) (Rate, error) {
	n, d, ok := strings.Cut(s, "/")
	calls, err := strconv.Atoi(strings.TrimSpace(n))
	if !ok || err != nil || calls < 1 {
		return Rate{}, errors.New(`want "<calls>/<period>" such as "60/1m", with at least one call`)
	}
	period, err := time.ParseDuration(strings.TrimSpace(d))
	if err != nil || period < time.Second || period > 24*time.Hour {
		return Rate{}, errors.New("the period must be a duration between 1s and 24h, such as 1m")
	}
	return Rate{Calls: calls, Period: period}, nil
}

// The yaml.Node helpers tolerate nil and missing entries, returning nil
// (whose line is 0), so that a message never fails for want of a line.

func lookup(n *yaml.Node, key string) *yaml.Node { return valueNode(n, key) }

func valueNode(n *yaml.Node, key string) *yaml.Node {
	if n != nil && n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

func keyNode(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i]
		}
	}
	return nil
}

func child(n *yaml.Node, i int) *yaml.Node {
	if n == nil || i >= len(n.Content) {
		return nil
	}
	return n.Content[i]
}

func lineOf(n *yaml.Node) int {
	if n == nil {
		return 0
	}
	return n.Line
}

// denial is why the policy refuses a call ("" reason: allowed).
type denial struct {
	reason, detail string
}

// match returns the first rule (in file order) whose globs match the
// identity, or nil.
func (p *Policy) match(id Identity) *rule {
	for i := range p.rules {
		for _, g := range p.rules[i].match {
			if ok, _ := path.Match(g, id.Name); ok {
				return &p.rules[i]
			}
		}
	}
	return nil
}

// methodName is the short name of a gRPC method the policy knows, or "".
func methodName(fullMethod string) string {
	switch fullMethod { // the calls of every moment first
	case pluginv1.PluginService_GetPluginVersion_FullMethodName:
		return "GetPluginVersion"
	case pluginv1.PluginService_GetConnectorPlugin_FullMethodName:
		return "GetConnectorPlugin"
	case pluginv1.PluginService_WatchPluginVersion_FullMethodName:
		return "WatchPluginVersion"
	}
	for name, prefixes := range policyMethods {
		for _, p := range prefixes {
			if fullMethod == p || (strings.HasSuffix(p, "/") && strings.HasPrefix(fullMethod, p)) {
				return name
			}
		}
	}
	return ""
}

// decide says whether r (nil: no rule matched) may call method with req (nil
// when the request is not known yet: a stream before its first message).
func (p *Policy) decide(r *rule, method string, req any) denial {
	if p.open[method] {
		return denial{}
	}
	if r == nil {
		return denial{ReasonCallerUnknown, "no rule of the caller policy names this caller"}
	}
	a, ok := r.allow[method]
	if !ok {
		return denial{ReasonMethodDenied, fmt.Sprintf("the caller policy does not allow %s to %s", r.name, method)}
	}
	env, plugin := "", ""
	switch q := req.(type) {
	case *pluginv1.GetPluginVersionRequest:
		env, plugin = q.GetEnvironment(), q.GetPluginId()
	case *pluginv1.WatchPluginVersionRequest:
		env, plugin = q.GetEnvironment(), q.GetPluginId()
	case *pluginv1.GetConnectorPluginRequest:
		plugin = q.GetId()
	}
	if a.environments != nil && !anyMatch(a.environments, env) {
		return denial{ReasonEnvironmentDenied, fmt.Sprintf("the caller policy does not allow %s to read environment %q", r.name, echo(env))}
	}
	if a.plugins != nil && !anyMatch(a.plugins, plugin) {
		return denial{ReasonPluginDenied, fmt.Sprintf("the caller policy does not allow %s to read plugin %q", r.name, echo(plugin))}
	}
	return denial{}
}

// maxEcho bounds how much of a request's value a denial repeats: the policy
// decides before the service validates the request.
const maxEcho = 64

func echo(s string) string {
	if len(s) <= maxEcho {
		return s
	}
	return strings.ToValidUTF8(s[:maxEcho], "") + "…"
}

func anyMatch(globs []string, s string) bool {
	for _, g := range globs {
		if ok, _ := path.Match(g, s); ok {
			return true
		}
	}
	return false
}
