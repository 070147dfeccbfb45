package pluginfacade

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strings"
	"testing"
)

// servingCore are the packages of the serving core (issue 15), whose
// production functions stay short enough to read as one step of the call's
// pipeline each.
var servingCore = []string{
	"cmd/server",
	"internal/failure",
	"internal/fleet",
	"internal/passthrough",
	"internal/server",
	"internal/service",
	"internal/telemetry",
	"internal/upstream",
}

// maxFuncLines is the most lines a production function of the serving core
// spans, from its func line to its closing brace.
const maxFuncLines = 60

// dataTables are the functions allowed past maxFuncLines because they are a
// table of data, not logic ("package/dir.Func" or "package/dir.Type.Method").
// None today; add one only with the reason in a comment.
var dataTables = map[string]bool{}

// TestServingCoreFunctionsAreShort fails on any production function (or
// function literal at package level) of the serving core longer than
// maxFuncLines, except the data tables above: split it along its concerns.
func TestServingCoreFunctionsAreShort(t *testing.T) {
	checked := 0
	for _, dir := range servingCore {
		files, err := filepath.Glob(filepath.Join(dir, "*.go"))
		if err != nil {
			t.Fatal(err)
		}
		if len(files) == 0 {
			t.Errorf("%s: no Go files; update servingCore", dir)
		}
		for _, path := range files {
			if strings.HasSuffix(path, "_test.go") {
				continue
			}
			for name, lines := range funcLengths(t, path) {
				checked++
				key := dir + "." + name
				switch {
				case lines > maxFuncLines && !dataTables[key]:
					t.Errorf("%s: %s spans %d lines, more than %d: split it along its concerns", path, name, lines, maxFuncLines)
				case lines <= maxFuncLines && dataTables[key]:
					t.Errorf("%s: %s spans %d lines and needs no place in dataTables any more", path, name, lines)
				}
			}
		}
	}
	if checked < 100 {
		t.Errorf("only %d functions checked: is the test looking at the right directories?", checked)
	}
}

// funcLengths returns the lines each function of the file at path spans,
// by name: "Func", "Type.Method", or "var#n" for the n-th function literal
// of the file's package-level declarations.
func funcLengths(t *testing.T, path string) map[string]int {
	t.Helper()
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
	if err != nil {
		t.Fatal(err)
	}
	span := func(n ast.Node) int { return fset.Position(n.End()).Line - fset.Position(n.Pos()).Line + 1 }
	lengths := map[string]int{}
	literals := 0
	for _, decl := range f.Decls {
		switch d := decl.(type) {
		case *ast.FuncDecl:
			if d.Body != nil {
				lengths[funcName(d)] = span(d)
			}
		case *ast.GenDecl:
			ast.Inspect(d, func(n ast.Node) bool {
				if lit, ok := n.(*ast.FuncLit); ok {
					literals++
					lengths[fmt.Sprintf("var#%d", literals)] = span(lit)
					return false
				}
				return true
			})
		}
	}
	return lengths
}

// funcName is "Func" or "Type.Method".
func funcName(d *ast.FuncDecl) string {
	if d.Recv == nil || len(d.Recv.List) == 0 {
		return d.Name.Name
	}
	typ := d.Recv.List[0].Type
	for {
		switch e := typ.(type) {
		case *ast.StarExpr:
			typ = e.X
			continue
		case *ast.IndexExpr:
			typ = e.X
			continue
		case *ast.IndexListExpr:
			typ = e.X
			continue
		case *ast.Ident:
			return e.Name + "." + d.Name.Name
		}
		return d.Name.Name
	}
}
