package upstream

import (
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/acme/plugin-facade/internal/testutil"
	"github.com/acme/plugin-facade/internal/upstream/upstreamtest"
)

// TestUnknownFieldsAreKeptAndReported: a resource with fields this version
// does not know keeps its JSON as sent (Raw), from the upstream and from
// the cache; each unknown field is counted per answer and logged once.
func TestUnknownFieldsAreKeptAndReported(t *testing.T) {
	const body = `{"api_version":"ccpm/v1","kind":"CustomConnectPluginVersion","id":"ver-1","shiny":true,` +
		`"spec":{"version":"1.0.0","connector_classes":[{"class_name":"A","type":"SOURCE","weight":2}],"novel":{"a":1}},` +
		`"status":{"phase":"ARCHIVED"}}`
	up := upstreamtest.Start(t, upstreamtest.Response{Status: 200, Body: body})
	var (
		mu     sync.Mutex
		counts = map[string]int{}
	)
	hooks := Hooks{UnknownField: func(route, field string) {
		mu.Lock()
		defer mu.Unlock()
		counts[route+" "+field]++
	}}
	var logs testutil.Buffer
	c := newClient(t, up.URL, WithHooks(hooks), WithLogger(slog.New(slog.NewTextHandler(&logs, nil))),
		WithCache(time.Minute, 10))
	for i, fresh := range []bool{true, true, false} {
		var opts []ReadOption
		if fresh {
			opts = append(opts, Fresh())
		}
		v, meta, err := c.GetPluginVersion(t.Context(), testAuth, "ccp-1", "ver-1", "env-1", opts...)
		if err != nil {
			t.Fatal(err)
		}
		if string(v.Raw) != body || meta.Cached == fresh {
			t.Errorf("read %d (cached %v): Raw %s, want the body as sent", i, meta.Cached, v.Raw)
		}
	}
	want := map[string]int{}
	for _, f := range []string{"shiny", "spec.connector_classes.weight", "spec.novel"} {
		want[RoutePluginVersion+" "+f] = 2 // per answer from the upstream; the cache's answer is not counted again
	}
	mu.Lock()
	defer mu.Unlock()
	if len(counts) != len(want) {
		t.Errorf("reported %v, want %v", counts, want)
	}
	for k, n := range want {
		if counts[k] != n {
			t.Errorf("%s reported %d times, want %d", k, counts[k], n)
		}
	}
	if n := strings.Count(logs.String(), "does not know"); n != 3 {
		t.Errorf("%d log lines, want one per unknown field name (3):\n%s", n, logs.String())
	}
}

// TestUnknownFieldNamesAreBounded: a name that is not printable ASCII, or
// too long, and any name past maxDriftNames, is reported as "(other)", so
// that no log line or metric label carries it (a label that is not UTF-8
// would make the metrics registry panic).
func TestUnknownFieldNamesAreBounded(t *testing.T) {
	var got []string
	d := &drift{hook: func(_, field string) { got = append(got, field) }, log: slog.New(slog.DiscardHandler), seen: map[string]bool{}}
	d.inspect(RouteConnectorPlugin, []byte(`{"id":"x","kind":"K","bad`+"\xff"+`":1,"`+strings.Repeat("n", maxDriftNameBytes+1)+`":2,"ok":3}`))
	if want := []string{otherDrift, otherDrift, "ok"}; !slices.Equal(got, want) {
		t.Errorf("reported %q, want %q", got, want)
	}
	got = nil
	for i := range maxDriftNames + 2 {
		d.report(RouteConnectorPlugin, fmt.Sprintf("f%d", i))
	}
	if n := len(d.seen); n > maxDriftNames+1 {
		t.Errorf("%d names remembered, want at most %d", n, maxDriftNames+1)
	}
	if last := got[len(got)-1]; last != otherDrift {
		t.Errorf("a name past the bound is reported as %q, want %q", last, otherDrift)
	}
}
