package sandbox

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// FaultKind is a misbehaviour of a real upstream or of what stands in front of
// it (a load balancer, a proxy, a flaky network).
type FaultKind int

// The faults the sandbox can play. Every answer the sandbox writes itself
// carries an X-Request-Id; the failure envelopes follow the specification.
const (
	// FaultSlowHeaders waits Fault.Delay (or until the request's context
	// ends) before answering normally.
	FaultSlowHeaders FaultKind = iota + 1
	// FaultSlowBody sends the status, the headers (with the full
	// Content-Length) and the first half of the normal body, waits
	// Fault.Delay, then sends the rest.
	FaultSlowBody
	// FaultReset closes the connection with a TCP RST without answering.
	FaultReset
	// FaultHTML502 answers 502 with a text/html page, as a load balancer does.
	FaultHTML502
	// FaultEmpty500 answers 500 with an empty body (Content-Length: 0).
	FaultEmpty500
	// FaultMalformed200 answers 200 application/json with truncated JSON.
	FaultMalformed200
	// FaultOversized answers 200 application/json with a body of Fault.Size
	// bytes (default 4 MiB), streamed in chunks without a Content-Length. Read
	// whole, the body is a valid connector plugin with a huge description.
	FaultOversized
	// Fault429 answers 429 with a Failure envelope, Retry-After:
	// Fault.RetryAfter seconds (default 1) and X-RateLimit-Limit, -Remaining
	// (0) and -Reset (Fault.RetryAfter).
	Fault429
	// Fault429NoRetryAfter is Fault429 without Retry-After: the retry hint is
	// only in X-RateLimit-Reset.
	Fault429NoRetryAfter
	// Fault503 answers 503 with a Failure envelope, and Retry-After when
	// Fault.RetryAfter > 0.
	Fault503

	lastFaultKind = Fault503
)

var faultNames = [...]string{
	FaultSlowHeaders:     "SlowHeaders",
	FaultSlowBody:        "SlowBody",
	FaultReset:           "Reset",
	FaultHTML502:         "HTML502",
	FaultEmpty500:        "Empty500",
	FaultMalformed200:    "Malformed200",
	FaultOversized:       "Oversized",
	Fault429:             "429",
	Fault429NoRetryAfter: "429NoRetryAfter",
	Fault503:             "503",
}

// String names the kind, as in test names and reports.
func (k FaultKind) String() string {
	if k < 1 || k > lastFaultKind {
		return "FaultKind(" + strconv.Itoa(int(k)) + ")"
	}
	return faultNames[k]
}

// Fault is one misbehaviour with its parameters. Only Kind is required; the
// other fields apply to some kinds and have defaults.
type Fault struct {
	Kind       FaultKind
	Delay      time.Duration // FaultSlowHeaders, FaultSlowBody
	RetryAfter int           // seconds; Fault429, Fault429NoRetryAfter, Fault503
	Size       int           // FaultOversized; bytes
}

const (
	defaultOversize = 4 << 20
	// defaultRateDelay is the delay of slow faults drawn by WithFaultRate:
	// long enough to be noticed, short enough for a soak's deadlines.
	defaultRateDelay = 50 * time.Millisecond
)

// Inject queues faults: the next len(faults) requests that reach the sandbox
// are answered with them, in order, whatever their path or credentials; later
// requests are answered normally (or drawn from WithFaultRate). Use it in
// tests to play one misbehaviour, or a sequence such as "503, then success".
// It is safe for concurrent use; it panics on a kind that is not one of the
// Fault constants, a mistake in the calling test.
func (s *Server) Inject(faults ...Fault) {
	for _, f := range faults {
		if f.Kind < 1 || f.Kind > lastFaultKind {
			panic(fmt.Sprintf("sandbox: Inject: unknown %v", f.Kind))
		}
	}
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	s.faults.queue = append(s.faults.queue, faults...)
}

// WithFaultRate makes a fraction rate (0 to 1) of the requests that no
// injected fault answers misbehave, with a fault drawn from kinds; without
// kinds, from every kind but the slow ones. Slow faults drawn this way wait
// 50ms, 429s say Retry-After: 1, 503s send no Retry-After. The draws come from
// a PRNG seeded with seed, so one sequence of requests always meets the same
// faults; under concurrency, which request meets which fault depends on
// arrival order. Use it for soak tests.
func WithFaultRate(rate float64, seed uint64, kinds ...FaultKind) Option {
	return func(c *config) {
		c.faultRate = min(max(rate, 0), 1)
		c.faultSeed = seed
		c.faultKinds = kinds
	}
}

// faultSource hands out the fault, if any, that answers the next request.
type faultSource struct {
	mu    sync.Mutex
	queue []Fault
	rate  float64
	kinds []FaultKind
	rng   *rand.Rand
}

func (fs *faultSource) init(rate float64, seed uint64, kinds []FaultKind) {
	if rate <= 0 {
		return
	}
	if len(kinds) == 0 {
		for k := FaultReset; k <= lastFaultKind; k++ {
			kinds = append(kinds, k)
		}
	}
	fs.rate = rate
	fs.kinds = kinds
	fs.rng = rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
}

