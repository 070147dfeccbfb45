// Package upstream is a client for the two Confluent Cloud REST endpoints the
// facade fronts. It knows HTTP, the upstream's URLs, headers and JSON, and
// nothing of gRPC: resources come back as plain Go values, failures as *Error
// (a non-2xx answer), *DecodeError (a 2xx answer that is not the resource), a
// *TransportError (no answer at all) or a *ThrottledError (the rate-limit guard
// answered); IsTemporary and RetryHint say whether and when to try again.
package upstream

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/acme/plugin-facade/internal/settings"
)

// DefaultBaseURL is the Confluent Cloud API.
const DefaultBaseURL = "https://api.confluent.cloud"

// defaultUserAgent is sent when no WithUserAgent option is given.
const defaultUserAgent = "plugin-facade"

// DefaultMaxBodyBytes is the default cap on a response body. Both resources
// are a few kilobytes; anything near this size is not an answer we can use,
// and reading it unbounded would let a misbehaving upstream exhaust our memory.
const DefaultMaxBodyBytes = 1 << 20

// Client reads custom connector plugins and plugin versions from Confluent Cloud.
// It is safe for concurrent use; create one per process so that all calls share
// one pool of connections and one view of each credential's rate limit.
type Client struct {
	base *url.URL
	// transport sends each attempt's one request. The client calls it
	// directly, not through an http.Client: a redirect is not an answer this
	// API gives (following one would also drop the Authorization header on a
	// change of host and turn into a puzzling 401), so the 3xx is reported
	// as it is, and there is no redirect to copy the request's headers for.
	transport http.RoundTripper
	userAgent string
	hooks     Hooks
	retry     RetryPolicy
	guard     *guard // nil when the rate-limit guard is off
	maxBody   int64
	jitter    func(n int64) int64 // a random number in [0, n)
	flights   flights
	cache     *answerCache // nil when caching is off
	drift     *drift
}

// Routes name the two upstream endpoints in Hooks, metrics and logs: the path
// templates of the API pages, never a path with real identifiers in it.
const (
	RoutePluginVersion   = "/ccpm/v1/plugins/{plugin_id}/versions/{id}"
	RouteConnectorPlugin = "/connect/v1/custom-connector-plugins/{id}"
)

// Meta is what the upstream said about a call besides the resource: on success
// and on failure alike, so that callers can pass the request id and the
// rate-limit window on.
type Meta struct {
	// StatusCode is the HTTP status of the last answer; 0 when no exchange got
	// an answer.
	StatusCode int
	// RequestID is the upstream's X-Request-Id of the last answer.
	RequestID string
	// RateLimit is the window the last answer described.
	RateLimit RateLimit
	// RetryAfter is the Retry-After of the last answer; zero when absent.
	RetryAfter time.Duration
	// Attempts is how many HTTP exchanges the call sent itself (0 when it was
	// answered without reaching the upstream: by the rate-limit guard, or the
	// cache).
	Attempts int
	// Shared is how many answers the call took from an exchange an identical
	// concurrent call had sent (coalescing). Attempts + Shared is how many
	// upstream answers, or connection failures, the call met.
	Shared int
	// Cached means the answer came from the cache (see WithCache); the other
	// fields then describe the answer as it was cached.
	Cached bool
	// LastError is the last non-2xx answer of the call, if any. When a call
	// ends in a transport failure or a deadline after the upstream had
	// answered with an error, it still says what the upstream said.
	LastError *Error
}

// Hooks observe the client's traffic, for metrics. Each is optional and must be
// safe for concurrent use and quick.
type Hooks struct {
	// Exchange is called after each HTTP exchange with the route (a Route*
	// constant), the HTTP status (0 when no answer arrived) and the time
	// until the body was read.
	Exchange func(route string, status int, elapsed time.Duration)
	// Retry is called before each retry of a call, with the reason: the HTTP
	// status that is retried ("503") or "connection".
	Retry func(route string, reason string)
	// RateLimit is called with each rate-limit window an answer describes.
	RateLimit func(route string, rl RateLimit)
	// UnknownField is called for each field of a resource the upstream sent
	// that this version does not know (a dotted path such as
	// "spec.new_field"), each time an answer from the upstream (not the
	// cache) holds it.
	UnknownField func(route, field string)
	// Cache is called each time the cache is asked for a call's answer,
	// with whether it had one.
	Cache func(route string, hit bool)
	// Call is called once per call, when it ends, with its Meta and error:
	// Meta.Shared > 0 when it joined an identical call's exchange
	// (coalescing); a *ThrottledError when the rate-limit guard refused it.
	Call func(route string, meta Meta, err error)
}

