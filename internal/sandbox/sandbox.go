// Package sandbox simulates the two Confluent Cloud REST endpoints the facade
// depends on: reading a custom connect plugin version (ccpm/v1) and reading a
// custom connector plugin (connect/v1).
//
// The simulator is a real HTTP handler with seeded data, the upstream's
// authentication, error envelope, request ids and rate-limit headers. It lets a
// new user try the service without a Confluent Cloud account (the --sandbox
// mode) and gives other packages' tests a faithful upstream to talk to.
package sandbox

import (
	"fmt"
	"net/http"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Credentials the sandbox accepts. They are public on purpose: the sandbox
// guards no data and exists so that callers can exercise real authentication.
const (
	// APIKey is the Cloud API key accepted as the HTTP Basic user name.
	APIKey = "SANDBOXKEY"
	// APISecret is the secret of APIKey, accepted as the HTTP Basic password.
	APISecret = "sandbox-secret"
	// BearerToken is accepted as "Authorization: Bearer sandbox-token".
	BearerToken = "sandbox-token"
)

// Seeded identifiers. Every plugin id below is readable through
// GET /connect/v1/custom-connector-plugins/{id}; every version id is readable
// through GET /ccpm/v1/plugins/{plugin_id}/versions/{id}?environment=Environment
// with the plugin id it is listed under.
const (
	// Environment is the environment all seeded versions live in.
	Environment = "env-00000"
	// ForbiddenEnvironment exists, but the sandbox credentials may not read
	// it: every version request scoped to it is answered with 403.
	ForbiddenEnvironment = "env-forbidden"

	// PluginID is a fully populated SOURCE plugin (ZIP, AWS, JAVA).
	PluginID = "ccp-12345"
	// VersionID is a READY version of PluginID with every field populated.
	VersionID = "ver-12345"
	// DeletedVersionID is an older READY version of PluginID whose metadata
	// carries a deleted_at timestamp.
	DeletedVersionID = "ver-12344"

	// FailedPluginID is a fully populated SINK plugin (JAR, GCP, PYTHON).
	FailedPluginID = "ccp-23456"
	// FailedVersionID is a FAILED version of FailedPluginID with an
	// error_message.
	FailedVersionID = "ver-23456"

	// UnknownEnumsPluginID is a plugin whose enum-like fields carry values the
	// upstream specification does not list yet (content_format TAR,
	// connector_type TRANSFORM, cloud ORACLE, runtime_language RUST,
	// upload_source.location GIT_REPOSITORY_LOCATION).
	UnknownEnumsPluginID = "ccp-34567"
	// UnknownEnumsVersionID is a version of UnknownEnumsPluginID with
	// unlisted enum values (phase VALIDATING, content_format TAR, connector
	// class type TRANSFORM, upload_source.location GIT_REPOSITORY_LOCATION).
	UnknownEnumsVersionID = "ver-34567"

	// MinimalPluginID is a plugin carrying only the fields the specification
	// requires; every optional field, metadata included, is absent from the
	// JSON.
	MinimalPluginID = "ccp-45678"
	// MinimalVersionID is a PROCESSING version of MinimalPluginID carrying
	// only the required fields.
	MinimalVersionID = "ver-45678"
)

const (
	defaultRateLimit  = 1000
	defaultRateWindow = time.Minute
)

// config holds everything an Option can change.
type config struct {
	rateLimit    int
	rateWindow   time.Duration
	rateLimitSet bool
	now          func() time.Time
	faultRate    float64
	faultSeed    uint64
	faultKinds   []FaultKind
	synthetic    bool
	processing   time.Duration
}

// Option configures a Server built by New or Start.
type Option func(*config)

// WithRateLimit allows limit authenticated requests per fixed window across
// all clients. Use it in tests that need to provoke a 429 quickly. A limit of
// zero or less disables limiting together with the X-RateLimit-* headers; a
// non-positive window with a positive limit falls back to one minute. Without
// this option the sandbox allows 1000 requests per one-minute window.
func WithRateLimit(limit int, window time.Duration) Option {
	return func(c *config) {
		c.rateLimit = limit
		c.rateWindow = window
		c.rateLimitSet = true
	}
}

// WithClock replaces the wall clock used for rate-limit windows. Use it in
// tests to move time forward deterministically. A nil function is ignored.
func WithClock(now func() time.Time) Option {
	return func(c *config) {
		if now != nil {
			c.now = now
		}
	}
}

// Server is the simulated upstream. It is an http.Handler; Start additionally
// serves it on a loopback port. A Server is safe for concurrent use.
type Server struct {
	now     func() time.Time
	limiter *fixedWindow // nil when rate limiting is disabled
	mux     *http.ServeMux
	seeds   *seedStore
	// lifecycle moves ProcessingVersionID and FailingVersionID along.
	lifecycle *lifecycle
	requests  atomic.Int64
	faults    faultSource

	mu   sync.Mutex
	live *listening // nil unless started and not yet closed
	url  string
}

// New builds a simulator holding the seed data. It does not listen; use it as
// an http.Handler (for example with httptest.NewServer) or call Start instead.
func New(opts ...Option) *Server {
	var c config
	for _, opt := range opts {
		opt(&c)
	}
	if !c.rateLimitSet {
		c.rateLimit, c.rateWindow = defaultRateLimit, defaultRateWindow
	}
	if c.rateLimit > 0 && c.rateWindow <= 0 {
		c.rateWindow = defaultRateWindow
	}
	if c.now == nil {
		c.now = time.Now
	}

	if c.processing <= 0 {
		c.processing = defaultProcessing
	}
	s := &Server{now: c.now, seeds: newSeedStore(),
		lifecycle: &lifecycle{processing: c.processing, started: map[string]time.Time{}}}
	s.seeds.synthetic = c.synthetic
	s.faults.init(c.faultRate, c.faultSeed, c.faultKinds)
	if c.rateLimit > 0 {
		s.limiter = &fixedWindow{limit: c.rateLimit, window: c.rateWindow}
	}
	s.mux = http.NewServeMux()
	// The patterns carry no method so that a wrong method reaches onlyGET and
	// gets the upstream's JSON 405 rather than ServeMux's plain-text one.
	s.mux.Handle("/ccpm/v1/plugins/{plugin_id}/versions/{id}", onlyGET(s.getPluginVersion))
	s.mux.Handle("/connect/v1/custom-connector-plugins/{id}", onlyGET(s.getConnectorPlugin))
	s.mux.HandleFunc("/", notFound)
	return s
}

// Requests reports how many requests the server has received, whatever their
// path or outcome. Tests use it to prove that a rejected call never reached
// the upstream.
func (s *Server) Requests() int64 {
	return s.requests.Load()
}

// ServeHTTP answers one request the way the upstream would: authentication
// first, then the rate limit, then routing. A fault queued by Inject, or drawn
// under WithFaultRate, replaces or disturbs that answer.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.requests.Add(1)
	if f, ok := s.faults.next(); ok {
		s.serveFault(w, r, f)
		return
	}
	s.serve(w, r)
}

