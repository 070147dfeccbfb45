package service

import (
	"context"
	"errors"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	pluginv1 "github.com/acme/plugin-facade/gen/go/confluent/plugin/v1"
	"github.com/acme/plugin-facade/internal/sandbox"
	"github.com/acme/plugin-facade/internal/testutil"
	"github.com/acme/plugin-facade/internal/upstream"
	"github.com/acme/plugin-facade/internal/upstream/upstreamtest"
)

// fastWatch polls every 20ms, backing off to 80ms: fast enough for tests.
var fastWatch = WithWatchIntervals(WatchIntervals{Min: 10 * time.Millisecond, Default: 20 * time.Millisecond, Cap: 80 * time.Millisecond})

var sandboxAuth = upstream.BasicAuth(sandbox.APIKey, sandbox.APISecret)

// startWatchSandbox starts a sandbox whose changing versions process for
// processing, and the service in front of it.
func startWatchSandbox(t *testing.T, processing time.Duration, opts ...Option) (*sandbox.Server, pluginv1.PluginServiceClient) {
	t.Helper()
	sb := testutil.StartSandbox(t, sandbox.WithLifecycle(processing))
	return sb, startSandboxService(t, sb.URL(), append([]Option{fastWatch}, opts...)...)
}

func watchReq(id string) *pluginv1.WatchPluginVersionRequest {
	return &pluginv1.WatchPluginVersionRequest{PluginId: sandbox.PluginID, Id: id, Environment: sandbox.Environment}
}

// receiveAll reads a watch to its end: the phases it sent, and how it ended.
func receiveAll(t *testing.T, stream grpc.ServerStreamingClient[pluginv1.CustomConnectPluginVersion]) ([]*pluginv1.CustomConnectPluginVersion, error) {
	t.Helper()
	var got []*pluginv1.CustomConnectPluginVersion
	for {
		v, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return got, nil
		}
		if err != nil {
			return got, err
		}
		got = append(got, v)
	}
}

func phases(vs []*pluginv1.CustomConnectPluginVersion) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = v.GetStatus().GetPhaseRaw()
	}
	return out
}