// Option configures a Client. Options apply to a private configuration, from
// which New builds the client once every option has applied; New fills in
// the defaults of what no option set, and refuses what is invalid.
type Option func(*config)

// config is what the options set.
type config struct {
	userAgent  string
	hooks      Hooks
	wrap       func(http.RoundTripper) http.RoundTripper
	retry      RetryPolicy
	guardOff   bool
	guardStore GuardStore
	cacheTTL   time.Duration
	cacheSize  int
	cacheStore CacheStore
	maxBody    int64
	insecure   bool
	log        *slog.Logger
}

// WithUserAgent sets the User-Agent header, which should name this service and
// its version (for example "plugin-facade/1.2.0") so that the upstream's operators
// can tell our traffic apart.
func WithUserAgent(ua string) Option {
	return func(c *config) { c.userAgent = ua }
}

// WithHooks sets hooks that observe the client's traffic.
func WithHooks(h Hooks) Option {
	return func(c *config) { c.hooks = h }
}

// WithTransport wraps the client's pooled transport, for instrumentation such
// as otelhttp.NewTransport. The wrapper must send each request it is given
// through the transport it wraps.
func WithTransport(wrap func(http.RoundTripper) http.RoundTripper) Option {
	return func(c *config) { c.wrap = wrap }
}

// WithRetry sets the retry policy; see RetryPolicy for the defaults of its
// zero fields.
func WithRetry(p RetryPolicy) Option {
	return func(c *config) { c.retry = p }
}

// WithRateLimitGuard turns the rate-limit guard on (the default) or off. While
// the upstream has said that a credential's rate-limit window is exhausted,
// the guard answers calls with that credential at once with a *ThrottledError
// instead of spending an upstream request that would get a 429.
func WithRateLimitGuard(on bool) Option {
	return func(c *config) { c.guardOff = !on }
}

// WithCache keeps successful answers for ttl, at most size of them in this
// process (least recently used first out), and answers identical calls with
// the same credential from them without calling the upstream. Entries are
// keyed by a hash of the credential and the exact request, so one credential
// never sees what another was answered. A cached answer may be up to ttl
// stale: a plugin version still PROCESSING upstream can read as such for that
// long (a Fresh read never is). A ttl of zero (the default) turns caching off.
func WithCache(ttl time.Duration, size int) Option {
	return func(c *config) { c.cacheTTL, c.cacheSize = ttl, size }
}

// WithCacheStore shares the cache's answers through store (for a fleet of
// replicas to share them): the client still keeps, within WithCache's size,
// the entries it reads and writes. It has no effect without a WithCache ttl.
func WithCacheStore(store CacheStore) Option {
	return func(c *config) { c.cacheStore = store }
}

// WithGuardStore keeps the rate-limit guard's windows in store instead of
// this process's memory (for a fleet of replicas to learn from one 429).
func WithGuardStore(store GuardStore) Option {
	return func(c *config) { c.guardStore = store }
}

// WithMaxBodyBytes caps how much of a response body is read (default
// DefaultMaxBodyBytes). A larger body is not read further; it is an error.
func WithMaxBodyBytes(n int64) Option {
	return func(c *config) { c.maxBody = n }
}

// WithInsecure allows a plain-HTTP base URL whose host is not loopback. Without
// it New refuses one, since the credentials would cross the network in clear.
func WithInsecure(allow bool) Option {
	return func(c *config) { c.insecure = allow }
}

// WithLogger sets where the client logs what no caller is told: the first
// time the upstream sends a field this version does not know. The default
// discards it.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) { c.log = l }
}

// newConfig applies opts and fills in the defaults of what they left zero.
func newConfig(opts []Option) (config, error) {
	var c config
	for _, opt := range opts {
		opt(&c)
	}
	c.userAgent = cmp.Or(c.userAgent, defaultUserAgent)
	c.maxBody = cmp.Or(c.maxBody, DefaultMaxBodyBytes)
	c.retry = settings.OrDefaults(c.retry, DefaultRetryPolicy)
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	return c, c.validate()
}

