package caller

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"time"
)

// DefaultPolicyCheck is how often WatchPolicy looks for a changed policy file
// by default.
const DefaultPolicyCheck = 5 * time.Second

// LoadPolicy reads and parses a policy file.
func LoadPolicy(file string) (*Policy, error) {
	data, err := readPolicy(file)
	if err != nil {
		return nil, err
	}
	return ParsePolicy(file, data)
}

func readPolicy(file string) ([]byte, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxPolicyBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return data, nil
}

// WatchPolicy keeps the Guard's policy that of file until ctx ends: it reads
// the file again at each value of reload (SIGHUP), and whenever its content
// has changed, which it checks every interval (a Kubernetes ConfigMap
// changes by a swap of symbolic links, which a stat sees). A file that does
// not parse leaves the last good policy in force, and says so in the log and
// in plugin_facade_caller_policy_last_reload_ok. Calls in flight are never
// affected: each call reads the policy once, when it starts.
func (g *Guard) WatchPolicy(ctx context.Context, file string, interval time.Duration, reload <-chan os.Signal) {
	if interval <= 0 {
		interval = DefaultPolicyCheck
	}
	last, _ := readPolicy(file)
	lastSum := sha256.Sum256(last)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		forced := false
		select {
		case <-ctx.Done():
			return
		case <-reload:
			forced = true
		case <-t.C:
		}
		data, err := readPolicy(file)
		sum := sha256.Sum256(data)
		if !forced && sum == lastSum { // unchanged (or still unreadable: said once)
			continue
		}
		lastSum = sum
		var p *Policy
		if err == nil {
			p, err = ParsePolicy(file, data)
		}
		if err != nil {
			g.metrics.reloads.WithLabelValues("failed").Inc()
			g.metrics.loaded.Set(0)
			g.log.Error("caller policy reload failed: the last good policy stays in force", "file", file, "error", err.Error())
			continue
		}
		g.SetPolicy(p)
		g.metrics.reloads.WithLabelValues("ok").Inc()
		g.metrics.loaded.Set(1)
		g.log.Info("caller policy reloaded", "file", file, "rules", len(p.rules))
	}
}
