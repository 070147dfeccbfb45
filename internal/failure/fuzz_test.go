package failure

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"unicode/utf8"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/acme/plugin-facade/internal/upstream"
)

// FuzzErrorTranslation: whatever Failure envelope the upstream sends with
// whatever status, the caller gets a proper non-OK status whose message is
// valid UTF-8, with exactly one ErrorInfo and details that all decode.
func FuzzErrorTranslation(f *testing.F) {
	files, err := filepath.Glob("../upstream/testdata/failure_*.json")
	if err != nil || len(files) == 0 {
		f.Fatalf("no seed examples: %v", err)
	}
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(400, b)
	}
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
		st := status.Convert(FromUpstream(e, "api.confluent.cloud", upstream.Meta{Attempts: 1}))
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
		r := RenderREST(st)
		var env struct {
			Errors []json.RawMessage `json:"errors"`
		}
		if r.Status < 400 || r.Status > 599 || json.Unmarshal(r.Body, &env) != nil || len(env.Errors) == 0 {
			t.Fatalf("REST %d %q for %d %q, want an error status and a Failure envelope", r.Status, r.Body, httpStatus, body)
		}
	})
}