func TestWatchReachesATerminalPhase(t *testing.T) {
	tests := []struct {
		name, id   string
		wantPhases []string
		wantError  bool // the last version carries status.error_message
	}{
		{"processing, then ready", sandbox.ProcessingVersionID, []string{"PROCESSING", "READY"}, false},
		{"processing, then failed", sandbox.FailingVersionID, []string{"PROCESSING", "FAILED"}, true},
		{"ready already: sent once", sandbox.VersionID, []string{"READY"}, false},
		{"failed already: sent once", "", []string{"FAILED"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			sb, client := startWatchSandbox(t, 300*time.Millisecond)
			req := watchReq(tt.id)
			if tt.id == "" {
				req = &pluginv1.WatchPluginVersionRequest{PluginId: sandbox.FailedPluginID, Id: sandbox.FailedVersionID, Environment: sandbox.Environment}
			}
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			stream, err := client.WatchPluginVersion(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			got, err := receiveAll(t, stream)
			if err != nil {
				t.Fatalf("the watch ended with %v, want a normal end", err)
			}
			if p := phases(got); len(p) != len(tt.wantPhases) || p[len(p)-1] != tt.wantPhases[len(tt.wantPhases)-1] || p[0] != tt.wantPhases[0] {
				t.Fatalf("phases %v, want %v", p, tt.wantPhases)
			}
			last := got[len(got)-1]
			if (last.GetStatus().GetErrorMessage() != "") != tt.wantError {
				t.Errorf("error_message = %q", last.GetStatus().GetErrorMessage())
			}
			if len(got) > 1 && !last.GetMetadata().GetUpdatedAt().AsTime().After(got[0].GetMetadata().GetUpdatedAt().AsTime()) {
				t.Errorf("updated_at did not move with the phase")
			}
			// No duplicates: the loop polled many times while PROCESSING,
			// but sent each state once.
			if len(got) > 1 && sb.Requests() < 3 {
				t.Errorf("only %d polls: the test does not exercise unchanged states", sb.Requests())
			}
		})
	}
}

// TestWatchEndsWithTheCaller: the caller's deadline or cancellation ends the
// stream and stops the upstream polling (TestMain checks that no goroutine is
// left behind).
func TestWatchEndsWithTheCaller(t *testing.T) {
	for _, tt := range []struct {
		name     string
		ctx      func(context.Context) (context.Context, context.CancelFunc)
		wantCode codes.Code
	}{
		{"deadline", func(ctx context.Context) (context.Context, context.CancelFunc) {
			return context.WithTimeout(ctx, 300*time.Millisecond)
		}, codes.DeadlineExceeded},
		{"cancellation", func(ctx context.Context) (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(ctx)
			time.AfterFunc(300*time.Millisecond, cancel)
			return ctx, cancel
		}, codes.Canceled},
	} {
		t.Run(tt.name, func(t *testing.T) {
			// The minimal version stays PROCESSING forever.
			sb, client := startWatchSandbox(t, time.Hour)
			ctx, cancel := tt.ctx(t.Context())
			defer cancel()
			stream, err := client.WatchPluginVersion(ctx, &pluginv1.WatchPluginVersionRequest{
				PluginId: sandbox.MinimalPluginID, Id: sandbox.MinimalVersionID, Environment: sandbox.Environment})
			if err != nil {
				t.Fatal(err)
			}
			got, err := receiveAll(t, stream)
			if status.Code(err) != tt.wantCode || len(got) != 1 {
				t.Fatalf("%d messages, then %v; want 1 message, then %s", len(got), err, tt.wantCode)
			}
			// The poll loop stops, so nothing polls any more.
			n := sb.Requests()
			waitForNoPollLoop(t)
			if m := sb.Requests(); m > n+1 {
				t.Errorf("the upstream was polled %d more times after the caller left", m-n)
			}
		})
	}
}

// TestWatchersShareOnePollLoop: many callers watching the same version with
// the same credential cost the upstream what one does, and all see the same
// states.
func TestWatchersShareOnePollLoop(t *testing.T) {
	const watchers = 50
	sb, client := startWatchSandbox(t, time.Second)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	results := make(chan []string, watchers)
	for range watchers {
		wg.Go(func() {
			stream, err := client.WatchPluginVersion(ctx, watchReq(sandbox.ProcessingVersionID))
			if err != nil {
				t.Error(err)
				return
			}
			got, err := receiveAll(t, stream)
			if err != nil {
				t.Error(err)
			}
			results <- phases(got)
		})
	}
	wg.Wait()
	close(results)
	for p := range results {
		if len(p) == 0 || p[len(p)-1] != "READY" {
			t.Errorf("a watcher saw %v, want it to end with READY", p)
		}
	}
	// One watcher alone polls about 1s / 20..80ms ≈ 15 times; fifty
	// separate loops would make hundreds of requests.
	t.Logf("%d watchers, %d upstream requests", watchers, sb.Requests())
	if n := sb.Requests(); n > 25 {
		t.Errorf("%d watchers made %d upstream requests, want one poll loop's worth (≤ 25)", watchers, n)
	}
}

// TestWatchPermanentErrorMidStream: the version disappears during the watch;
// the stream ends with the status and details GetPluginVersion would return.
func TestWatchPermanentErrorMidStream(t *testing.T) {
	processing := `{"api_version":"ccpm/v1","kind":"CustomConnectPluginVersion","id":"ver-1","status":{"phase":"PROCESSING"}}`
	up := upstreamtest.StartScript(t,
		upstreamtest.Response{Status: 200, Body: processing},
		upstreamtest.Response{Status: 200, Body: processing},
		upstreamtest.Response{Status: 404, Header: http.Header{"X-Request-Id": {"req-gone"}}, Body: readExample(t, "failure_404.json")})
	uc, err := upstream.New(up.URL)
	if err != nil {
		t.Fatal(err)
	}
	client := startServiceOf(t, uc, WithDefaultCredentials(defaultKey), fastWatch)
	stream, err := client.WatchPluginVersion(t.Context(), &pluginv1.WatchPluginVersionRequest{PluginId: "ccp-1", Id: "ver-1", Environment: "env-1"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := receiveAll(t, stream)
	if len(got) != 1 {
		t.Errorf("%d messages before the error, want 1 (the second poll changed nothing)", len(got))
	}
	assertStatus(t, err, wantStatus{code: codes.NotFound, reason: "NOT_FOUND", requestID: "req-gone", msg: msg("Not Found", "HTTP 404")})
	if up.Count() != 3 {
		t.Errorf("%d polls, want 3: the 404 ends the loop", up.Count())
	}
}

// TestWatchRidesOutTransientFailures: 503s and resets between polls do not end
// the watch.
func TestWatchRidesOutTransientFailures(t *testing.T) {
	sb, client := startWatchSandbox(t, 500*time.Millisecond)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	stream, err := client.WatchPluginVersion(ctx, watchReq(sandbox.ProcessingVersionID))
	if err != nil {
		t.Fatal(err)
	}
	first, err := stream.Recv()
	if err != nil || first.GetStatus().GetPhaseRaw() != "PROCESSING" {
		t.Fatalf("first message %v, %v", first, err)
	}
	// Enough failures in a row to exhaust the client's own retries more
	// than once.
	var faults []sandbox.Fault
	for range 4 {
		faults = append(faults, sandbox.Fault{Kind: sandbox.Fault503}, sandbox.Fault{Kind: sandbox.FaultReset}, sandbox.Fault{Kind: sandbox.FaultHTML502})
	}
	sb.Inject(faults...)
	rest, err := receiveAll(t, stream)
	if err != nil || len(rest) != 1 || rest[0].GetStatus().GetPhaseRaw() != "READY" {
		t.Fatalf("after the faults: %v then %v, want READY and a normal end", phases(rest), err)
	}
}

func TestWatchValidation(t *testing.T) {
	sb, client := startWatchSandbox(t, time.Hour)
	for _, req := range []*pluginv1.WatchPluginVersionRequest{
		{PluginId: sandbox.PluginID, Id: "", Environment: sandbox.Environment},
		{PluginId: "ccp/../x", Id: sandbox.VersionID, Environment: sandbox.Environment},
		{PluginId: sandbox.PluginID, Id: sandbox.VersionID},
		{PluginId: sandbox.PluginID, Id: sandbox.VersionID, Environment: sandbox.Environment, PollInterval: durationpb.New(-time.Second)},
	} {
		stream, err := client.WatchPluginVersion(t.Context(), req)
		if err == nil {
			_, err = stream.Recv()
		}
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("%v: %v, want InvalidArgument", req, err)
		}
	}
	if n := sb.Requests(); n != 0 {
		t.Errorf("invalid watches sent %d upstream requests, want 0", n)
	}
}

func TestWatchResponseHeaders(t *testing.T) {
	_, client := startWatchSandbox(t, time.Hour)
	stream, err := client.WatchPluginVersion(t.Context(), watchReq(sandbox.VersionID))
	if err != nil {
		t.Fatal(err)
	}
	md, err := stream.Header()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := receiveAll(t, stream); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"x-request-id", "x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"} {
		if len(md.Get(k)) != 1 {
			t.Errorf("header %s = %v, want one value", k, md.Get(k))
		}
	}
}

// TestWatchSendPanics: a panic while a version is sent (here in a stream
// wrapper's SendMsg, as an interceptor's could) reaches the interceptors
// around the handler, as if the handler had panicked, although the send runs
// on a goroutine of its own: recovery answers the call INTERNAL and the
// process lives on.
func TestWatchSendPanics(t *testing.T) {
	sb := testutil.StartSandbox(t, sandbox.WithLifecycle(time.Hour))
	uc, err := upstream.New(sb.URL())
	if err != nil {
		t.Fatal(err)
	}
	var recovered any
	recovery := func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
		defer func() {
			if recovered = recover(); recovered != nil {
				err = status.Error(codes.Internal, "recovered")
			}
		}()
		return handler(srv, ss)
	}
	panicking := func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		return handler(srv, &panickingStream{ss})
	}
	client := startServiceOn(t, uc, []grpc.ServerOption{grpc.ChainStreamInterceptor(recovery, panicking)},
		fastWatch, WithDefaultCredentials(sandboxAuth))
	stream, err := client.WatchPluginVersion(t.Context(), watchReq(sandbox.VersionID))
	if err != nil {
		t.Fatal(err)
	}
	got, err := receiveAll(t, stream)
	if status.Code(err) != codes.Internal || len(got) != 0 {
		t.Fatalf("%d messages, then %v; want none, then Internal", len(got), err)
	}
	if recovered != "boom" { // the call has ended: its interceptors are done
		t.Errorf("recovered %v, want boom", recovered)
	}
}

