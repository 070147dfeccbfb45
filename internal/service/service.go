// Package service implements confluent.plugin.v1.PluginService on top of the
// upstream client: it validates requests, picks the credentials to send,
// translates upstream resources into the contract's messages, and returns
// every failure as a *failure.Error (package failure owns the statuses and
// their details). It knows gRPC and the contract. It makes no HTTP request
// and reads no upstream JSON (package upstream does).
package service

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/grpc"

	pluginv1 "github.com/acme/plugin-facade/gen/go/confluent/plugin/v1"
	"github.com/acme/plugin-facade/internal/callinfo"
	"github.com/acme/plugin-facade/internal/failure"
	"github.com/acme/plugin-facade/internal/passthrough"
	"github.com/acme/plugin-facade/internal/settings"
	"github.com/acme/plugin-facade/internal/upstream"
)

// Service is the PluginService implementation. Create it with New.
type Service struct {
	pluginv1.UnimplementedPluginServiceServer

	client      *upstream.Client
	defaultAuth upstream.Authorization
	timeout     time.Duration
	log         *slog.Logger

	watchIntervals WatchIntervals
	watches        watches
	relay          WatchRelay // nil: every replica polls for its own watchers
	watchObserver  WatchObserver

	ending  chan struct{} // closed by EndStreams
	endOnce sync.Once
}

// Option configures a Service. Options apply to a private configuration,
// from which New builds the service once every option has applied, filling
// in the defaults of what no option set.
type Option func(*config)

// config is what the options set.
type config struct {
	defaultAuth    upstream.Authorization
	timeout        time.Duration
	log            *slog.Logger
	watchIntervals WatchIntervals
	relay          WatchRelay
	watchObserver  WatchObserver
}

// WithDefaultCredentials sets the credential sent upstream when a caller sends no
// authorization metadata of its own: typically the service's Cloud API key. Without
// it, such callers get UNAUTHENTICATED.
func WithDefaultCredentials(a upstream.Authorization) Option {
	return func(c *config) { c.defaultAuth = a }
}

// DefaultUpstreamTimeout is the bound the server sets with WithUpstreamTimeout
// unless configured otherwise, and the bound of each poll of a watch whose
// service has none.
const DefaultUpstreamTimeout = 30 * time.Second

// WithUpstreamTimeout bounds each upstream call when the caller's own deadline is
// later or absent, so that a caller without a deadline cannot hold a request open
// for as long as the upstream takes. Zero (the default) leaves the bound to the
// caller.
func WithUpstreamTimeout(d time.Duration) Option {
	return func(c *config) { c.timeout = d }
}

// WithLogger sets where the service logs what it does not tell callers, such
// as the full network error behind an unreachable upstream. The default
// discards it.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) { c.log = l }
}

