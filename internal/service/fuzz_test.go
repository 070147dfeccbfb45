package service

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"unicode/utf8"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/acme/plugin-facade/internal/failure"
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

// FuzzErrorTranslation: whatever Failure envelope the upstream sends with
// whatever status, the caller gets a proper non-OK status whose message is
// valid UTF-8, with exactly one ErrorInfo and details that all decode.
func FuzzErrorTranslation(f *testing.F) {
	seedExamples(f, func(b []byte) { f.Add(400, b) })
	f.Add(429, []byte(""))
	f.Add(502, []byte("<html>Bad Gateway</html>"))
	f.Add(404, []byte(`{"errors":[{"id":"\ud800","code":"\u00ff\u00fe bad","source":{"pointer":"/x"}}]}`))
	f.Fuzz(func(t *testing.T, httpStatus int, body []byte) {
		if httpStatus < 300 || httpStatus > 599 {
			return // not an error answer
		}
		var items struct {
			Errors []upstream.ErrorItem `json:"errors"`
		}
		_ = json.Unmarshal(body, &items)
		e := &upstream.Error{StatusCode: httpStatus, Items: items.Errors, RateLimit: upstream.RateLimit{Limit: -1, Remaining: -1, Reset: -1}}
		if len(e.Items) == 0 {
			e.Excerpt = string(body)
		}
		st := status.Convert(failure.FromUpstream(e, "api.confluent.cloud", upstream.Meta{Attempts: 1}))
		if st.Code() == codes.OK || !utf8.ValidString(st.Message()) {
			t.Fatalf("status %v %q for %d %q", st.Code(), st.Message(), httpStatus, body)
		}
		infos := 0
		for _, d := range st.Details() {
			switch d.(type) {
			case *errdetails.ErrorInfo:
				infos++
			case error:
				t.Fatalf("undecodable detail %v", d)
			}
		}
		if infos != 1 {
			t.Fatalf("%d ErrorInfo details, want exactly 1", infos)
		}
	})
}
