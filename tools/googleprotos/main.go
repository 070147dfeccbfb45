// Command googleprotos writes the google/api and google/rpc protos that
// plugin-facade imports (google/api/annotations.proto, http.proto) and that its
// callers need to read its errors (google/rpc/status.proto, code.proto,
// error_details.proto with ErrorInfo, http.proto with HttpResponse), as .proto
// sources printed from the descriptors compiled into
// google.golang.org/genproto/googleapis/{api,rpc}. Those modules are the very
// ones the server links, at the versions the service's go.mod pins (checked:
// this module's go.mod must pin the same), so the protos a client generates
// from are exactly what the server sends. googleapis/googleapis itself is not
// available from the Go module proxy, and no Go module ships a current copy of
// its .proto files: this works offline from the module cache.
//
// The descriptors carry no comments; the printed files say where the
// commented originals are.
//
// Usage (from tools/, as `make protos` runs it):
//
//	go run ./googleprotos -gomod ../go.mod -out ../third_party/googleapis
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"

	"github.com/jhump/protoreflect/v2/protoprint"
	"golang.org/x/mod/modfile"
	"google.golang.org/genproto/googleapis/api/annotations"
	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	rpchttp "google.golang.org/genproto/googleapis/rpc/http"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// files are the protos written, each with the module its descriptor comes from.
var files = []struct {
	fd     protoreflect.FileDescriptor
	module string
}{
	{annotations.File_google_api_annotations_proto, "google.golang.org/genproto/googleapis/api"},
	{annotations.File_google_api_http_proto, "google.golang.org/genproto/googleapis/api"},
	{status.File_google_rpc_status_proto, "google.golang.org/genproto/googleapis/rpc"},
	{code.File_google_rpc_code_proto, "google.golang.org/genproto/googleapis/rpc"},
	{errdetails.File_google_rpc_error_details_proto, "google.golang.org/genproto/googleapis/rpc"},
	{rpchttp.File_google_rpc_http_proto, "google.golang.org/genproto/googleapis/rpc"},
}

func main() {
	gomod := flag.String("gomod", "../go.mod", "the service's go.mod, whose genproto versions these must be")
	out := flag.String("out", "../third_party/googleapis", "directory to write the protos into")
	flag.Parse()
	if err := run(*gomod, *out); err != nil {
		fmt.Fprintln(os.Stderr, "googleprotos:", err)
		os.Exit(1)
	}
}

func run(gomod, out string) error {
	versions, err := linkedVersions()
	if err != nil {
		return err
	}
	if err := sameAsService(gomod, versions); err != nil {
		return err
	}
	p := &protoprint.Printer{}
	for _, f := range files {
		var b bytes.Buffer
		fmt.Fprintf(&b, "// Printed by tools/googleprotos from the descriptor compiled into\n"+
			"// %s@%s; never edit it by hand.\n"+
			"// The commented original: https://github.com/googleapis/googleapis/blob/master/%s\n\n",
			f.module, versions[f.module], f.fd.Path())
		if err := p.PrintProtoFile(f.fd, &b); err != nil {
			return fmt.Errorf("printing %s: %w", f.fd.Path(), err)
		}
		path := filepath.Join(out, filepath.FromSlash(f.fd.Path()))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// linkedVersions are the versions of the genproto modules built into this
// program.
func linkedVersions() (map[string]string, error) {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return nil, errors.New("no build information")
	}
	v := map[string]string{}
	for _, d := range bi.Deps {
		v[d.Path] = d.Version
	}
	return v, nil
}

// sameAsService checks that the service's go.mod pins the genproto modules at
// the versions this program links.
func sameAsService(gomod string, linked map[string]string) error {
	data, err := os.ReadFile(gomod)
	if err != nil {
		return err
	}
	mf, err := modfile.Parse(gomod, data, nil)
	if err != nil {
		return err
	}
	var stale []string
	for _, r := range mf.Require {
		if strings.HasPrefix(r.Mod.Path, "google.golang.org/genproto/googleapis/") && linked[r.Mod.Path] != "" && linked[r.Mod.Path] != r.Mod.Version {
			stale = append(stale, r.Mod.String())
		}
	}
	if len(stale) > 0 {
		return fmt.Errorf("%s pins %s, other versions than tools/go.mod: run `cd tools && go get %s`",
			gomod, strings.Join(stale, ", "), strings.Join(stale, " "))
	}
	return nil
}
