package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/acme/plugin-facade/internal/testutil"
)

// deployDir holds the Kubernetes manifests as kustomize lays them out: base/
// (the facade), components/ (Redis, monitoring) and overlays/, each of which
// is one way to apply them. The test renders every overlay with `kubectl
// kustomize`, as `kubectl apply -k` would, and checks what comes out.
const deployDir = "../../deploy/kubernetes"

// facadeName is the name of the facade's Deployment and of its container.
const facadeName = "plugin-facade"

// spanFlushTimeout bounds how long run flushes batched spans after the
// servers have stopped: part of a replica's shutdown, like --shutdown-timeout.
const spanFlushTimeout = 5 * time.Second

// manifests are the objects of one apply: one overlay, rendered. Each is
// decoded strictly, into the Kubernetes API type of its kind (or, for the
// Prometheus Operator's kinds, a local type of the fields used here); file
// tells where an object came from.
type manifests struct {
	deployments     []*appsv1.Deployment
	services        []*corev1.Service
	configMaps      []*corev1.ConfigMap
	pdbs            []*policyv1.PodDisruptionBudget
	networkPolicies []*networkingv1.NetworkPolicy
	serviceMonitors []*serviceMonitor
	prometheusRules []*prometheusRule
	file            map[any]string
}

// serviceMonitor is the part of a monitoring.coreos.com/v1 ServiceMonitor
// the test reads; decoding is strict, so a field outside it fails the test
// until it is added here.
type serviceMonitor struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Selector  metav1.LabelSelector `json:"selector"`
		Endpoints []struct {
			Port     string `json:"port"`
			Path     string `json:"path"`
			Interval string `json:"interval"`
		} `json:"endpoints"`
	} `json:"spec"`
}

// prometheusRule is a monitoring.coreos.com/v1 PrometheusRule; its groups
// are promtool's business (make rules), and the monitoring test's.
type prometheusRule struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Groups []ruleGroup `json:"groups"`
	} `json:"spec"`
}

// ruleGroup is a Prometheus rule group.
type ruleGroup struct {
	Name  string `json:"name"`
	Rules []struct {
		Record      string            `json:"record,omitempty"`
		Alert       string            `json:"alert,omitempty"`
		Expr        string            `json:"expr"`
		For         string            `json:"for,omitempty"`
		Labels      map[string]string `json:"labels,omitempty"`
		Annotations map[string]string `json:"annotations,omitempty"`
	} `json:"rules"`
}

// kustomize renders dir with `kubectl kustomize`. Without kubectl the test is
// skipped, except in CI (CI=true), where it fails.
func kustomize(t *testing.T, dir string) []byte {
	t.Helper()
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("kubectl is needed to render %s: %v", dir, err)
		}
		t.Skipf("no kubectl to render %s (kubectl kustomize): %v", dir, err)
	}
	var stderr bytes.Buffer
	cmd := exec.CommandContext(t.Context(), kubectl, "kustomize", dir)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("kubectl kustomize %s: %v\n%s", dir, err, stderr.String())
	}
	return out
}

// render decodes every YAML document kubectl kustomize renders from the
// overlay in dir. A kind the test does not know fails it, so that no
// manifest goes unchecked.
func render(t *testing.T, name, dir string) *manifests {
	t.Helper()
	into := &manifests{file: map[any]string{}}
	docs := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(kustomize(t, dir))))
	for n := 1; ; n++ {
		doc, err := docs.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", dir, err)
		}
		if js, err := yaml.YAMLToJSON(doc); err == nil && string(js) == "null" {
			continue // comments only
		}
		obj, err := decodeStrict(doc)
		if err != nil {
			t.Errorf("%s (document %d): %v", name, n, err)
			continue
		}
		var meta struct {
			Kind     string
			Metadata struct{ Name string }
		}
		_ = yaml.Unmarshal(doc, &meta)
		into.file[obj] = fmt.Sprintf("overlay %s: %s %s", name, meta.Kind, meta.Metadata.Name)
		switch o := obj.(type) {
		case *appsv1.Deployment:
			into.deployments = append(into.deployments, o)
		case *corev1.Service:
			into.services = append(into.services, o)
		case *corev1.ConfigMap:
			into.configMaps = append(into.configMaps, o)
		case *policyv1.PodDisruptionBudget:
			into.pdbs = append(into.pdbs, o)
		case *networkingv1.NetworkPolicy:
			into.networkPolicies = append(into.networkPolicies, o)
		case *serviceMonitor:
			into.serviceMonitors = append(into.serviceMonitors, o)
		case *prometheusRule:
			into.prometheusRules = append(into.prometheusRules, o)
		}
	}
	return into
}

