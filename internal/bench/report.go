package bench

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"
)

// The paths `make bench` measures.
const (
	PathDirect  = "direct"      // HTTP GETs to the sandbox
	PathProxy   = "proxy"       // the same GETs through passproxy
	PathGRPC    = "gRPC"        // the facade over gRPC
	PathGateway = "gateway"     // the facade's REST gateway
	PathHealth  = "gRPC health" // a bare gRPC round trip to the facade (grpc.health.v1 Check)
	// The facade sharing its state through Redis (--redis-url): with the
	// cache off, and answering from the cache (every hit read from Redis).
	PathGRPCRedis     = "gRPC, Redis"
	PathGRPCRedisHits = "gRPC, Redis cache hits"
)

// facadePath reports whether path goes through the facade.
func facadePath(path string) bool {
	switch path {
	case PathGRPC, PathGateway, PathHealth, PathGRPCRedis, PathGRPCRedisHits:
		return true
	}
	return false
}

// Cell is one measured path at one concurrency.
type Cell struct {
	Path        string
	Concurrency int
	Result
	// FacadeCPU is the CPU time the facade's process used during the cell
	// (zero for the paths that do not go through it).
	FacadeCPU time.Duration
}

// find returns the cell of path at concurrency.
func find(cells []Cell, path string, concurrency int) (Cell, bool) {
	for _, c := range cells {
		if c.Path == path && c.Concurrency == concurrency {
			return c, true
		}
	}
	return Cell{}, false
}

// Table renders cells as a Markdown table. Each facade path also shows its
// throughput and p50 as a ratio of the proxy's and of direct's at the same
// concurrency.
func Table(cells []Cell) string {
	var b strings.Builder
	b.WriteString("| path | concurrency | calls | errors | throughput (req/s) | p50 | p99 | throughput ÷ proxy | throughput ÷ direct | p50 ÷ proxy | p50 ÷ direct | facade CPU per call |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, c := range cells {
		fmt.Fprintf(&b, "| %s | %d | %d | %d | %.0f | %s | %s |", c.Path, c.Concurrency, c.Calls, c.Errors, c.Throughput(), ms(c.P50), ms(c.P99))
		if facadePath(c.Path) {
			proxy, _ := find(cells, PathProxy, c.Concurrency)
			direct, _ := find(cells, PathDirect, c.Concurrency)
			fmt.Fprintf(&b, " %s | %s | %s | %s | %s |",
				ratio(c.Throughput(), proxy.Throughput()), ratio(c.Throughput(), direct.Throughput()),
				ratio(c.P50.Seconds(), proxy.P50.Seconds()), ratio(c.P50.Seconds(), direct.P50.Seconds()), cpuPerCall(c))
		} else {
			b.WriteString(" | | | | |")
		}
		b.WriteString("\n")
	}
	return b.String()
}

// cpuPerCall is the facade's CPU time per successful call of c, in µs.
func cpuPerCall(c Cell) string {
	n := c.Calls - c.Errors
	if n <= 0 || c.FacadeCPU <= 0 {
		return "–"
	}
	return fmt.Sprintf("%.0f µs", float64(c.FacadeCPU)/float64(n)/float64(time.Microsecond))
}

func ms(d time.Duration) string { return fmt.Sprintf("%.3f ms", float64(d)/float64(time.Millisecond)) }

func ratio(a, b float64) string {
	if b == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2fx", a/b)
}

// Target is one of the issues' performance targets and whether cells meet
// it. Got is zero when its cells were not measured (see -concurrency).
type Target struct {
	Name  string
	Got   float64
	Limit float64
	Met   bool
}

// Missed returns the measured targets that are not met.
func Missed(ts []Target) []Target {
	var out []Target
	for _, t := range ts {
		if t.Got != 0 && !t.Met {
			out = append(out, t)
		}
	}
	return out
}