// serve answers r normally.
func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Request-Id", newUUID())

	if !authenticated(r) {
		// Unauthenticated calls do not consume the quota, but the headers
		// still describe it so that every response carries them.
		if s.limiter != nil {
			s.limiter.peek(s.now()).setHeaders(h)
		}
		h.Set("WWW-Authenticate", `Basic error="invalid_key", error_description="The API Key is invalid"`)
		writeFailure(w, http.StatusUnauthorized, apiError{
			Code:   "user_unauthenticated",
			Title:  "Authentication Required",
			Detail: "Valid authentication credentials must be provided",
		})
		return
	}

	if s.limiter != nil {
		q, ok := s.limiter.take(s.now())
		q.setHeaders(h)
		if !ok {
			h.Set("Retry-After", fmt.Sprint(q.reset))
			writeFailure(w, http.StatusTooManyRequests, apiError{
				Code:  "too_many_requests",
				Title: "Too Many Requests",
				Detail: fmt.Sprintf("The rate limit of %d requests per %s has been exceeded; retry after %d seconds.",
					q.limit, s.limiter.window, q.reset),
			})
			return
		}
	}

	// ServeMux answers unclean paths ("//", "/./", "/../") with a plain-text
	// redirect; the upstream has no such resources, so they are a JSON 404.
	if p := r.URL.EscapedPath(); cleanPath(p) != p {
		notFound(w, r)
		return
	}
	s.mux.ServeHTTP(w, r)
}