// decodeStrict decodes one document into the API type its apiVersion and kind
// name, refusing unknown and duplicate fields.
func decodeStrict(doc []byte) (any, error) {
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		return nil, err
	}
	var obj any
	switch tm.APIVersion + " " + tm.Kind {
	case "apps/v1 Deployment":
		obj = &appsv1.Deployment{}
	case "v1 Service":
		obj = &corev1.Service{}
	case "v1 ConfigMap":
		obj = &corev1.ConfigMap{}
	case "policy/v1 PodDisruptionBudget":
		obj = &policyv1.PodDisruptionBudget{}
	case "networking.k8s.io/v1 NetworkPolicy":
		obj = &networkingv1.NetworkPolicy{}
	case "monitoring.coreos.com/v1 ServiceMonitor":
		obj = &serviceMonitor{}
	case "monitoring.coreos.com/v1 PrometheusRule":
		obj = &prometheusRule{}
	default:
		return nil, fmt.Errorf("apiVersion %q kind %q: not a kind this test checks", tm.APIVersion, tm.Kind)
	}
	if err := yaml.UnmarshalStrict(doc, obj); err != nil {
		return nil, err
	}
	return obj, nil
}

// variant is one way to apply the manifests: one overlay.
type variant struct {
	name string // the overlay's folder name
	m    *manifests
}

// overlays are the overlays the test knows, production first: each is
// checked, and a folder under overlays/ that is not listed fails the test.
var overlays = []string{"production", "sandbox"}

// variants renders every overlay.
func variants(t *testing.T) []variant {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(deployDir, "overlays"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.IsDir() && !slices.Contains(overlays, e.Name()) {
			t.Errorf("overlays/%s: an overlay this test does not render; add it to overlays", e.Name())
		}
	}
	var vs []variant
	for _, name := range overlays {
		vs = append(vs, variant{name, render(t, name, filepath.Join(deployDir, "overlays", name))})
	}
	return vs
}

// binaryEnv returns whether the binary reads the environment variable name:
// a flag's (its PLUGIN_FACADE_ name, from the flag set itself), the Cloud API
// key's, the OTEL_* ones of OpenTelemetry's SDK
// (see docs/operations.md, Traces), or the Go runtime's GOGC and GOMEMLIMIT.
func binaryEnv(t *testing.T) func(name string) bool {
	t.Helper()
	c := defaultConfig()
	fs, _, _ := newFlagSet(&c)
	asked := settingEnv(fs)
	return func(name string) bool {
		return asked[name] || name == envAPIKey || name == envAPISecret || strings.HasPrefix(name, "OTEL_") || name == "GOGC" || name == "GOMEMLIMIT"
	}
}

