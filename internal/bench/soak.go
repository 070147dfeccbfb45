package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pluginv1 "github.com/acme/plugin-facade/gen/go/confluent/plugin/v1"
	"github.com/acme/plugin-facade/internal/sandbox"
)

// SoakCodes are the codes a soak call may end with: OK, or what the
// sandbox's injected faults map to (502, 503 and resets: UNAVAILABLE; 500,
// malformed and oversized bodies: INTERNAL; 429: RESOURCE_EXHAUSTED; a call
// that retries past its deadline: DEADLINE_EXCEEDED). Every soak request is
// valid and authenticated, so any other code is a bug.
var SoakCodes = []codes.Code{codes.OK, codes.Unavailable, codes.Internal, codes.ResourceExhausted, codes.DeadlineExceeded}

// resource is what both RPCs return.
type resource interface {
	GetId() string
	GetKind() string
}

// CheckAnswer classifies one call's answer by its code, and returns an error
// when the answer is malformed: a success without id or kind, an error that
// is not a gRPC status, a status without a message, or a code outside
// SoakCodes.
func CheckAnswer(resp resource, err error) (codes.Code, error) {
	if err == nil {
		if resp == nil || resp.GetId() == "" || resp.GetKind() == "" {
			return codes.OK, errors.New("a success without id or kind")
		}
		return codes.OK, nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return codes.Unknown, fmt.Errorf("not a gRPC status: %v", err)
	}
	if !slices.Contains(SoakCodes, st.Code()) {
		return st.Code(), fmt.Errorf("unexpected code %v: %s", st.Code(), st.Message())
	}
	if st.Message() == "" {
		return st.Code(), fmt.Errorf("a %v status without a message", st.Code())
	}
	return st.Code(), nil
}

// Tally counts the answers of a soak. It is safe for concurrent use.
type Tally struct {
	mu        sync.Mutex
	byCode    map[codes.Code]int
	malformed int
	examples  []string // the first few malformed answers
}

// Add counts one answer.
func (t *Tally) Add(code codes.Code, malformed error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.byCode == nil {
		t.byCode = map[codes.Code]int{}
	}
	t.byCode[code]++
	if malformed != nil {
		t.malformed++
		if len(t.examples) < 5 {
			t.examples = append(t.examples, malformed.Error())
		}
	}
}

// Malformed returns how many answers were malformed, with a few examples.
func (t *Tally) Malformed() (int, []string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.malformed, slices.Clone(t.examples)
}

// Count returns how many answers had code.
func (t *Tally) Count(code codes.Code) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.byCode[code]
}

// String lists the answers by code, most frequent first.
func (t *Tally) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	cs := slices.SortedFunc(maps.Keys(t.byCode), func(a, b codes.Code) int { return t.byCode[b] - t.byCode[a] })
	var parts []string
	for _, c := range cs {
		parts = append(parts, fmt.Sprintf("%v %d", c, t.byCode[c]))
	}
	return strings.Join(parts, ", ")
}

// SoakCall is the Call of a soak: it calls the RPC that matches Path(n) with
// its own timeout, records the answer in tally, and fails only on a malformed
// answer.
func SoakCall(client pluginv1.PluginServiceClient, tally *Tally, timeout time.Duration) Call {
	return func(ctx context.Context, n uint64) error {
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		plugin, version := IDs(n)
		var (
			resp resource
			err  error
		)
		if n%2 == 0 {
			resp, err = client.GetConnectorPlugin(ctx, &pluginv1.GetConnectorPluginRequest{Id: plugin})
		} else {
			resp, err = client.GetPluginVersion(ctx, &pluginv1.GetPluginVersionRequest{PluginId: plugin, Id: version, Environment: sandbox.Environment})
		}
		code, malformed := CheckAnswer(resp, err)
		tally.Add(code, malformed)
		return malformed
	}
}

// GoroutinesGrew reports whether after, the goroutine count once the load has
// stopped, exceeds before (the count after a warm-up at the same concurrency)
// by more than the tolerance: half of before plus 20. Pools of idle
// connections may settle at a somewhat different size; a leak of one
// goroutine per call, or per failed call, grows far past it within a minute.
func GoroutinesGrew(before, after int) bool {
	return after > before+before/2+20
}

// MemoryGrew reports whether the resident set size keeps growing: when the
// largest sample of the last third of a run exceeds the largest of its first
// third by more than half, plus 32 MiB (room for the garbage collector's
// pacing and the 1 MiB bodies the faults provoke).
func MemoryGrew(samples []int64) bool {
	if len(samples) < 3 {
		return false
	}
	third := len(samples) / 3
	early, late := slices.Max(samples[:third]), slices.Max(samples[len(samples)-third:])
	return late > early+early/2+32<<20
}

// Goroutines reads the goroutine count from a net/http/pprof endpoint
// (debugURL/debug/pprof/goroutine?debug=1, whose first line is "goroutine
// profile: total N").
func Goroutines(ctx context.Context, debugURL string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, debugURL+"/debug/pprof/goroutine?debug=1", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil {
		return 0, fmt.Errorf("goroutine profile: %w", err)
	}
	n, ok := strings.CutPrefix(strings.TrimSpace(line), "goroutine profile: total ")
	if !ok {
		return 0, fmt.Errorf("goroutine profile starts with %q", line)
	}
	return strconv.Atoi(n)
}