// validate refuses what no default can mend.
func (c config) validate() error {
	var errs []error
	if c.maxBody < 0 {
		errs = append(errs, fmt.Errorf("upstream: the body cap (%d bytes) must be positive", c.maxBody))
	}
	if c.cacheTTL < 0 || c.cacheTTL > 0 && c.cacheSize < 1 {
		errs = append(errs, fmt.Errorf("upstream: a cache needs a positive ttl (%v) and size (%d)", c.cacheTTL, c.cacheSize))
	}
	return errors.Join(append(errs, c.retry.validate())...)
}

// New returns a client for the API at baseURL (see ParseBaseURL), such as
// DefaultBaseURL or the URL of a sandbox.
func New(baseURL string, opts ...Option) (*Client, error) {
	cfg, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	u, err := ParseBaseURL(baseURL, cfg.insecure)
	if err != nil {
		return nil, err
	}
	c := &Client{
		base:      u,
		transport: newTransport(),
		userAgent: cfg.userAgent,
		hooks:     cfg.hooks,
		retry:     cfg.retry,
		maxBody:   cfg.maxBody,
		jitter:    rand.Int64N,
		drift:     &drift{hook: cfg.hooks.UnknownField, log: cfg.log, seen: map[string]bool{}},
	}
	if !cfg.guardOff {
		store := cfg.guardStore
		if store == nil {
			store = newMemoryGuardStore(time.Now)
		}
		c.guard = &guard{store: store, now: time.Now}
	}
	if cfg.cacheTTL > 0 {
		if c.cache, err = newAnswerCache(cfg.cacheTTL, cfg.cacheSize, cfg.cacheStore, time.Now); err != nil {
			return nil, err
		}
	}
	if cfg.wrap != nil {
		c.transport = cfg.wrap(c.transport)
	}
	return c, nil
}

// Host is the upstream's host name, without port: the domain of the errors
// it answers.
func (c *Client) Host() string { return c.base.Hostname() }

// Close closes the idle connections of the client's pool. Calls in flight are
// not affected; the client stays usable.
func (c *Client) Close() {
	if t, ok := c.transport.(interface{ CloseIdleConnections() }); ok {
		t.CloseIdleConnections()
	}
}

// ParseBaseURL checks an upstream base URL: absolute http(s), without
// credentials, query or fragment, and https unless its host is loopback or
// allowInsecure is set. Its errors never show a password the URL held.
func ParseBaseURL(baseURL string, allowInsecure bool) (*url.URL, error) {
	u, err := url.Parse(baseURL)
	if err != nil {
		// url.Error repeats the input, which may hold credentials.
		return nil, errors.New("upstream URL: not a valid URL")
	}
	// What errors show: without user info, since a key can stand there as the
	// user name as well as a secret as the password.
	shown := *u
	shown.User = nil
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("upstream URL %q: scheme must be http or https", shown.String())
	case u.Host == "":
		return nil, fmt.Errorf("upstream URL %q: host is missing", shown.String())
	case u.User != nil:
		// Credentials belong in CONFLUENT_CLOUD_API_KEY/SECRET, never in a URL
		// that ends up in logs and error messages.
		return nil, fmt.Errorf("upstream URL %q: must not contain credentials", shown.String())
	case u.RawQuery != "" || u.Fragment != "":
		return nil, fmt.Errorf("upstream URL %q: must not have a query or fragment", shown.String())
	case u.Scheme == "http" && !allowInsecure && !IsLoopbackHost(u.Hostname()):
		return nil, fmt.Errorf("upstream URL %q: plain HTTP would send credentials in clear; use https "+
			"(plain HTTP is only accepted for a loopback host, or with the insecure option)", shown.String())
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	u.RawPath = ""
	return u, nil
}

// IsLoopbackHost reports whether host (a name or an IP address, without port)
// names this machine: "localhost" or a loopback IP address.
func IsLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// GetPluginVersion reads version id of plugin pluginID in the given environment
// (GET /ccpm/v1/plugins/{plugin_id}/versions/{id}?environment=...).
func (c *Client) GetPluginVersion(ctx context.Context, auth Authorization, pluginID, id, environment string, opts ...ReadOption) (*PluginVersion, Meta, error) {
	var v PluginVersion
	u := c.url(url.Values{"environment": {environment}}, "ccpm", "v1", "plugins", pluginID, "versions", id)
	meta, err := c.call(ctx, auth, RoutePluginVersion, u, &v, readConfigOf(opts))
	if err != nil {
		return nil, meta, err
	}
	return &v, meta, nil
}