// containerEnv resolves the environment m gives container c of d, as the
// kubelet would: literal values, Secret values (a stand-in: Secrets are not
// shipped), resource limits, and the ConfigMaps of m (an optional one that m
// lacks adds nothing). It reports each variable it cannot resolve.
func containerEnv(t *testing.T, m *manifests, d *appsv1.Deployment, c *corev1.Container) map[string]string {
	t.Helper()
	env := map[string]string{}
	for _, from := range c.EnvFrom {
		switch {
		case from.ConfigMapRef != nil:
			cm := m.configMap(from.ConfigMapRef.Name)
			if cm == nil {
				if from.ConfigMapRef.Optional == nil || !*from.ConfigMapRef.Optional {
					t.Errorf("%s: envFrom ConfigMap %q is neither shipped nor optional", m.file[d], from.ConfigMapRef.Name)
				}
				continue
			}
			for k, v := range cm.Data {
				env[from.Prefix+k] = v
			}
		default:
			t.Errorf("%s: envFrom %+v: only ConfigMaps (their keys are checked here)", m.file[d], from)
		}
	}
	for _, e := range c.Env {
		switch src := e.ValueFrom; {
		case src == nil:
			env[e.Name] = e.Value
		case src.SecretKeyRef != nil:
			env[e.Name] = "test-" + src.SecretKeyRef.Key
		case src.ConfigMapKeyRef != nil:
			if cm := m.configMap(src.ConfigMapKeyRef.Name); cm != nil {
				env[e.Name] = cm.Data[src.ConfigMapKeyRef.Key]
			} else {
				t.Errorf("%s: %s: no ConfigMap %q", m.file[d], e.Name, src.ConfigMapKeyRef.Name)
			}
		case src.ResourceFieldRef != nil:
			// Without the limit, the kubelet would give the node's capacity.
			q, ok := c.Resources.Limits[corev1.ResourceName(strings.TrimPrefix(src.ResourceFieldRef.Resource, "limits."))]
			if !strings.HasPrefix(src.ResourceFieldRef.Resource, "limits.") || !ok {
				t.Errorf("%s: %s comes from %s, which the container does not limit", m.file[d], e.Name, src.ResourceFieldRef.Resource)
			}
			env[e.Name] = strconv.FormatInt(q.Value(), 10)
		default:
			t.Errorf("%s: %s: a value source this test does not resolve", m.file[d], e.Name)
		}
	}
	return env
}

func (m *manifests) configMap(name string) *corev1.ConfigMap {
	for _, cm := range m.configMaps {
		if cm.Name == name {
			return cm
		}
	}
	return nil
}

// facade returns the facade's Deployment and container in m.
func (m *manifests) facade(t *testing.T) (*appsv1.Deployment, *corev1.Container) {
	t.Helper()
	for _, d := range m.deployments {
		if d.Name != facadeName {
			continue
		}
		for i := range d.Spec.Template.Spec.Containers {
			if c := &d.Spec.Template.Spec.Containers[i]; c.Name == facadeName {
				return d, c
			}
		}
		t.Fatalf("%s: no container %q", m.file[d], facadeName)
	}
	t.Fatalf("no Deployment %q", facadeName)
	return nil, nil
}

// selects reports whether sel selects pods labelled podLabels.
func selects(t *testing.T, sel *metav1.LabelSelector, podLabels map[string]string) bool {
	t.Helper()
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		t.Errorf("selector %v: %v", sel, err)
		return false
	}
	return !s.Empty() && s.Matches(labels.Set(podLabels))
}

// containerPort resolves a port by number or name among c's ports; 0 if c
// has no such port.
func containerPort(c *corev1.Container, p intstr.IntOrString) int32 {
	for _, cp := range c.Ports {
		if (p.Type == intstr.String && cp.Name == p.StrVal) || (p.Type == intstr.Int && cp.ContainerPort == p.IntVal) {
			return cp.ContainerPort
		}
	}
	return 0
}

// listenPort returns the port of a listen address given to the binary, and
// whether it listens on every interface, as it must for the kubelet's probes
// and the Service, which reach the pod's IP.
func listenPort(t *testing.T, addr string) (int32, bool) {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("listen address %q: %v", addr, err)
	}
	p, err := strconv.ParseInt(port, 10, 32)
	if err != nil {
		t.Fatalf("listen address %q: %v", addr, err)
	}
	return int32(p), host == "" || host == "0.0.0.0" || host == "::"
}

