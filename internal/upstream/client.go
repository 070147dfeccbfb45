// Package upstream is a client for the two Confluent Cloud REST endpoints the
// facade fronts. It knows HTTP, the upstream's URLs, headers and JSON, and
// nothing of gRPC: resources come back as plain Go values, failures as *Error
// (a non-2xx answer), *DecodeError (a 2xx answer that is not the resource) or a
// *TransportError (no answer at all).
package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// DefaultBaseURL is the Confluent Cloud API.
const DefaultBaseURL = "https://api.confluent.cloud"

// defaultUserAgent is sent when no WithUserAgent option is given.
const defaultUserAgent = "plugin-facade"

// maxBodyBytes bounds how much of a response body is read. Both resources are a
// few kilobytes; anything near this size is not an answer we can use, and reading
// it unbounded would let a misbehaving upstream exhaust our memory.
const maxBodyBytes = 1 << 20

// Client reads custom connector plugins and plugin versions from Confluent Cloud.
// It is safe for concurrent use; create one per process so that all calls share
// one pool of connections.
type Client struct {
	base      *url.URL
	http      *http.Client
	userAgent string
	hooks     Hooks
	wrap      func(http.RoundTripper) http.RoundTripper
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
	// StatusCode is the HTTP status of the last exchange; 0 when no exchange
	// got an answer.
	StatusCode int
	// RequestID is the upstream's X-Request-Id of the last answer.
	RequestID string
	// RateLimit is the window the last answer described.
	RateLimit RateLimit
	// RetryAfter is the upstream's Retry-After of the last answer; zero when
	// absent.
	RetryAfter time.Duration
	// Attempts is how many HTTP exchanges the call made (0 when it was answered
	// without reaching the upstream).
	Attempts int
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
}

// WithHooks sets hooks that observe the client's traffic.
func WithHooks(h Hooks) Option {
	return func(cl *Client) { cl.hooks = h }
}

// WithTransport wraps the client's pooled transport, for instrumentation such
// as otelhttp.NewTransport. The wrapper must send each request it is given
// through the transport it wraps.
func WithTransport(wrap func(http.RoundTripper) http.RoundTripper) Option {
	return func(cl *Client) { cl.wrap = wrap }
}

// Option configures a Client.
type Option func(*Client)

// WithUserAgent sets the User-Agent header, which should name this service and
// its version (for example "plugin-facade/1.2.0") so that the upstream's operators
// can tell our traffic apart.
func WithUserAgent(ua string) Option {
	return func(cl *Client) { cl.userAgent = ua }
}

// New returns a client for the API at baseURL (see ParseBaseURL), such as
// DefaultBaseURL or the URL of a sandbox.
func New(baseURL string, opts ...Option) (*Client, error) {
	u, err := ParseBaseURL(baseURL)
	if err != nil {
		return nil, err
	}
	c := &Client{
		base: u,
		http: &http.Client{
			Transport: newTransport(),
			// A redirect is not an answer this API gives; following one would
			// also drop the Authorization header on a change of host and turn
			// into a puzzling 401. The 3xx is reported as it is.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		userAgent: defaultUserAgent,
	}
	for _, opt := range opts {
		opt(c)
	}
	if c.wrap != nil {
		c.http.Transport = c.wrap(c.http.Transport)
	}
	return c, nil
}

// ParseBaseURL checks an upstream base URL: absolute http(s), without
// credentials, query or fragment. Its errors never show a password the URL held.
func ParseBaseURL(baseURL string) (*url.URL, error) {
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
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	u.RawPath = ""
	return u, nil
}

// newTransport returns the process's pooled transport: the standard library's
// defaults, but keeping as many idle connections to the one upstream host as to
// all hosts together (the default keeps 2 per host, which under load means a new
// TLS handshake for most calls).
func newTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = t.MaxIdleConns
	return t
}

// GetPluginVersion reads version id of plugin pluginID in the given environment
// (GET /ccpm/v1/plugins/{plugin_id}/versions/{id}?environment=...).
func (c *Client) GetPluginVersion(ctx context.Context, auth Authorization, pluginID, id, environment string) (*PluginVersion, Meta, error) {
	var v PluginVersion
	q := url.Values{"environment": {environment}}
	meta, err := c.get(ctx, auth, RoutePluginVersion, &v, q, "ccpm", "v1", "plugins", pluginID, "versions", id)
	if err != nil {
		return nil, meta, err
	}
	return &v, meta, nil
}

// GetConnectorPlugin reads custom connector plugin id
// (GET /connect/v1/custom-connector-plugins/{id}).
func (c *Client) GetConnectorPlugin(ctx context.Context, auth Authorization, id string) (*ConnectorPlugin, Meta, error) {
	var p ConnectorPlugin
	meta, err := c.get(ctx, auth, RouteConnectorPlugin, &p, nil, "connect", "v1", "custom-connector-plugins", id)
	if err != nil {
		return nil, meta, err
	}
	return &p, meta, nil
}

// get sends GET base/segments...?query with auth and decodes a 2xx JSON body into
// out. Every segment is escaped on its own, so a value can never add a segment,
// a query or a fragment to the URL.
func (c *Client) get(ctx context.Context, auth Authorization, route string, out resource, query url.Values, segments ...string) (Meta, error) {
	meta := Meta{RateLimit: noRateLimit}
	if auth.IsZero() {
		return meta, errors.New("upstream: no credentials to send")
	}
	u := c.url(query, segments...)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return meta, fmt.Errorf("upstream: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.userAgent)
	req.Header.Set("Authorization", auth.headerValue())

	start := time.Now()
	meta.Attempts = 1
	resp, err := c.http.Do(req)
	if err != nil {
		c.observe(route, 0, start)
		return meta, &TransportError{Method: req.Method, Path: u.EscapedPath(), Err: unwrapURLError(err), ContextErr: ctx.Err()}
	}
	defer resp.Body.Close()
	body, readErr := io.ReadAll(io.LimitReader(resp.Body, maxBodyBytes+1))
	// Drain what is left (bounded) so the connection can go back to the pool.
	_, _ = io.CopyN(io.Discard, resp.Body, maxBodyBytes)
	c.observe(route, resp.StatusCode, start)
	meta.StatusCode = resp.StatusCode
	meta.RequestID = resp.Header.Get(headerRequestID)
	meta.RateLimit = parseRateLimit(resp.Header)
	if s, ok := parseSeconds(resp.Header.Get(headerRetryAfter)); ok {
		meta.RetryAfter = s
	}
	if c.hooks.RateLimit != nil && meta.RateLimit.Remaining >= 0 {
		c.hooks.RateLimit(route, meta.RateLimit)
	}

	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		// A failure is reported even if its body was cut short: the status code
		// and headers alone say enough.
		return meta, newError(resp, body)
	}
	if readErr != nil {
		return meta, &TransportError{Method: req.Method, Path: u.EscapedPath(), Err: readErr, ContextErr: ctx.Err()}
	}
	undecodable := func(err error) error {
		return &DecodeError{StatusCode: resp.StatusCode, RequestID: resp.Header.Get(headerRequestID), Err: err}
	}
	if len(body) > maxBodyBytes {
		return meta, undecodable(fmt.Errorf("body exceeds %d bytes", maxBodyBytes))
	}
	if err := json.Unmarshal(body, out); err != nil {
		return meta, undecodable(err)
	}
	// A body such as {} or null decodes without error; without its identity it
	// is not the resource (a proxy's or a login page's answer, say).
	if id, kind := out.identity(); id == "" || kind == "" {
		return meta, undecodable(errors.New("the resource has no id or kind"))
	}
	return meta, nil
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
