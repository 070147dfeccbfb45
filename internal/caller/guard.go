package caller

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"

	"github.com/acme/plugin-facade/internal/callinfo"
	"github.com/acme/plugin-facade/internal/upstream"
)

// Guard decides, for every call, who is calling (identify), whether the
// caller policy allows the call, and whether the caller has a share of the
// service's own key left. Its Unary and Stream interceptors are the one place
// where that happens, for gRPC calls and for the REST gateway's in-process
// calls alike. Create it with New.
type Guard struct {
	oidc    *OIDC
	proxies []netip.Prefix
	hasKey  bool // the service has a key of its own to share
	shares  *shares
	policy  atomic.Pointer[Policy] // nil: no policy, everything allowed
	log     *slog.Logger
	metrics metrics
}

// Option configures a Guard.
type Option func(*config)

type config struct {
	oidc     *OIDC
	proxies  []netip.Prefix
	share    float64
	key      upstream.Authorization
	budgets  SharedBudgets
	policy   *Policy
	log      *slog.Logger
	register prometheus.Registerer
}

// WithOIDC accepts JWTs of o's issuer and audience as caller identities.
func WithOIDC(o *OIDC) Option { return func(c *config) { c.oidc = o } }

// WithTrustedProxies names the proxies (address ranges) whose Forwarded and
// X-Forwarded-For headers say who the caller is. Without them, the peer
// address is the caller's, whatever the headers say.
func WithTrustedProxies(p []netip.Prefix) Option { return func(c *config) { c.proxies = p } }

// WithServiceKey is the service's own Cloud API key, whose window the fair
// share divides. Without it every call must bring its own credential, and
// nothing is shared.
func WithServiceKey(a upstream.Authorization) Option { return func(c *config) { c.key = a } }

// WithShare sets the part of the key's window one caller may spend (0 < f ≤
// 1; 1 turns the fair share off). The default is DefaultShare.
func WithShare(f float64) Option { return func(c *config) { c.share = f } }

// WithSharedBudgets keeps the callers' budgets fleet-wide in b.
func WithSharedBudgets(b SharedBudgets) Option { return func(c *config) { c.budgets = b } }

// WithPolicy starts with policy p (Guard.SetPolicy replaces it). Without one,
// every caller may make every call, within its fair share.
func WithPolicy(p *Policy) Option { return func(c *config) { c.policy = p } }

// WithLogger sets where denials and policy reloads are logged. The default
// discards them.
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.log = l } }

// WithRegisterer registers the Guard's metrics with r.
func WithRegisterer(r prometheus.Registerer) Option { return func(c *config) { c.register = r } }

// ErrBadShare is returned by New for a share outside (0, 1].
var ErrBadShare = errors.New("the caller share must be more than 0 and at most 1")

// New builds a Guard.
func New(opts ...Option) (*Guard, error) {
	var c config
	for _, opt := range opts {
		opt(&c)
	}
	if c.share == 0 {
		c.share = DefaultShare
	}
	if c.share < 0 || c.share > 1 {
		return nil, ErrBadShare
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(c.register)
	if err != nil {
		return nil, err
	}
	g := &Guard{oidc: c.oidc, proxies: c.proxies, hasKey: !c.key.IsZero(),
		shares: newShares(c.share, c.key, c.budgets), log: c.log, metrics: m}
	g.policy.Store(c.policy)
	m.setPolicy(c.policy)
	return g, nil
}

// Transport wraps the upstream client's transport so that the Guard learns
// the service key's window from every answer (upstream.WithTransport).
func (g *Guard) Transport(next http.RoundTripper) http.RoundTripper {
	return transport{next: next, shares: g.shares}
}

// SetPolicy replaces the policy (nil: none) for the calls that start from now
// on; calls in flight keep the decision they got.
func (g *Guard) SetPolicy(p *Policy) {
	g.policy.Store(p)
	g.metrics.setPolicy(p)
}

// Unary is the Guard's interceptor of unary calls.
func (g *Guard) Unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	c, err := g.enter(ctx)
	if err != nil {
		return nil, err
	}
	pay, err := g.admit(c, info.FullMethod, req)
	if err != nil {
		return nil, err
	}
	resp, err := handler(c.ctx, req)
	pay(callinfo.FromContext(c.ctx).Attempts())
	return resp, err
}