func TestKubernetesManifests(t *testing.T) {
	vs := variants(t)
	reads := binaryEnv(t)
	prod := vs[0].m
	sandbox := vs[1].m
	d, c := prod.facade(t)
	pod := &d.Spec.Template.Spec

	t.Run("every container is locked down", func(t *testing.T) {
		for _, v := range vs {
			for _, d := range v.m.deployments {
				ps := d.Spec.Template.Spec
				psc := ps.SecurityContext
				if psc == nil {
					psc = &corev1.PodSecurityContext{}
				}
				if ps.HostNetwork || ps.HostPID || ps.HostIPC {
					t.Errorf("%s: shares a host namespace", v.m.file[d])
				}
				for _, c := range append(slices.Clone(ps.InitContainers), ps.Containers...) {
					sc := c.SecurityContext
					if sc == nil {
						sc = &corev1.SecurityContext{}
					}
					where := v.m.file[d] + " container " + c.Name
					// A container's setting wins over its pod's.
					nonRoot := cmp.Or(sc.RunAsNonRoot, psc.RunAsNonRoot)
					user := cmp.Or(sc.RunAsUser, psc.RunAsUser)
					seccomp := cmp.Or(sc.SeccompProfile, psc.SeccompProfile)
					switch {
					case nonRoot == nil || !*nonRoot:
						t.Errorf("%s: runAsNonRoot is not true", where)
					case user != nil && *user == 0:
						t.Errorf("%s: runAsUser 0", where)
					case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
						t.Errorf("%s: readOnlyRootFilesystem is not true", where)
					case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
						t.Errorf("%s: allowPrivilegeEscalation is not false", where)
					case sc.Privileged != nil && *sc.Privileged:
						t.Errorf("%s: privileged", where)
					case sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0:
						t.Errorf("%s: capabilities %+v, want drop [ALL] and no add", where, sc.Capabilities)
					case seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault:
						t.Errorf("%s: seccompProfile %+v, want RuntimeDefault", where, seccomp)
					}
				}
			}
		}
	})

	t.Run("the image runs as a numeric non-root user", func(t *testing.T) {
		// Kubernetes can only enforce runAsNonRoot on a numeric USER.
		cf, err := os.ReadFile("../../Containerfile")
		if err != nil {
			t.Fatal(err)
		}
		m := regexp.MustCompile(`(?m)^USER\s+(\d+)(?::(\d+))?\s*$`).FindSubmatch(cf)
		if m == nil {
			t.Fatal("Containerfile: no numeric USER")
		}
		uid, _ := strconv.ParseInt(string(m[1]), 10, 64)
		if uid == 0 {
			t.Error("Containerfile: USER 0")
		}
		if user := pod.SecurityContext.RunAsUser; user != nil && *user != uid {
			t.Errorf("%s: runAsUser %d, the image's USER is %d", prod.file[d], *user, uid)
		}
	})

	t.Run("every container has pinned images and bounded resources", func(t *testing.T) {
		for _, v := range vs {
			for _, d := range v.m.deployments {
				for _, c := range d.Spec.Template.Spec.Containers {
					where := v.m.file[d] + " container " + c.Name
					if !pinned(c.Image) {
						t.Errorf("%s: image %q: give a version tag or digest", where, c.Image)
					}
					for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
						req, hasReq := c.Resources.Requests[r]
						lim, hasLim := c.Resources.Limits[r]
						if !hasReq || !hasLim || req.Cmp(lim) > 0 {
							t.Errorf("%s: %s request %v and limit %v: want both, request ≤ limit", where, r, req.String(), lim.String())
						}
					}
				}
			}
		}
	})

	t.Run("three replicas, one disrupted at a time", func(t *testing.T) {
		if d.Spec.Replicas == nil || *d.Spec.Replicas != 3 {
			t.Errorf("%s: replicas %v, want 3", prod.file[d], d.Spec.Replicas)
		}
		for _, v := range vs {
			for _, d := range v.m.deployments {
				if !selects(t, d.Spec.Selector, d.Spec.Template.Labels) {
					t.Errorf("%s: the selector does not select the template's pods", v.m.file[d])
				}
			}
		}
		var budgets int
		for _, pdb := range prod.pdbs {
			if !selects(t, pdb.Spec.Selector, d.Spec.Template.Labels) {
				continue
			}
			budgets++
			replicas := int(*d.Spec.Replicas)
			var allowed int // evictions the budget allows while every replica is healthy
			var err error
			switch spec := pdb.Spec; {
			case (spec.MaxUnavailable == nil) == (spec.MinAvailable == nil):
				t.Errorf("%s: set one of maxUnavailable and minAvailable", prod.file[pdb])
				continue
			case spec.MaxUnavailable != nil:
				allowed, err = intstr.GetScaledValueFromIntOrPercent(spec.MaxUnavailable, replicas, true)
			default:
				var minAvailable int
				minAvailable, err = intstr.GetScaledValueFromIntOrPercent(spec.MinAvailable, replicas, true)
				allowed = replicas - minAvailable
			}
			if err != nil || allowed < 1 || allowed >= replicas {
				t.Errorf("%s: with %d replicas it allows %d evictions at once (%v): a drain must evict some but not all", prod.file[pdb], replicas, allowed, err)
			}
		}
		if budgets != 1 {
			t.Errorf("%d PodDisruptionBudgets select the facade's pods, want 1", budgets)
		}
	})

	t.Run("every variable set is one the binary reads", func(t *testing.T) {
		for _, v := range vs {
			t.Run(v.name, func(t *testing.T) {
				d, c := v.m.facade(t)
				env := containerEnv(t, v.m, d, c)
				for name := range env {
					if !reads(name) {
						t.Errorf("%s: %s is set, but the binary does not read it", v.name, name)
					}
				}
				if _, err := parseConfig(c.Args, mapEnv(env)); err != nil {
					t.Errorf("%s: the binary refuses the configuration: %v", v.name, err)
				}
			})
		}
	})

	t.Run("a Redis URL names a Service of its overlay", func(t *testing.T) {
		for _, v := range vs {
			d, c := v.m.facade(t)
			raw, ok := containerEnv(t, v.m, d, c)["PLUGIN_FACADE_REDIS_URL"]
			if !ok {
				continue
			}
			u, err := url.Parse(raw)
			if err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") {
				t.Errorf("%s: PLUGIN_FACADE_REDIS_URL %q: want redis:// or rediss://", v.name, raw)
				continue
			}
			svc := v.m.service(u.Hostname())
			if svc == nil {
				t.Errorf("%s: PLUGIN_FACADE_REDIS_URL names %q, which is no Service of the overlay", v.name, u.Hostname())
				continue
			}
			port, _ := strconv.ParseInt(u.Port(), 10, 32)
			if !slices.ContainsFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return p.Port == int32(port) }) {
				t.Errorf("%s: PLUGIN_FACADE_REDIS_URL port %q is not a port of Service %s", v.name, u.Port(), svc.Name)
			}
		}
	})

	env := containerEnv(t, prod, d, c)
	cfg, err := parseConfig(c.Args, mapEnv(env))
	if err != nil {
		t.Fatalf("the binary refuses the production configuration: %v", err)
	}
	grpcPort, grpcAll := listenPort(t, cfg.GRPCAddr)
	httpPort, httpAll := listenPort(t, cfg.HTTPAddr)

	t.Run("images are set by kustomize, not in the Deployment", func(t *testing.T) {
		// The base names the image by its bare name only, so that no
		// registry or tag is edited by hand: each overlay's images: entry
		// sets both, and an image that stayed unset renders as the bare name.
		raw, err := os.ReadFile(filepath.Join(deployDir, "base", "deployment.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		if !regexp.MustCompile(`(?m)^\s+image: ` + facadeName + `\s*$`).Match(raw) {
			t.Errorf("base/deployment.yaml: want the image as \"image: %s\", set by each overlay's images:", facadeName)
		}
		for _, v := range vs {
			_, c := v.m.facade(t)
			if c.Image == facadeName || !pinned(c.Image) {
				t.Errorf("%s: image %q: the overlay's kustomization.yaml must set it (images: name %s, newName, newTag or digest)", v.name, c.Image, facadeName)
			}
		}
	})

	t.Run("GOMEMLIMIT leaves headroom below the memory limit", func(t *testing.T) {
		for _, v := range vs {
			d, c := v.m.facade(t)
			limit, ok := c.Resources.Limits[corev1.ResourceMemory]
			raw, set := containerEnv(t, v.m, d, c)["GOMEMLIMIT"]
			if !ok || !set {
				t.Errorf("%s: want a memory limit and GOMEMLIMIT below it", v.name)
				continue
			}
			soft, err := parseGoMemLimit(raw)
			if err != nil {
				t.Errorf("%s: GOMEMLIMIT=%q: %v", v.name, raw, err)
				continue
			}
			// The runtime's limit covers the Go heap and runtime, not the
			// whole process (the binary's mapped pages, non-Go memory):
			// below 90% of the container's limit it collects before the
			// kernel kills, above 70% it does not collect needlessly.
			if share := float64(soft) / float64(limit.Value()); share < 0.70 || share > 0.90 {
				t.Errorf("%s: GOMEMLIMIT=%s is %.0f%% of the memory limit %s, want 70-90%%", v.name, raw, 100*share, limit.String())
			}
		}
	})

	t.Run("the ServiceMonitor scrapes every replica's /metrics", func(t *testing.T) {
		if len(prod.serviceMonitors) != 1 || len(prod.prometheusRules) != 1 {
			t.Fatalf("production: %d ServiceMonitors and %d PrometheusRules, want one of each", len(prod.serviceMonitors), len(prod.prometheusRules))
		}
		sm := prod.serviceMonitors[0]
		svc := prod.service(facadeName)
		if svc == nil {
			t.Fatalf("production: no Service %s", facadeName)
		}
		if !selects(t, &sm.Spec.Selector, svc.Labels) {
			t.Errorf("%s: selects no Service %s (labels %v)", prod.file[sm], svc.Name, svc.Labels)
		}
		for _, other := range prod.services {
			if other != svc && selects(t, &sm.Spec.Selector, other.Labels) {
				t.Errorf("%s: also selects Service %s", prod.file[sm], other.Name)
			}
		}
		if len(sm.Spec.Endpoints) != 1 {
			t.Fatalf("%s: %d endpoints, want 1", prod.file[sm], len(sm.Spec.Endpoints))
		}
		ep := sm.Spec.Endpoints[0]
		i := slices.IndexFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == ep.Port })
		if i < 0 || ep.Path != "/metrics" {
			t.Fatalf("%s: port %q path %q: want a port of Service %s and /metrics", prod.file[sm], ep.Port, ep.Path, svc.Name)
		}
		if got := podPort(d, svc.Spec.Ports[i].TargetPort); got != httpPort {
			t.Errorf("%s: port %s reaches container port %d; the binary serves /metrics on %d", prod.file[sm], ep.Port, got, httpPort)
		}
		if prod.configMap("plugin-facade-dashboard") == nil {
			t.Errorf("production: no ConfigMap plugin-facade-dashboard (the Grafana dashboard)")
		}
	})

	t.Run("container ports are the ports the binary listens on", func(t *testing.T) {
		if !grpcAll || !httpAll {
			t.Errorf("the binary listens on %s and %s: not every interface, so neither probes nor the Service reach it", cfg.GRPCAddr, cfg.HTTPAddr)
		}
		if got := containerPort(c, intstr.FromString("grpc")); got != grpcPort {
			t.Errorf("container port grpc = %d, the binary serves gRPC on %s", got, cfg.GRPCAddr)
		}
		if got := containerPort(c, intstr.FromString("http")); got != httpPort {
			t.Errorf("container port http = %d, the binary serves HTTP on %s", got, cfg.HTTPAddr)
		}
	})

	t.Run("Services and NetworkPolicies reach container ports", func(t *testing.T) {
		for _, v := range vs {
			for _, svc := range v.m.services {
				target := v.m.selected(t, v.m.file[svc], &metav1.LabelSelector{MatchLabels: svc.Spec.Selector})
				if target == nil {
					continue
				}
				var reached []int32
				for _, sp := range svc.Spec.Ports {
					tp := sp.TargetPort
					if tp.Type == intstr.Int && tp.IntVal == 0 { // defaults to the port
						tp = intstr.FromInt32(sp.Port)
					}
					if p := podPort(target, tp); p != 0 {
						reached = append(reached, p)
					} else {
						t.Errorf("%s: port %s: the pods of %s have no port %s", v.m.file[svc], sp.Name, target.Name, tp.String())
					}
				}
				if svc.Name == facadeName && (!slices.Contains(reached, grpcPort) || !slices.Contains(reached, httpPort)) {
					t.Errorf("%s: exposes container ports %v, want gRPC %d and HTTP %d", v.m.file[svc], reached, grpcPort, httpPort)
				}
			}
			for _, np := range v.m.networkPolicies {
				target := v.m.selected(t, v.m.file[np], &np.Spec.PodSelector)
				if target == nil {
					continue
				}
				for _, rule := range np.Spec.Ingress {
					for _, p := range rule.Ports {
						if p.Port == nil || podPort(target, *p.Port) == 0 {
							t.Errorf("%s: port %v: not a port of the pods of %s", v.m.file[np], p.Port, target.Name)
						}
					}
					if !slices.ContainsFunc(rule.From, func(p networkingv1.NetworkPolicyPeer) bool {
						return p.PodSelector != nil && selects(t, p.PodSelector, d.Spec.Template.Labels)
					}) {
						t.Errorf("%s: an ingress rule does not admit the facade's pods", v.m.file[np])
					}
				}
			}
		}
	})

	t.Run("shutdown fits in the grace period", func(t *testing.T) {
		var preStop time.Duration
		if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Sleep == nil || c.Lifecycle.PreStop.Sleep.Seconds < 1 {
			t.Errorf("no preStop sleep: the gRPC port would close before load balancers stop sending to it")
		} else {
			preStop = time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
		}
		need := preStop + cfg.Server.ShutdownTimeout + spanFlushTimeout
		if grace := pod.TerminationGracePeriodSeconds; grace == nil || time.Duration(*grace)*time.Second < need {
			t.Errorf("terminationGracePeriodSeconds %s < preStop %v + --shutdown-timeout %v + span flush %v", fmtSeconds(grace), preStop, cfg.Server.ShutdownTimeout, spanFlushTimeout)
		}
	})

	// The probes, asked of the binary itself, started with the sandbox
	// overlay's configuration (on loopback ports of its own): it needs
	// neither a Cloud API key nor Redis, and its probes are the base's, as
	// every overlay's are (checked first).
	t.Run("probes get answers from the running binary", func(t *testing.T) {
		sd, sc := sandbox.facade(t)
		for _, probe := range []struct {
			role       string
			prod, demo *corev1.Probe
		}{{"livenessProbe", c.LivenessProbe, sc.LivenessProbe}, {"readinessProbe", c.ReadinessProbe, sc.ReadinessProbe}, {"startupProbe", c.StartupProbe, sc.StartupProbe}} {
			if !reflect.DeepEqual(probe.prod, probe.demo) {
				t.Errorf("%s: the overlays' %ss differ: %+v and %+v", sandbox.file[sd], probe.role, probe.prod, probe.demo)
			}
		}
		env := containerEnv(t, sandbox, sd, sc)
		probes := []struct {
			role  string
			probe *corev1.Probe
			path  string // of an httpGet probe; "" for gRPC
		}{
			{"livenessProbe", c.LivenessProbe, "/healthz"},  // alive while draining
			{"readinessProbe", c.ReadinessProbe, "/readyz"}, // off from the moment shutdown begins
			{"startupProbe", c.StartupProbe, ""},            // grpc.health.v1
		}
		grpcAddr, httpAddr := startFromManifest(t, sc.Args, mapEnv(env))
		for _, p := range probes {
			switch {
			case p.probe == nil:
				t.Errorf("no %s", p.role)
			case p.path != "":
				h := p.probe.HTTPGet
				if h == nil || h.Path != p.path {
					t.Errorf("%s: want httpGet %s", p.role, p.path)
					continue
				}
				if port := containerPort(c, h.Port); port != httpPort || h.Host != "" || (h.Scheme != "" && h.Scheme != corev1.URISchemeHTTP) {
					t.Errorf("%s: port %s (container port %d), host %q, scheme %q: the binary serves plain HTTP on port %d of the pod",
						p.role, h.Port.String(), port, h.Host, h.Scheme, httpPort)
				}
				req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+httpAddr+h.Path, nil)
				if err != nil {
					t.Fatal(err)
				}
				for _, hh := range h.HTTPHeaders {
					req.Header.Add(hh.Name, hh.Value)
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatalf("%s: GET %s: %v", p.role, h.Path, err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					t.Errorf("%s: GET %s = %s, want 200", p.role, h.Path, resp.Status)
				}
			default:
				g := p.probe.GRPC
				if g == nil {
					t.Errorf("%s: want a grpc probe", p.role)
					continue
				}
				if g.Port != grpcPort {
					t.Errorf("%s: grpc port %d, the binary serves gRPC on %d", p.role, g.Port, grpcPort)
				}
				conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close()
				var service string // the kubelet asks for the server's overall health when unset
				if g.Service != nil {
					service = *g.Service
				}
				resp, err := healthpb.NewHealthClient(conn).Check(t.Context(), &healthpb.HealthCheckRequest{Service: service})
				if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
					t.Errorf("%s: grpc.health.v1 Check(%q) = %v, %v; want SERVING", p.role, service, resp.GetStatus(), err)
				}
			}
		}
	})
}