// New returns a Service that reads from client.
func New(client *upstream.Client, opts ...Option) *Service {
	var c config
	for _, opt := range opts {
		opt(&c)
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	return &Service{
		client:         client,
		defaultAuth:    c.defaultAuth,
		timeout:        c.timeout,
		log:            c.log,
		watchIntervals: settings.OrDefaults(c.watchIntervals, DefaultWatchIntervals),
		relay:          c.relay,
		watchObserver:  c.watchObserver,
		ending:         make(chan struct{}),
	}
}

// GetPluginVersion reads one version of a custom Connect plugin.
func (s *Service) GetPluginVersion(ctx context.Context, req *pluginv1.GetPluginVersionRequest) (*pluginv1.CustomConnectPluginVersion, error) {
	ctx, cancel, auth, err := s.prepare(ctx,
		field{"plugin_id", req.GetPluginId()},
		field{"id", req.GetId()},
		field{"environment", req.GetEnvironment()},
	)
	if err != nil {
		return nil, err
	}
	defer cancel()
	asSent, opts := readAsSent(ctx)
	v, meta, err := s.client.GetPluginVersion(ctx, auth, req.GetPluginId(), req.GetId(), req.GetEnvironment(), opts...)
	if err := s.answered(ctx, meta, err); err != nil {
		return nil, err
	}
	return reply(ctx, asSent, v.Raw, func() *pluginv1.CustomConnectPluginVersion { return pluginVersionToProto(v) }), nil
}

// GetConnectorPlugin reads one custom connector plugin.
func (s *Service) GetConnectorPlugin(ctx context.Context, req *pluginv1.GetConnectorPluginRequest) (*pluginv1.CustomConnectorPlugin, error) {
	ctx, cancel, auth, err := s.prepare(ctx, field{"id", req.GetId()})
	if err != nil {
		return nil, err
	}
	defer cancel()
	asSent, opts := readAsSent(ctx)
	p, meta, err := s.client.GetConnectorPlugin(ctx, auth, req.GetId(), opts...)
	if err := s.answered(ctx, meta, err); err != nil {
		return nil, err
	}
	return reply(ctx, asSent, p.Raw, func() *pluginv1.CustomConnectorPlugin { return connectorPluginToProto(p) }), nil
}

// readAsSent reports whether the call of ctx is answered with the upstream's
// JSON as sent (passthrough.Wanted: the REST face), and the read options
// that ask the client for that alone.
func readAsSent(ctx context.Context) (bool, []upstream.ReadOption) {
	if passthrough.Wanted(ctx) {
		return true, asSentRead
	}
	return false, nil
}

// asSentRead is the options of a read as sent, made once: the client only
// reads them.
var asSentRead = []upstream.ReadOption{upstream.AsSent()}

// reply is the message a read answers with, carrying raw, the upstream's
// JSON of it: the resource translated, or for a call answered with the JSON
// as sent, an empty message, which its face replaces with the JSON.
func reply[M any](ctx context.Context, asSent bool, raw []byte, translate func() *M) *M {
	var m *M
	if asSent {
		m = new(M)
	} else {
		m = translate()
	}
	passthrough.Attach(ctx, m, raw)
	return m
}

// upstreamInfo is what the call log says of the upstream side of a call.
func upstreamInfo(meta upstream.Meta) callinfo.Upstream {
	return callinfo.Upstream{Status: meta.StatusCode, RequestID: meta.RequestID,
		Attempts: meta.Attempts, Shared: meta.Shared, Cached: meta.Cached}
}

// answered does what every RPC does once the upstream call is over: it
// records the call for the log line, passes the upstream's response headers on
// as response metadata, and turns a failure into the caller's status, logging
// for the operator what the status leaves out.
func (s *Service) answered(ctx context.Context, meta upstream.Meta, err error) error {
	callinfo.FromContext(ctx).Record(upstreamInfo(meta))
	if md := responseMetadata(meta, err); md.Len() > 0 {
		// Fails only when headers were sent already, which a unary handler
		// has not done; nothing to do about it but carry on.
		_ = grpc.SetHeader(ctx, md)
	}
	if err == nil {
		return nil
	}
	return s.failure(ctx, meta, err)
}

// failure turns an upstream error into the caller's status, and logs for the
// operator what the status leaves out: the whole network error behind an
// unreachable upstream, or an answer that broke the upstream's contract.
func (s *Service) failure(ctx context.Context, meta upstream.Meta, err error) error {
	var (
		te *upstream.TransportError
		de *upstream.DecodeError
	)
	switch {
	case errors.As(err, &te) && !te.DeadlineExceeded() && !te.Canceled():
		s.log.WarnContext(ctx, "upstream unreachable", "error", err.Error(), "attempts", meta.Attempts)
	case errors.As(err, &de):
		s.log.ErrorContext(ctx, "upstream broke its contract", "error", err.Error(), "request_id", de.RequestID)
	}
	return failure.FromUpstream(err, s.client.Host(), meta)
}

// prepare does what every RPC does before calling the upstream: it validates
// the request's identifiers, picks the credential to send, and bounds the
// context: by the upstream timeout, and short of the caller's own deadline by
// a little headroom, so that when the upstream is too slow the caller hears
// this service's account of it (what the upstream said before, its request id)
// rather than only its own deadline firing. On error, nothing is left to
// cancel.
func (s *Service) prepare(ctx context.Context, fields ...field) (context.Context, context.CancelFunc, upstream.Authorization, error) {
	if vs := validate(fields...); len(vs) > 0 {
		return nil, nil, upstream.Authorization{}, failure.Invalid(vs...)
	}
	auth, err := s.credentials(ctx)
	if err != nil {
		return nil, nil, upstream.Authorization{}, err
	}
	deadline, ok := ctx.Deadline()
	if ok {
		deadline = deadline.Add(-headroom(time.Until(deadline)))
	}
	if s.timeout > 0 && (!ok || time.Now().Add(s.timeout).Before(deadline)) {
		deadline, ok = time.Now().Add(s.timeout), true
	}
	if !ok {
		ctx, cancel := context.WithCancel(ctx)
		return ctx, cancel, auth, nil
	}
	ctx, cancel := context.WithDeadline(ctx, deadline)
	return ctx, cancel, auth, nil
}

// headroom is how long before the caller's deadline the upstream call is cut:
// a tenth of the time left, at most 100ms, enough for the answer to travel.
func headroom(left time.Duration) time.Duration {
	return min(left/10, 100*time.Millisecond)
}