type panickingStream struct{ grpc.ServerStream }

func (panickingStream) SendMsg(any) error { panic("boom") }

func TestPollIntervalBounds(t *testing.T) {
	w := DefaultWatchIntervals
	for asked, want := range map[time.Duration]time.Duration{
		0: 2 * time.Second, time.Millisecond: time.Second, 5 * time.Second: 5 * time.Second, time.Hour: time.Minute,
	} {
		if got := w.interval(asked); got != want {
			t.Errorf("interval(%v) = %v, want %v", asked, got, want)
		}
	}
}

// TestWatcherMailbox: a token in ready always comes with an event, however
// puts and takes interleave; and the latest event wins.
func TestWatcherMailbox(t *testing.T) {
	w := &watcher{ready: make(chan struct{}, 1)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 20000 {
			w.put(&watchEvent{polls: i})
		}
	}()
	last := -1
	for {
		select {
		case <-w.ready:
		case <-done:
			if ev := w.take(); ev != nil {
				last = ev.polls
			}
			if last != 19999 {
				t.Errorf("the last event taken is %d, want the last put, 19999", last)
			}
			return
		}
		ev := w.take()
		if ev == nil {
			t.Fatal("woken with no event waiting")
		}
		if ev.polls < last {
			t.Fatalf("event %d after %d: an older event came back", ev.polls, last)
		}
		last = ev.polls
	}
}

