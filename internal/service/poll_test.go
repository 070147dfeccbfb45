package service

import (
	"context"
	"slices"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/acme/plugin-facade/internal/upstream"
)

// The tests below run the poll loop against a scripted source in a
// testing/synctest bubble: time is fake, every wait is the loop's own, and
// synctest.Wait says when the loop is blocked waiting for its next poll.

// read is one scripted answer of a source.
type read struct {
	phase string // of the version; "" with err
	err   error
	meta  upstream.Meta
}

// scriptedSource answers read n with script[n] (the last one past its end)
// and records when each read came, as the time since the bubble began.
type scriptedSource struct {
	start  time.Time
	script []read

	mu sync.Mutex
	at []time.Duration
}

func (s *scriptedSource) read(context.Context) (*upstream.PluginVersion, upstream.Meta, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.script[min(len(s.at), len(s.script)-1)]
	s.at = append(s.at, time.Since(s.start))
	if r.err != nil {
		return nil, r.meta, r.err
	}
	phase := r.phase
	v := &upstream.PluginVersion{Kind: "CustomConnectPluginVersion", ID: "ver-1",
		Status: &upstream.PluginVersionStatus{Phase: &phase}, Raw: []byte(`{"id":"ver-1"}`)}
	return v, r.meta, nil
}

func (s *scriptedSource) reads() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.at)
}

// runLoop runs a poll loop of src for one watcher asking for interval, in
// the bubble, and returns the events the watcher got once the loop ended.
func runLoop(t *testing.T, s *Service, src source, interval time.Duration) []*watchEvent {
	t.Helper()
	w := s.watches.joinLoop(watchKey{1}, interval, func(ctx context.Context, k watchKey, l *pollLoop) {
		s.poll(ctx, k, l, src)
	})
	var got []*watchEvent
	for {
		<-w.ready
		ev := w.take()
		if ev == nil {
			continue
		}
		got = append(got, ev)
		if ev.final {
			return got
		}
	}
}

func newPollService(t *testing.T) *Service {
	t.Helper()
	uc, err := upstream.New("http://127.0.0.1:1") // never called: the source answers
	if err != nil {
		t.Fatal(err)
	}
	return New(uc, WithWatchIntervals(WatchIntervals{Min: time.Second, Cap: 8 * time.Second, MaxFailures: 3}))
}

func seconds(ds ...float64) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = time.Duration(d * float64(time.Second))
	}
	return out
}

func TestPollLoop(t *testing.T) {
	refused := &upstream.TransportError{Method: "GET", Path: "/x", Err: syscall.ECONNREFUSED}
	exhausted := upstream.Meta{RateLimit: upstream.RateLimit{Limit: 10, Remaining: 0, Reset: 20 * time.Second}}
	tests := []struct {
		name      string
		script    []read
		wantReads []time.Duration
		wantSent  []string // phases sent, then the code that ended the watch ("" for none)
	}{
		{name: "the wait doubles while nothing changes, up to the cap; each change is sent once",
			script:    []read{{phase: "PROCESSING"}, {phase: "PROCESSING"}, {phase: "PROCESSING"}, {phase: "PROCESSING"}, {phase: "PROCESSING"}, {phase: "PROCESSING"}, {phase: "READY"}},
			wantReads: seconds(0, 1, 3, 7, 15, 23, 31),
			wantSent:  []string{"PROCESSING", "READY"}},
		{name: "a change resets the wait to the caller's interval",
			script:    []read{{phase: "PROCESSING"}, {phase: "PROCESSING"}, {phase: "VALIDATING"}, {phase: "VALIDATING"}, {phase: "FAILED"}},
			wantReads: seconds(0, 1, 3, 4, 6),
			wantSent:  []string{"PROCESSING", "VALIDATING", "FAILED"}},
		{name: "transient failures wait longer, and end the watch after MaxFailures in a row",
			script:    []read{{phase: "PROCESSING"}, {err: refused}, {err: refused}, {err: refused}},
			wantReads: seconds(0, 1, 3, 7),
			wantSent:  []string{"PROCESSING", codes.Unavailable.String()}},
		{name: "a success between failures starts the count again",
			script:    []read{{err: refused}, {err: refused}, {phase: "PROCESSING"}, {err: refused}, {err: refused}, {phase: "READY"}},
			wantReads: seconds(0, 2, 6, 7, 9, 13), // without the reset, the read at 7s would have ended it
			wantSent:  []string{"PROCESSING", "READY"}},
		{name: "no poll into a rate-limit window the upstream said is exhausted",
			script:    []read{{phase: "PROCESSING", meta: exhausted}, {phase: "READY"}},
			wantReads: seconds(0, 20),
			wantSent:  []string{"PROCESSING", "READY"}},
		{name: "a permanent failure ends the watch at once",
			script:    []read{{phase: "PROCESSING"}, {err: &upstream.Error{StatusCode: 404}, meta: upstream.Meta{StatusCode: 404}}},
			wantReads: seconds(0, 1),
			wantSent:  []string{"PROCESSING", codes.NotFound.String()}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := newPollService(t)
				src := &scriptedSource{start: time.Now(), script: tt.script}
				var sent []string
				for _, ev := range runLoop(t, s, src, time.Second) {
					if ev.err != nil {
						sent = append(sent, status.Code(ev.err).String())
						continue
					}
					sent = append(sent, ev.version.GetStatus().GetPhaseRaw())
				}
				synctest.Wait() // the loop has ended: no goroutine is left
				if !slices.Equal(sent, tt.wantSent) {
					t.Errorf("sent %v, want %v", sent, tt.wantSent)
				}
				if got := src.reads(); !slices.Equal(got, tt.wantReads) {
					t.Errorf("read at %v, want %v", got, tt.wantReads)
				}
			})
		})
	}
}

// TestPollLoopStopsWhenTheLastWatcherLeaves: once its only watcher leaves,
// the loop polls no more.
func TestPollLoopStopsWhenTheLastWatcherLeaves(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newPollService(t)
		src := &scriptedSource{start: time.Now(), script: []read{{phase: "PROCESSING"}}}
		k := watchKey{2}
		w := s.watches.joinLoop(k, time.Second, func(ctx context.Context, k watchKey, l *pollLoop) { s.poll(ctx, k, l, src) })
		time.Sleep(2500 * time.Millisecond) // fake time: polls at 0 and 1s; the next is due at 3s
		synctest.Wait()
		s.watches.leave(k, w)
		time.Sleep(time.Hour)
		synctest.Wait()
		if got, want := src.reads(), seconds(0, 1); !slices.Equal(got, want) {
			t.Errorf("read at %v, want %v and none after the watcher left", got, want)
		}
	})
}
