package server

import (
	"fmt"
	"testing"
	"testing/synctest"
	"time"
)

// One line per second per key passes, and says how many were left out.
func TestSampler(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newSampler(time.Second, time.Now)
		if d, ok := s.admit("a"); !ok || d != 0 {
			t.Fatalf("first line of a: (%d, %v), want (0, true)", d, ok)
		}
		for range 999 {
			if _, ok := s.admit("a"); ok {
				t.Fatal("a second line of a within the second passed")
			}
		}
		if _, ok := s.admit("b"); !ok {
			t.Error("the first line of b was held back by a's")
		}
		time.Sleep(999 * time.Millisecond)
		if _, ok := s.admit("a"); ok {
			t.Error("a line of a passed before the second was over")
		}
		time.Sleep(time.Millisecond)
		if d, ok := s.admit("a"); !ok || d != 1000 {
			t.Errorf("a a second later: (%d, %v), want (1000, true)", d, ok)
		}
		if d, ok := s.admit("b"); !ok || d != 0 {
			t.Errorf("b a second later: (%d, %v), want (0, true)", d, ok)
		}
	})
}

// The sampler's memory is bounded whatever the keys.
func TestSamplerForgets(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newSampler(time.Second, time.Now)
		for i := range 10 * maxSampledKeys {
			if _, ok := s.admit(fmt.Sprint(i)); !ok {
				t.Fatalf("the first line of key %d was held back", i)
			}
		}
		if len(s.keys) > maxSampledKeys {
			t.Errorf("%d keys kept, want at most %d", len(s.keys), maxSampledKeys)
		}
	})
}