// GetConnectorPlugin reads custom connector plugin id
// (GET /connect/v1/custom-connector-plugins/{id}).
func (c *Client) GetConnectorPlugin(ctx context.Context, auth Authorization, id string, opts ...ReadOption) (*ConnectorPlugin, Meta, error) {
	var p ConnectorPlugin
	u := c.url(nil, "connect", "v1", "custom-connector-plugins", id)
	meta, err := c.call(ctx, auth, RouteConnectorPlugin, u, &p, readConfigOf(opts))
	if err != nil {
		return nil, meta, err
	}
	return &p, meta, nil
}

// answer is one HTTP response of the upstream, read whole (up to the body cap).
type answer struct {
	status int
	header http.Header
	body   []byte
	// tooLarge means the body exceeded the cap; body is then empty and the
	// rest of it was never read.
	tooLarge bool
	// cached means the answer came from the cache, not from an exchange of
	// this call's.
	cached bool
	// notResource says why a 2xx answer is not the resource (checkAnswer);
	// typed is, for one that is, its fields, decoded once, on first use.
	// Copies of the answer (cache hits) share typed.
	notResource error
	typed       *typedResource
}

// ok reports whether a is a success (2xx).
func (a *answer) ok() bool { return a.status >= 200 && a.status <= 299 }

// exchange sends one GET of u with auth and reads the answer. Its error is a
// *TransportError: no answer, or an answer whose body could not be read.
func (c *Client) exchange(ctx context.Context, r *request) (*answer, error) {
	route, u := r.route, r.url
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("upstream: %w", err)
	}
	req.Header = http.Header{ // canonical keys, in one map of the right size
		"Accept":        {"application/json"},
		"User-Agent":    {c.userAgent},
		"Authorization": {r.auth.headerValue()},
	}

	start := time.Now()
	transportErr := func(err error) error {
		c.observe(route, 0, start)
		return &TransportError{Method: req.Method, Path: u.EscapedPath(), Err: unwrapURLError(err), ContextErr: ctx.Err()}
	}
	resp, err := c.transport.RoundTrip(req)
	if err != nil {
		return nil, transportErr(err)
	}
	// Closing a body that was not read to its end discards the connection:
	// what is left of an oversized body is never read.
	defer resp.Body.Close()
	a := &answer{status: resp.StatusCode, header: resp.Header}
	if resp.ContentLength > c.maxBody {
		a.tooLarge = true
	} else {
		body, err := readBody(resp.Body, resp.ContentLength, c.maxBody)
		if err != nil {
			return nil, transportErr(err)
		}
		if int64(len(body)) > c.maxBody {
			a.tooLarge = true
		} else {
			a.body = body
		}
	}
	c.observe(route, resp.StatusCode, start)
	return a, nil
}

