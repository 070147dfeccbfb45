package callinfo

import (
	"context"
	"log/slog"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestInfo(t *testing.T) {
	tests := []struct {
		name   string
		record func(*Info)
		want   []slog.Attr
	}{
		{"nothing recorded", func(*Info) {}, nil},
		{"answered without the upstream", func(i *Info) { i.Record(Upstream{}) }, nil},
		{"an answer", func(i *Info) { i.Record(Upstream{Status: 404, RequestID: "req-1", Attempts: 1}) }, []slog.Attr{
			slog.Int("upstream_status", 404), slog.String("upstream_request_id", "req-1"), slog.Int("upstream_attempts", 1)}},
		{"no answer after two attempts", func(i *Info) { i.Record(Upstream{Attempts: 2}) }, []slog.Attr{slog.Int("upstream_attempts", 2)}},
		{"the last record wins", func(i *Info) {
			i.Record(Upstream{Status: 503, RequestID: "a", Attempts: 1})
			i.Record(Upstream{Status: 200, RequestID: "b", Attempts: 2})
		}, []slog.Attr{
			slog.Int("upstream_status", 200), slog.String("upstream_request_id", "b"), slog.Int("upstream_attempts", 2)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, info := NewContext(context.Background())
			if FromContext(ctx) != info {
				t.Fatal("FromContext does not return the Info NewContext made")
			}
			tt.record(FromContext(ctx))
			if diff := cmp.Diff(tt.want, info.AppendAttrs(nil), cmp.Comparer(func(a, b slog.Attr) bool { return a.Equal(b) })); diff != "" {
				t.Errorf("AppendAttrs (-want +got):\n%s", diff)
			}
		})
	}
}

func TestNilInfo(t *testing.T) {
	info := FromContext(context.Background())
	if info != nil {
		t.Fatalf("FromContext of a bare context = %v, want nil", info)
	}
	info.Record(Upstream{Status: 200, RequestID: "x", Attempts: 1}) // must not panic
	if a := info.AppendAttrs(nil); a != nil {
		t.Errorf("nil Info AppendAttrs = %v", a)
	}
}

// TestConcurrentUse runs under -race: a handler may record while the
// interceptor reads (a call that times out leaves its handler running).
func TestConcurrentUse(t *testing.T) {
	_, info := NewContext(context.Background())
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(2)
		go func() { defer wg.Done(); info.Record(Upstream{Status: 200 + i, RequestID: "r", Attempts: i}) }()
		go func() { defer wg.Done(); _ = info.AppendAttrs(nil) }()
	}
	wg.Wait()
}
