package failure

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	rpchttp "google.golang.org/genproto/googleapis/rpc/http"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/proto"
)

// TestProtosDescribeEveryDetail: the google/rpc protos that `make protos`
// writes for callers define the status and every detail a failure carries,
// so that a client generating from this repository decodes them all (defect 7
// of issue 15: the protos came from grpc-gateway v1.16.0, older than
// ErrorInfo, and had no HttpResponse).
func TestProtosDescribeEveryDetail(t *testing.T) {
	root := "../../third_party/googleapis"
	if _, err := os.Stat(root); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s: %v (make test runs make protos first)", root, err)
		}
		t.Skipf("%s is not there: run make protos", root)
	}
	for _, m := range []proto.Message{&spb.Status{}, &errdetails.ErrorInfo{}, &errdetails.RetryInfo{}, &errdetails.RequestInfo{},
		&errdetails.BadRequest{}, &errdetails.QuotaFailure{}, &rpchttp.HttpResponse{}} {
		d := m.ProtoReflect().Descriptor()
		file := d.ParentFile().Path()
		src, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(file)))
		if err != nil {
			t.Errorf("%s: %v", d.FullName(), err)
			continue
		}
		if !strings.Contains(string(src), "message "+string(d.Name())+" {") {
			t.Errorf("%s defines no %s", file, d.FullName())
		}
	}
}
