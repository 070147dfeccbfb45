package upstream

import (
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"
)

// seedFromTestdata adds every example of the API pages in testdata/ to f's seed
// corpus, so that `go test` (and so `make test`) runs them as regular cases.
func seedFromTestdata(f *testing.F, add func(body []byte)) {
	f.Helper()
	files, err := filepath.Glob("testdata/*.json")
	if err != nil || len(files) == 0 {
		f.Fatalf("no seed examples in testdata/: %v", err)
	}
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		add(b)
	}
}

// FuzzFailureEnvelope feeds arbitrary error bodies to the decoding of the
// Failure envelope: it must never panic, and what it keeps for a person to
// read must stay short, printable, valid UTF-8.
func FuzzFailureEnvelope(f *testing.F) {
	seedFromTestdata(f, func(b []byte) { f.Add(500, b) })
	f.Add(502, []byte("<html><body><h1>502 Bad Gateway</h1></body></html>"))
	f.Add(429, []byte(""))
	f.Add(400, []byte(`{"errors":[{"source":{"pointer":"/x","parameter":"p"},"message":"m","error_code":1}]}`))
	f.Add(503, []byte("\xff\xfe\x00\x1b[2J"))
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		e := newError(&answer{status: status, header: http.Header{}, body: body})
		msg := e.Error()
		if !utf8.ValidString(e.Excerpt) || len(e.Excerpt) > maxExcerpt+len("…") {
			t.Fatalf("excerpt %q: not valid UTF-8 or longer than %d bytes", e.Excerpt, maxExcerpt)
		}
		if strings.ContainsFunc(e.Excerpt, func(r rune) bool { return r < ' ' || r == 0x7f }) {
			t.Fatalf("excerpt %q holds control characters", e.Excerpt)
		}
		if len(e.Items) == 0 && e.Excerpt == "" && len(strings.TrimSpace(string(body))) > 0 && !strings.Contains(string(body), "<") {
			t.Logf("body %q left no excerpt", body)
		}
		_ = msg
	})
}

// FuzzResources feeds arbitrary 2xx bodies to the decoding of both resources:
// it must never panic, and a body it accepts has an id and a kind.
func FuzzResources(f *testing.F) {
	seedFromTestdata(f, func(b []byte) { f.Add(b) })
	f.Add([]byte(`{"id":"x","kind":"K","metadata":{"created_at":"2006-01-02T15:04:05Z"}}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, body []byte) {
		c := &Client{maxBody: DefaultMaxBodyBytes, drift: &drift{log: slog.New(slog.DiscardHandler), seen: map[string]bool{}}}
		a := &answer{status: 200, header: http.Header{}, body: body}
		c.checkAnswer(RoutePluginVersion, a, false)
		var v PluginVersion
		if err := c.decode(a, RoutePluginVersion, &v, readConfig{}); err == nil && (v.ID == "" || v.Kind == "") {
			t.Fatalf("accepted a plugin version without id or kind: %q", body)
		}
		c.drift.inspect(RoutePluginVersion, body) // never stuck, valid JSON or not
		a = &answer{status: 200, header: http.Header{}, body: body}
		c.checkAnswer(RouteConnectorPlugin, a, false)
		var p ConnectorPlugin
		if err := c.decode(a, RouteConnectorPlugin, &p, readConfig{}); err == nil && (p.ID == "" || p.Kind == "") {
			t.Fatalf("accepted a connector plugin without id or kind: %q", body)
		}
		c.drift.inspect(RouteConnectorPlugin, body)
	})
}