// Targets checks the issues' targets: gRPC throughput at concurrency 32 at
// least 0.85x the proxy's, the gateway's at least 0.75x, and gRPC p50 at
// concurrency 1 at most 1.8x the proxy's (issue 5); with the Redis cells,
// gRPC throughput with --redis-url at least 0.85x without, and a cache hit
// from Redis faster than a call to the upstream (issue 12).
func Targets(cells []Cell) []Target {
	div := func(path string, conc int, f func(Cell) float64) float64 {
		c, ok1 := find(cells, path, conc)
		p, ok2 := find(cells, PathProxy, conc)
		if !ok1 || !ok2 || f(p) == 0 {
			return 0
		}
		return f(c) / f(p)
	}
	tput := func(c Cell) float64 { return c.Throughput() }
	p50 := func(c Cell) float64 { return c.P50.Seconds() }
	g := div(PathGRPC, 32, tput)
	w := div(PathGateway, 32, tput)
	l := div(PathGRPC, 1, p50)
	ts := []Target{
		{"gRPC throughput at c=32 ÷ proxy's ≥ 0.85", g, 0.85, g >= 0.85},
		{"gateway throughput at c=32 ÷ proxy's ≥ 0.75", w, 0.75, w >= 0.75},
		{"gRPC p50 at c=1 ÷ proxy's ≤ 1.8", l, 1.8, l > 0 && l <= 1.8},
	}
	// Issue 12: what sharing the state through Redis costs, when measured.
	grpc32, _ := find(cells, PathGRPC, 32)
	grpc1, _ := find(cells, PathGRPC, 1)
	if r, ok := find(cells, PathGRPCRedis, 32); ok && grpc32.Throughput() > 0 {
		x := r.Throughput() / grpc32.Throughput()
		ts = append(ts, Target{"gRPC with Redis (cache off) throughput at c=32 ÷ gRPC's ≥ 0.85", x, 0.85, x >= 0.85})
	}
	if h, ok := find(cells, PathGRPCRedisHits, 1); ok && grpc1.P50 > 0 {
		x := h.P50.Seconds() / grpc1.P50.Seconds()
		ts = append(ts, Target{"gRPC Redis cache hit p50 at c=1 ÷ gRPC's (from the upstream) < 1", x, 1, x > 0 && x < 1})
	}
	return ts
}

// TargetsTable renders targets as a Markdown table.
func TargetsTable(ts []Target) string {
	var b strings.Builder
	b.WriteString("| target | measured | met |\n|---|---:|---|\n")
	for _, t := range ts {
		met := "yes"
		switch {
		case t.Got == 0:
			met = "not measured"
		case !t.Met:
			met = "**no**"
		}
		fmt.Fprintf(&b, "| %s | %.2f | %s |\n", t.Name, t.Got, met)
	}
	return b.String()
}

// Machine describes where a benchmark ran.
type Machine struct {
	CPU     string
	Cores   int
	Go      string
	OS      string
	LoadAvg string // /proc/loadavg when the run started: 1, 5, 15 minutes
	Date    string
	Commit  string
}

// ThisMachine describes the machine, the toolchain and the checkout.
func ThisMachine() Machine {
	m := Machine{
		CPU:   "unknown",
		Cores: runtime.NumCPU(),
		Go:    runtime.Version(),
		OS:    runtime.GOOS + "/" + runtime.GOARCH,
		Date:  time.Now().UTC().Format("2006-01-02 15:04 MST"),
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/etc/os-release"); err == nil {
		for line := range strings.Lines(string(b)) {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "PRETTY_NAME="); ok {
				m.OS += ", " + strings.Trim(v, `"`)
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.OS += ", Linux " + strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) >= 3 {
			m.LoadAvg = strings.Join(f[:3], " ")
		}
	}
	m.Commit = "unknown"
	if out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output(); err == nil {
		m.Commit = strings.TrimSpace(string(out))
		if out, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(out) > 0 {
			m.Commit += " (with uncommitted changes)"
		}
	}
	return m
}