// waitForNoPollLoop waits until no poll loop's goroutine is left: once none
// runs, nothing polls the upstream any more.
func waitForNoPollLoop(t *testing.T) {
	t.Helper()
	buf := make([]byte, 1<<20)
	for deadline := time.Now().Add(5 * time.Second); ; runtime.Gosched() {
		if !strings.Contains(string(buf[:runtime.Stack(buf, true)]), "service.(*Service).poll(") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("a poll loop still runs 5s after its last watcher left")
		}
	}
}

// TestWatchSeesPastTheCache is issue 15's defect 1: with the cache on, a
// version a unary read cached as PROCESSING still reaches READY in a watch,
// whose polls ask the upstream.
func TestWatchSeesPastTheCache(t *testing.T) {
	sb := testutil.StartSandbox(t, sandbox.WithLifecycle(300*time.Millisecond))
	uc, err := upstream.New(sb.URL(), upstream.WithCache(time.Minute, 16))
	if err != nil {
		t.Fatal(err)
	}
	client := startServiceOf(t, uc, fastWatch, WithDefaultCredentials(sandboxAuth))
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	get := &pluginv1.GetPluginVersionRequest{PluginId: sandbox.PluginID, Id: sandbox.ProcessingVersionID, Environment: sandbox.Environment}
	if v, err := client.GetPluginVersion(ctx, get); err != nil || v.GetStatus().GetPhaseRaw() != "PROCESSING" {
		t.Fatalf("unary read: %v, %v; want PROCESSING, cached", v.GetStatus().GetPhaseRaw(), err)
	}
	stream, err := client.WatchPluginVersion(ctx, watchReq(sandbox.ProcessingVersionID))
	if err != nil {
		t.Fatal(err)
	}
	got, err := receiveAll(t, stream)
	if p := phases(got); err != nil || len(p) == 0 || p[len(p)-1] != "READY" {
		t.Fatalf("the watch sent %v and ended with %v, want it to end READY", p, err)
	}
	// The watch's fresh answers refreshed the cache for unary reads too.
	if v, err := client.GetPluginVersion(ctx, get); err != nil || v.GetStatus().GetPhaseRaw() != "READY" {
		t.Errorf("unary read after the watch: %v, %v; want READY", v.GetStatus().GetPhaseRaw(), err)
	}
}
