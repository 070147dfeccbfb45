package service

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// leaseBoard is the one lease of a watch key that the replicas of a test
// share, kept in memory with the expiry a WatchRelay gives it. A replica
// marked dead reaches it no more: its lease runs out as a crashed process's
// does in Redis.
type leaseBoard struct {
	mu     sync.Mutex
	holder string
	until  time.Time
	dead   map[string]bool
}

// replica is the board as the replica name sees it.
func (b *leaseBoard) replica(name string) WatchRelay { return boardView{b: b, name: name} }

func (b *leaseBoard) kill(name string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.dead[name] = true
}

type boardView struct {
	b    *leaseBoard
	name string
}

func (v boardView) Lead(_ context.Context, _ string, ttl time.Duration) bool {
	b := v.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.dead[v.name] {
		return false
	}
	if now := time.Now(); b.holder == v.name || !now.Before(b.until) {
		b.holder, b.until = v.name, now.Add(ttl)
		return true
	}
	return false
}

func (v boardView) Resign(context.Context, string) {
	b := v.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.dead[v.name] && b.holder == v.name {
		b.holder, b.until = "", time.Time{}
	}
}

func (boardView) Publish(context.Context, string, []byte, time.Duration) {}

func (boardView) Subscribe(context.Context, string) <-chan []byte { return nil }

// TestPollingMovesWithinTwoIntervalsOfADeath: the replica that polls a
// watched version dies (its renewals stop reaching the lease) at any point of
// its renewal cycle; another replica, which did not poll while it lived,
// polls within two poll intervals of the death. This is the bound the
// multi-replica test in cmd/server measures on real processes, here in fake
// time, where a loaded machine cannot blur it.
func TestPollingMovesWithinTwoIntervalsOfADeath(t *testing.T) {
	const interval = time.Second
	// The holder renews every half interval (at 0, 0.5s, 1s...): deaths
	// just after a renewal, midway and just before the next.
	for _, death := range []time.Duration{2*time.Second + time.Millisecond, 2250 * time.Millisecond, 2499 * time.Millisecond} {
		t.Run(fmt.Sprintf("death at %v", death), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				board := &leaseBoard{dead: map[string]bool{}}
				start := time.Now()
				k := watchKey{3}
				join := func(name string) (*Service, *watcher, *scriptedSource) {
					s := newPollService(t)
					s.relay = board.replica(name)
					src := &scriptedSource{start: start, script: []read{{phase: "PROCESSING"}}}
					w := s.watches.joinLoop(k, interval, func(ctx context.Context, k watchKey, l *pollLoop) { s.poll(ctx, k, l, src) })
					return s, w, src
				}
				a, aw, asrc := join("a")
				synctest.Wait() // a leads and has polled
				time.Sleep(100 * time.Millisecond)
				b, bw, bsrc := join("b")
				time.Sleep(death - 100*time.Millisecond)
				synctest.Wait()
				if got := bsrc.reads(); len(got) != 0 {
					t.Fatalf("b polled at %v while a led", got)
				}
				board.kill("a")
				polledBefore := len(asrc.reads())
				time.Sleep(5 * interval)
				synctest.Wait()
				got := bsrc.reads()
				if len(got) == 0 {
					t.Fatalf("b never polled after a died at %v", death)
				}
				if took := got[0] - death; took <= 0 || took > 2*interval {
					t.Errorf("b first polled %v after a died; want within two poll intervals (%v)", took, 2*interval)
				}
				if n := len(asrc.reads()); n != polledBefore {
					t.Errorf("a, dead, polled %d more times", n-polledBefore)
				}
				a.watches.leave(k, aw)
				b.watches.leave(k, bw)
				synctest.Wait()
			})
		})
	}
}
