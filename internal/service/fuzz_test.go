package service

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/acme/plugin-facade/internal/upstream"
)

// seedExamples adds the API pages' examples (upstream/testdata) to f's seed
// corpus; `go test` runs them as regular cases.
func seedExamples(f *testing.F, add func(body []byte)) {
	f.Helper()
	files, err := filepath.Glob("../upstream/testdata/*.json")
	if err != nil || len(files) == 0 {
		f.Fatalf("no seed examples: %v", err)
	}
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		add(b)
	}
}

// FuzzTranslateResources: whatever JSON the upstream sends, what decodes
// translates into messages that marshal (valid UTF-8 strings, no panic), and
// keep their identity.
func FuzzTranslateResources(f *testing.F) {
	seedExamples(f, func(b []byte) { f.Add(b) })
	f.Add([]byte(`{"id":"x","kind":"K","spec":{"connector_classes":[null,{}],"environment":null},"status":{"phase":"\u0000"}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var v upstream.PluginVersion
		if json.Unmarshal(body, &v) == nil {
			m := pluginVersionToProto(&v)
			if _, err := proto.Marshal(m); err != nil || m.GetId() != v.ID {
				t.Fatalf("plugin version %q: marshal error %v, id %q", body, err, m.GetId())
			}
		}
		var p upstream.ConnectorPlugin
		if json.Unmarshal(body, &p) == nil {
			m := connectorPluginToProto(&p)
			if _, err := proto.Marshal(m); err != nil || m.GetId() != p.ID {
				t.Fatalf("connector plugin %q: marshal error %v, id %q", body, err, m.GetId())
			}
		}
	})
}