// startFromManifest runs the binary in process with args and environ, on
// loopback ports chosen by the system, until the test ends.
func startFromManifest(t *testing.T, args []string, environ []string) (grpcAddr, httpAddr string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	var stdout, stderr testutil.Buffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, append(slices.Clone(args), "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"), environ, &stdout, &stderr)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("run: %v\n%s", err, stderr.String())
			}
		case <-time.After(20 * time.Second):
			t.Errorf("run did not return after its context ended")
		}
	})
	return servingAddrs(t, &stderr)
}

// mapEnv is env as os.Environ gives it.
func mapEnv(env map[string]string) []string {
	var out []string
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	return out
}

func (m *manifests) service(name string) *corev1.Service {
	for _, s := range m.services {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// selected returns the one Deployment of m whose pods sel selects, and
// reports (naming where) when it selects none or several.
func (m *manifests) selected(t *testing.T, where string, sel *metav1.LabelSelector) *appsv1.Deployment {
	t.Helper()
	var found []*appsv1.Deployment
	for _, d := range m.deployments {
		if selects(t, sel, d.Spec.Template.Labels) {
			found = append(found, d)
		}
	}
	if len(found) != 1 {
		t.Errorf("%s: selects the pods of %d Deployments, want 1", where, len(found))
		return nil
	}
	return found[0]
}

// podPort resolves a port by number or name among the containers of d's pods.
func podPort(d *appsv1.Deployment, p intstr.IntOrString) int32 {
	for i := range d.Spec.Template.Spec.Containers {
		if port := containerPort(&d.Spec.Template.Spec.Containers[i], p); port != 0 {
			return port
		}
	}
	return 0
}

// pinned reports whether image names a version: a digest, or a tag other
// than latest.
func pinned(image string) bool {
	if strings.Contains(image, "@sha256:") {
		return true
	}
	_, tag, ok := strings.Cut(image[strings.LastIndex(image, "/")+1:], ":")
	return ok && tag != "" && tag != "latest"
}

// parseGoMemLimit parses GOMEMLIMIT as the Go runtime does: a byte count
// with an optional unit B, KiB, MiB, GiB or TiB.
func parseGoMemLimit(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}}
	mult := int64(1)
	for _, u := range units {
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = num, u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("not a positive byte count with a unit (B, KiB, MiB, GiB, TiB)")
	}
	return n * mult, nil
}

func fmtSeconds(s *int64) string {
	if s == nil {
		return "unset"
	}
	return fmt.Sprintf("%ds", *s)
}
