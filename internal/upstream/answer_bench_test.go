package upstream

import (
	"log/slog"
	"net/http"
	"testing"
)

// BenchmarkAnswer measures what the client does with a 2xx answer's body
// before anyone reads it, per read: checking it is the resource and decoding
// its fields (typed: a gRPC read), or checking it alone (as sent: a REST
// read, which passes the JSON on). The unknown-field scan, which every answer
// gets, is measured apart. Run with the Makefile's GOEXPERIMENT=jsonv2 to see
// what the build ships: go test -run '^$' -bench Answer -benchmem ./internal/upstream/
func BenchmarkAnswer(b *testing.B) {
	for _, res := range []struct{ name, route, file string }{
		{"plugin-version", RoutePluginVersion, "plugin_version.json"},
		{"connector-plugin", RouteConnectorPlugin, "connector_plugin.json"},
	} {
		body := []byte(readTestdata(b, res.file))
		c := &Client{maxBody: DefaultMaxBodyBytes, drift: &drift{log: slog.New(slog.DiscardHandler), seen: map[string]bool{}}}
		for _, read := range []struct {
			name string
			rc   readConfig
		}{{"typed", readConfig{}}, {"as-sent", readConfig{asSent: true}}} {
			b.Run(res.name+"/"+read.name, func(b *testing.B) {
				b.SetBytes(int64(len(body)))
				b.ReportAllocs()
				for b.Loop() {
					a := &answer{status: http.StatusOK, header: http.Header{}, body: body}
					c.checkAnswer(res.route, a, read.rc.asSent)
					out := resourceOf(res.route)
					if err := c.decode(a, res.route, out, read.rc); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
		b.Run(res.name+"/unknown-field-scan", func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				c.drift.inspect(res.route, body)
			}
		})
	}
}
