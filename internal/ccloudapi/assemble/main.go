// Command assemble rebuilds internal/ccloudapi/openapi.yaml: with -pages, it
// first extracts the OpenAPI YAML of each API page (*.txt) there into
// internal/ccloudapi/testdata; then it assembles testdata/*.yaml into one
// document; with -codegen, it also writes that document with its allOfs
// folded, for oapi-codegen. `make generate` runs it (with -pages when
// ../shared/upstream-api is there).
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/acme/plugin-facade/internal/ccloudapi"
)

func main() {
	pages := flag.String("pages", "", "folder of API pages (*.txt) to extract the YAML of first")
	dir := flag.String("dir", "internal/ccloudapi", "the ccloudapi package's folder")
	out := flag.String("out", "", "where to write the document (default: <dir>/openapi.yaml)")
	codegen := flag.String("codegen", "", "where to write the document with its allOfs folded, for oapi-codegen (FoldAllOf)")
	flag.Parse()
	if *out == "" {
		*out = filepath.Join(*dir, "openapi.yaml")
	}
	if err := run(*pages, filepath.Join(*dir, "testdata"), *out, *codegen); err != nil {
		fmt.Fprintln(os.Stderr, "assemble:", err)
		os.Exit(1)
	}
}

func run(pages, testdata, out, codegen string) error {
	if pages != "" {
		txts, err := filepath.Glob(filepath.Join(pages, "*.txt"))
		if err != nil {
			return err
		}
		for _, txt := range txts {
			page, err := os.ReadFile(txt)
			if err != nil {
				return err
			}
			yml, err := ccloudapi.Extract(page)
			if err != nil {
				return fmt.Errorf("%s: %w", txt, err)
			}
			name := strings.TrimSuffix(filepath.Base(txt), ".txt") + ".yaml"
			if err := os.WriteFile(filepath.Join(testdata, name), yml, 0o644); err != nil {
				return err
			}
		}
	}
	ymls, err := filepath.Glob(filepath.Join(testdata, "*.yaml"))
	if err != nil {
		return err
	}
	if len(ymls) == 0 {
		return ccloudapi.ErrNoPages
	}
	slices.Sort(ymls)
	var docs [][]byte
	for _, y := range ymls {
		b, err := os.ReadFile(y)
		if err != nil {
			return err
		}
		docs = append(docs, b)
	}
	doc, err := ccloudapi.Assemble(docs...)
	if err != nil {
		return err
	}
	if err := os.WriteFile(out, doc, 0o644); err != nil {
		return err
	}
	if codegen == "" {
		return nil
	}
	folded, err := ccloudapi.FoldAllOf(doc)
	if err != nil {
		return err
	}
	return os.WriteFile(codegen, folded, 0o644)
}
