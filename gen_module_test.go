package pluginfacade

import (
	"encoding/json"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// TestClientModuleDependencies holds the client module gen/ to what an
// internal client may be asked to depend on: grpc, protobuf, the googleapis
// protos and what grpc itself needs. Both what its go.mod requires (what a
// client's go.mod gains) and the modules its packages compile against are
// checked, so that no server dependency (OpenTelemetry, Redis, Prometheus,
// grpc-gateway, ...) creeps in through a generator or a hand edit.
func TestClientModuleDependencies(t *testing.T) {
	allowed := []string{
		"google.golang.org/grpc", "google.golang.org/protobuf",
		"google.golang.org/genproto/googleapis/api", "google.golang.org/genproto/googleapis/rpc",
		"golang.org/x/net", "golang.org/x/sys", "golang.org/x/text",
	}
	goIn := func(args ...string) []byte {
		t.Helper()
		cmd := exec.Command("go", args...)
		cmd.Dir = "gen"
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("go %s in gen/: %v", strings.Join(args, " "), err)
		}
		return out
	}
	var mod struct{ Require []struct{ Path string } }
	if err := json.Unmarshal(goIn("mod", "edit", "-json"), &mod); err != nil {
		t.Fatal(err)
	}
	if len(mod.Require) == 0 {
		t.Fatal("gen/go.mod requires nothing: not the client module")
	}
	for _, r := range mod.Require {
		if !slices.Contains(allowed, r.Path) {
			t.Errorf("gen/go.mod requires %s, which no client should need", r.Path)
		}
	}
	compiled := strings.Fields(string(goIn("list", "-deps", "-f", "{{with .Module}}{{.Path}}{{end}}", "./...")))
	for _, m := range compiled {
		if m != "github.com/acme/plugin-facade/gen" && !slices.Contains(allowed, m) {
			t.Errorf("the client module compiles against %s, which no client should need", m)
		}
	}
	if !slices.Contains(compiled, "google.golang.org/grpc") {
		t.Errorf("the client module does not compile against grpc: %v", compiled)
	}
}