// readBody reads r whole, but no more than limit+1 bytes, so that the caller
// can tell a body over limit. When the length is known (Content-Length, at
// most limit here) it reads into one buffer of that size (plus the byte that
// sees the end), where io.ReadAll would start at 512 bytes and grow by copying.
func readBody(r io.Reader, length, limit int64) ([]byte, error) {
	size := int64(512)
	if length >= 0 {
		size = length + 1
	}
	buf := make([]byte, 0, min(size, limit+1))
	r = io.LimitReader(r, limit+1)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)] // grow, as io.ReadAll does
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if errors.Is(err, io.EOF) {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// typedResource is the resource of an answer decoded into its type.
type typedResource struct {
	once sync.Once
	res  resource
	err  error
}

// isResource reports whether a is a 2xx answer that checkAnswer found to be
// the resource.
func (a *answer) isResource() bool { return a.typed != nil }

// resource decodes the fields of a, a resource of route, the first time it
// is asked, for every caller that shares a.
func (a *answer) resource(route string) (resource, error) {
	a.typed.once.Do(func() {
		out := resourceOf(route)
		if err := json.Unmarshal(a.body, out); err != nil {
			a.typed.err = a.undecodable(err)
			return
		}
		out.setRaw(a.body)
		a.typed.res = out
	})
	return a.typed.res, a.typed.err
}

func (a *answer) undecodable(err error) error {
	return &DecodeError{StatusCode: a.status, RequestID: headerText(a.header, headerRequestID), Err: err}
}

// decode gives out the resource of a 2xx answer of route, which fetch
// checked: only its JSON for a read AsSent, and its fields otherwise.
func (c *Client) decode(a *answer, route string, out resource, rc readConfig) error {
	if a.notResource != nil {
		return a.notResource
	}
	if rc.asSent {
		out.setRaw(a.body)
		return nil
	}
	res, err := a.resource(route)
	if err != nil {
		return err
	}
	out.assign(res)
	return nil
}

// checkAnswer says in a.notResource why a 2xx answer of route is not the
// resource. It runs once per answer, before the answer is shared with other
// callers or cached. What tells a resource is the same for every caller: a
// JSON object with an id and a kind, whatever its other fields hold. A read
// of the JSON as sent (asSent: the REST face) has that checked alone, and
// never pays for the fields; any other has the fields decoded at once, which
// checks the rest too (the identity is read alone only when that decode
// fails: a field of a type this version does not expect is an error of the
// reads that need the fields, not of the REST face that passes them on).
func (c *Client) checkAnswer(route string, a *answer, asSent bool) {
	if a.tooLarge {
		a.notResource = a.undecodable(fmt.Errorf("%w (%d bytes)", ErrBodyTooLarge, c.maxBody))
		return
	}
	a.typed = &typedResource{}
	if !asSent {
		if res, err := a.resource(route); err == nil {
			if id, kind := res.identity(); id != "" && kind != "" {
				return
			}
		}
	}
	var identity struct {
		ID   string `json:"id"`
		Kind string `json:"kind"`
	}
	err := json.Unmarshal(a.body, &identity)
	// A body such as {} or null decodes without error; without its identity
	// it is not the resource (a proxy's or a login page's answer, say).
	if err == nil && (identity.ID == "" || identity.Kind == "") {
		err = errors.New("the resource has no id or kind")
	}
	if err != nil {
		a.notResource, a.typed = a.undecodable(err), nil
	}
}

// resourceOf is a new value of the resource route answers with.
func resourceOf(route string) resource {
	if route == RoutePluginVersion {
		return &PluginVersion{}
	}
	return &ConnectorPlugin{}
}

func (c *Client) observe(route string, status int, start time.Time) {
	if c.hooks.Exchange != nil {
		c.hooks.Exchange(route, status, time.Since(start))
	}
}

// url joins the base URL, the escaped segments and the query.
func (c *Client) url(query url.Values, segments ...string) *url.URL {
	u := *c.base
	var raw, plain strings.Builder
	raw.WriteString(c.base.EscapedPath())
	plain.WriteString(c.base.Path)
	for _, s := range segments {
		raw.WriteString("/" + url.PathEscape(s))
		plain.WriteString("/" + s)
	}
	u.Path, u.RawPath = plain.String(), raw.String()
	u.RawQuery = query.Encode()
	return &u
}

// unwrapURLError drops the *url.Error layer, whose message repeats the whole URL;
// TransportError says which call failed in its own words.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// TransportError means the upstream could not be reached or did not answer: the
// connection failed, was reset, or the call's context ended first.
type TransportError struct {
	Method string
	Path   string
	// Err is what failed. Note that a network timeout (a dial or DNS lookup
	// timing out) also satisfies errors.Is(Err, context.DeadlineExceeded);
	// ContextErr, not Err, tells whether the caller's context ended.
	Err error
	// ContextErr is the call's context error when the call failed: nil while
	// the context was live, context.DeadlineExceeded or context.Canceled else.
	ContextErr error
}

func (e *TransportError) Error() string {
	return fmt.Sprintf("upstream %s %s: %v", e.Method, e.Path, e.Err)
}

func (e *TransportError) Unwrap() error { return e.Err }

// DeadlineExceeded reports whether the call failed because the caller's
// deadline passed. A network-level timeout (a dial, DNS lookup or TLS handshake
// that never completes) is not that: it means the upstream is unreachable.
func (e *TransportError) DeadlineExceeded() bool {
	return errors.Is(e.ContextErr, context.DeadlineExceeded)
}

// Canceled reports whether the call failed because the caller canceled it.
func (e *TransportError) Canceled() bool {
	return errors.Is(e.ContextErr, context.Canceled)
}

// DecodeError means the upstream answered 2xx with a body that is not the
// expected resource: the upstream broke its contract.
type DecodeError struct {
	StatusCode int
	RequestID  string
	Err        error
}

func (e *DecodeError) Error() string {
	return fmt.Sprintf("upstream answered %d with a body that cannot be decoded: %v", e.StatusCode, e.Err)
}

func (e *DecodeError) Unwrap() error { return e.Err }