// Stream is the Guard's interceptor of streaming calls: it decides when the
// request (the first message) arrives.
func (g *Guard) Stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	c, err := g.enter(ss.Context())
	if err != nil {
		return err
	}
	return handler(srv, &guardedStream{ServerStream: ss, g: g, c: c, method: info.FullMethod})
}

// call is what enter learned of a call.
type call struct {
	ctx        context.Context // with the identity, and the metadata the service is to see
	id         Identity
	serviceKey bool // the call is to use the service's own key
}

// enter identifies the call and records who it is for the call log and the
// span.
func (g *Guard) enter(ctx context.Context) (call, error) {
	id, ctx, serviceKey, err := g.identify(ctx)
	if err != nil {
		g.metrics.of(otherCallers).unauthenticated.Inc()
		return call{}, err
	}
	callinfo.FromContext(ctx).SetCaller(id.Name, string(id.Source))
	if span := trace.SpanFromContext(ctx); span.IsRecording() {
		span.SetAttributes(attribute.String("caller.name", id.Name), attribute.String("caller.source", string(id.Source)))
	}
	return call{ctx: newContext(ctx, id), id: id, serviceKey: serviceKey}, nil
}

// admit applies the policy and the fair share to a call of fullMethod with
// req. A call it admits calls pay, once, with the requests it sent upstream.
func (g *Guard) admit(c call, fullMethod string, req any) (pay func(requests int), err error) {
	p := g.policy.Load()
	method := methodName(fullMethod)
	var r *rule
	label := otherCallers
	if p != nil {
		if r = p.match(c.id); r != nil {
			label = r.name
		}
		// The policy governs what the service's key reads, and the services
		// it does not open; a caller's own credential answers for itself.
		if c.serviceKey || !isPluginMethod(method) {
			if d := p.decide(r, method, req); d.reason != "" {
				g.metrics.of(label).denied.Inc()
				g.log.WarnContext(c.ctx, "call denied by the caller policy", "caller", c.id.Name,
					"caller_source", string(c.id.Source), "grpc.method", fullMethod, "reason", d.reason)
				return nil, errDenied(c.id, method, d)
			}
		}
	}
	pay = noPay
	if c.serviceKey && isPluginMethod(method) {
		var own *Rate
		if r != nil {
			own = r.rate
		}
		b, sharing, wait, ok := g.shares.admit(c.ctx, c.id.Name, own)
		if !ok {
			g.metrics.of(label).throttled.Inc()
			return nil, errOverShare(c.id, b, wait)
		}
		if sharing {
			pay = func(n int) {
				// What was sent upstream is spent, even if the caller left.
				g.shares.spend(context.WithoutCancel(c.ctx), c.id.Name, b, n)
			}
		}
	}
	g.metrics.of(label).allowed.Inc()
	return pay, nil
}

func noPay(int) {}

func isPluginMethod(method string) bool {
	return method != methodHealth && method != methodReflection && method != ""
}

// guardedStream admits its call at the first message, when the request is
// known: a denial is what the handler's first RecvMsg returns, before it can
// reach the upstream.
type guardedStream struct {
	grpc.ServerStream
	g      *Guard
	c      call
	method string

	once sync.Once
	err  error
}

func (s *guardedStream) Context() context.Context { return s.c.ctx }

func (s *guardedStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	s.once.Do(func() {
		var pay func(int)
		if pay, s.err = s.g.admit(s.c, s.method, m); s.err == nil {
			pay(1) // a watch pays one token when it opens; its polls are shared
		}
	})
	return s.err
}