func (fs *faultSource) next() (Fault, bool) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if len(fs.queue) > 0 {
		f := fs.queue[0]
		fs.queue = fs.queue[1:]
		return f, true
	}
	if fs.rng == nil || fs.rng.Float64() >= fs.rate {
		return Fault{}, false
	}
	f := Fault{Kind: fs.kinds[fs.rng.IntN(len(fs.kinds))], Delay: defaultRateDelay}
	if f.Kind == Fault429 || f.Kind == Fault429NoRetryAfter {
		f.RetryAfter = 1
	}
	return f, true
}

// serveFault answers r with f.
func (s *Server) serveFault(w http.ResponseWriter, r *http.Request, f Fault) {
	h := w.Header()
	if f.Kind != FaultSlowHeaders && f.Kind != FaultSlowBody {
		h.Set("X-Request-Id", newUUID())
	}
	switch f.Kind {
	case FaultSlowHeaders:
		if !sleep(r, f.Delay) {
			return
		}
		s.serve(w, r)
	case FaultSlowBody:
		s.serveSlowBody(w, r, f.Delay)
	case FaultReset:
		reset(w)
	case FaultHTML502:
		h.Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusBadGateway)
		_, _ = io.WriteString(w, "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"+
			"<center><h1>502 Bad Gateway</h1></center>\r\n</body>\r\n</html>\r\n")
	case FaultEmpty500:
		h.Set("Content-Length", "0")
		w.WriteHeader(http.StatusInternalServerError)
	case FaultMalformed200:
		h.Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, `{"api_version":"connect/v1","kind":"CustomConnectorPlugin","id":"`+PluginID+`","display_name":"Trunc`)
	case FaultOversized:
		serveOversized(w, f.Size)
	case Fault429, Fault429NoRetryAfter:
		after := f.RetryAfter
		if after <= 0 {
			after = 1
		}
		limit := defaultRateLimit
		if s.limiter != nil {
			limit = s.limiter.limit
		}
		quota{limit: limit, remaining: 0, reset: after}.setHeaders(h)
		if f.Kind == Fault429 {
			h.Set("Retry-After", strconv.Itoa(after))
		}
		h.Set("Content-Type", "application/json")
		writeFailure(w, http.StatusTooManyRequests, apiError{
			Code:   "too_many_requests",
			Title:  "Too Many Requests",
			Detail: fmt.Sprintf("The rate limit has been exceeded; retry after %d seconds.", after),
		})
	case Fault503:
		if f.RetryAfter > 0 {
			h.Set("Retry-After", strconv.Itoa(f.RetryAfter))
		}
		h.Set("Content-Type", "application/json")
		writeFailure(w, http.StatusServiceUnavailable, apiError{
			Code:   "service_unavailable",
			Title:  "Service Unavailable",
			Detail: "The service is temporarily unavailable; try again later.",
		})
	}
}

// sleep waits d or until r's context ends, and reports whether the whole wait
// passed.
func sleep(r *http.Request, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
		return false
	}
}

// serveSlowBody renders the normal answer, then sends it in two halves with a
// pause between them.
func (s *Server) serveSlowBody(w http.ResponseWriter, r *http.Request, delay time.Duration) {
	rec := &recorder{header: http.Header{}}
	s.serve(rec, r)
	for k, v := range rec.header {
		w.Header()[k] = v
	}
	body := rec.body.Bytes()
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(rec.status)
	half := len(body) / 2
	_, _ = w.Write(body[:half])
	if err := http.NewResponseController(w).Flush(); err != nil {
		return
	}
	if !sleep(r, delay) {
		return
	}
	_, _ = w.Write(body[half:])
}

// recorder keeps an answer in memory.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (rec *recorder) Header() http.Header { return rec.header }

func (rec *recorder) WriteHeader(status int) {
	if rec.status == 0 {
		rec.status = status
	}
}

func (rec *recorder) Write(p []byte) (int, error) {
	rec.WriteHeader(http.StatusOK)
	return rec.body.Write(p)
}

// reset drops the connection with an RST: SO_LINGER 0, then close. Over a
// connection that cannot be hijacked (HTTP/2), aborting the handler resets
// the stream instead.
func reset(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}

// serveOversized streams a body of size bytes: a connector plugin whose
// description is padded until the whole document has that size.
func serveOversized(w http.ResponseWriter, size int) {
	if size <= 0 {
		size = defaultOversize
	}
	prefix := `{"api_version":"connect/v1","kind":"CustomConnectorPlugin","id":"` + PluginID + `","description":"`
	const suffix = `"}`
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	if size < len(prefix)+len(suffix) {
		_, _ = io.WriteString(w, strings.Repeat(" ", size))
		return
	}
	if _, err := io.WriteString(w, prefix); err != nil {
		return
	}
	chunk := bytes.Repeat([]byte("x"), 32<<10)
	for left := size - len(prefix) - len(suffix); left > 0; left -= len(chunk) {
		if _, err := w.Write(chunk[:min(left, len(chunk))]); err != nil {
			return // the client stopped reading
		}
	}
	_, _ = io.WriteString(w, suffix)
}