func (s *Server) getPluginVersion(w http.ResponseWriter, r *http.Request) {
	env := r.URL.Query().Get("environment")
	if env == "" {
		writeFailure(w, http.StatusBadRequest, apiError{
			Code:   "invalid_input",
			Title:  "Bad Request",
			Detail: "The query parameter 'environment' is required.",
			Source: &errorSource{Parameter: "environment"},
		})
		return
	}
	if env == ForbiddenEnvironment {
		writeFailure(w, http.StatusForbidden, apiError{
			Code:   "user_unauthorized",
			Title:  "User Access Unauthorized",
			Detail: fmt.Sprintf("The credentials are not allowed to access the 'custom-connect-plugin-version' resource in environment '%s'.", env),
		})
		return
	}
	pluginID, id := r.PathValue("plugin_id"), r.PathValue("id")
	v, ok := s.seeds.version(pluginID, id, env)
	if !ok {
		detail := fmt.Sprintf("Custom connect plugin version '%s' of plugin '%s' was not found in environment '%s'.", id, pluginID, env)
		if !s.seeds.pluginInEnvironment(pluginID, env) {
			detail = fmt.Sprintf("Custom connect plugin '%s' was not found in environment '%s'.", pluginID, env)
		}
		writeFailure(w, http.StatusNotFound, apiError{Title: "Not Found", Detail: detail})
		return
	}
	writeJSON(w, http.StatusOK, s.lifecycle.apply(v.render(baseURL(r)), s.now()))
}

func (s *Server) getConnectorPlugin(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	p, ok := s.seeds.plugin(id)
	if !ok {
		writeFailure(w, http.StatusNotFound, apiError{
			Title:  "Not Found",
			Detail: fmt.Sprintf("Custom connector plugin '%s' was not found.", id),
		})
		return
	}
	writeJSON(w, http.StatusOK, p.render(baseURL(r)))
}

// onlyGET rejects every method but GET, HEAD included: the upstream documents
// only GET for these resources.
func onlyGET(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			w.Header().Set("Allow", http.MethodGet)
			writeFailure(w, http.StatusMethodNotAllowed, apiError{
				Code:   "method_not_allowed",
				Title:  "Method Not Allowed",
				Detail: fmt.Sprintf("The method %s is not allowed on this resource; use GET.", r.Method),
			})
			return
		}
		h(w, r)
	})
}

func notFound(w http.ResponseWriter, _ *http.Request) {
	writeFailure(w, http.StatusNotFound, apiError{
		Title:  "Not Found",
		Detail: "The requested resource does not exist.",
	})
}

// baseURL is where the client reached the sandbox, so that self and related
// links in responses can be followed with the same client.
func baseURL(r *http.Request) string {
	host := r.Host
	if host == "" {
		host = "localhost" // HTTP/1.0 without Host; never the case over Start
	}
	return "http://" + host
}

// cleanPath mirrors the canonicalisation net/http.ServeMux applies before it
// redirects: path.Clean, keeping a trailing slash.
func cleanPath(p string) string {
	if p == "" {
		return "/"
	}
	if p[0] != '/' {
		p = "/" + p
	}
	np := path.Clean(p)
	if strings.HasSuffix(p, "/") && np != "/" {
		np += "/"
	}
	return np
}
