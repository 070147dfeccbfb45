package server

import (
	"sync"
	"time"
)

// sampler thins out log lines that a flood can make by the thousand per
// second (canceled calls of a rapid-reset attack, calls a limit refused): per
// key, one line per period passes, and it says how many were left out since
// the one before it. The first line of a key always passes, so a lone canceled
// call is logged as it happens.
type sampler struct {
	period time.Duration
	now    func() time.Time

	mu   sync.Mutex
	keys map[string]*sampled
}

type sampled struct {
	last    time.Time // when a line last passed
	dropped int       // lines left out since
}

// maxSampledKeys bounds the sampler's memory: keys are a method and a code,
// a few dozen at most; past this many the oldest are forgotten.
const maxSampledKeys = 256

func newSampler(period time.Duration, now func() time.Time) *sampler {
	return &sampler{period: period, now: now, keys: map[string]*sampled{}}
}

// admit reports whether a line of key passes now and, when it does, how many
// lines of key were left out before it.
func (s *sampler) admit(key string) (dropped int, ok bool) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	k := s.keys[key]
	if k == nil {
		if len(s.keys) >= maxSampledKeys {
			s.forget(now)
		}
		s.keys[key] = &sampled{last: now}
		return 0, true
	}
	if now.Sub(k.last) < s.period {
		k.dropped++
		return 0, false
	}
	dropped, k.dropped, k.last = k.dropped, 0, now
	return dropped, true
}

// forget drops the keys quiet for a period (whose count of dropped lines is
// then lost: at most one period's worth), or all of them if none is.
func (s *sampler) forget(now time.Time) {
	for key, k := range s.keys {
		if now.Sub(k.last) >= s.period {
			delete(s.keys, key)
		}
	}
	if len(s.keys) >= maxSampledKeys {
		clear(s.keys)
	}
}
