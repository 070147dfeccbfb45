package caller_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	pluginv1 "github.com/acme/plugin-facade/gen/go/confluent/plugin/v1"
	"github.com/acme/plugin-facade/internal/caller"
	"github.com/acme/plugin-facade/internal/fleet"
	"github.com/acme/plugin-facade/internal/fleet/fleettest"
	"github.com/acme/plugin-facade/internal/sandbox"
	"github.com/acme/plugin-facade/internal/testutil"
	"github.com/acme/plugin-facade/internal/upstream"
)

// The flood of issue 17, bounded: the sandbox's key allows floodLimit
// requests per floodWindow; each caller's share is DefaultShare of it
// (floodShare calls per window). The flooder calls at ten times its share,
// reading distinct ids; the legitimate caller reads one plugin at half
// of its share. Both run for floodFor.
const (
	floodLimit  = 40
	floodWindow = 2 * time.Second
	floodFor    = 3 * time.Second
)

var (
	floodShare = int(caller.DefaultShare * floodLimit) // 8 calls per window
	// floodEvery paces the flooder at 10x its share; legitEvery the
	// legitimate caller at half of it.
	floodEvery = floodWindow / time.Duration(10*floodShare)
	legitEvery = floodWindow / time.Duration(floodShare/2)
)

// floodClient is one caller: a function that makes call i through one of
// the replicas.
type floodClient func(ctx context.Context, i int) error

// floodResult is what each caller saw.
type floodResult struct {
	flooderCalls, flooderServed, flooderThrottled int
	flooderOther                                  []error
	lastHint                                      time.Duration
	legitCalls, legitOK                           int
	legitErrs                                     []error
}

// flood runs the flooder and the legitimate caller at once for floodFor.
func flood(flooder, legit floodClient) floodResult {
	var r floodResult
	ctx, cancel := context.WithTimeout(context.Background(), floodFor)
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(legitEvery)
		defer t.Stop()
		for i := 0; ; i++ {
			r.legitCalls++
			if err := legit(context.Background(), i); err != nil {
				r.legitErrs = append(r.legitErrs, err)
			} else {
				r.legitOK++
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	t := time.NewTicker(floodEvery)
	defer t.Stop()
	for i := 0; ctx.Err() == nil; i++ {
		r.flooderCalls++
		err := flooder(context.Background(), i)
		st := status.Convert(err)
		switch {
		case err == nil || st.Code() == codes.NotFound: // an upstream answer
			r.flooderServed++
		case st.Code() == codes.ResourceExhausted && errorReason(st) == caller.ReasonShareExceeded:
			r.flooderThrottled++
			r.lastHint = retryHint(st)
		default:
			r.flooderOther = append(r.flooderOther, err)
		}
		select {
		case <-ctx.Done():
		case <-t.C:
		}
	}
	<-done
	return r
}

func retryHint(st *status.Status) time.Duration {
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			return ri.GetRetryDelay().AsDuration()
		}
	}
	return 0
}

// check asserts the outcome of issue 17: the legitimate caller always
// served, the flooder held to its share (replicas: how many learned the
// window on a call of their own) with a retry hint of its own, the upstream
// never refusing the key, and the flooder served again once its budget
// refills.
func (r floodResult) check(t *testing.T, replicas int, sb *sandbox.Server, upstream429 int, again func() error) {
	t.Helper()
	t.Logf("flooder: %d calls, %d served, %d RESOURCE_EXHAUSTED (last hint %s); legitimate: %d/%d OK; upstream: %d requests in %s (limit %d per %s), %d refused (429)",
		r.flooderCalls, r.flooderServed, r.flooderThrottled, r.lastHint, r.legitOK, r.legitCalls, sb.Requests(), floodFor, floodLimit, floodWindow, upstream429)
	if r.legitOK != r.legitCalls {
		t.Errorf("the legitimate caller got %d/%d OK: %v", r.legitOK, r.legitCalls, r.legitErrs)
	}
	if len(r.flooderOther) > 0 {
		t.Errorf("the flooder got other failures than its share's: %v", r.flooderOther)
	}
	// Its bucket: floodShare at once, floodShare per window after; each
	// replica serves one call before it knows the window.
	most := floodShare + int(float64(floodShare)*floodFor.Seconds()/floodWindow.Seconds()) + replicas
	if r.flooderServed > most {
		t.Errorf("the flooder was served %d calls, more than its share (%d)", r.flooderServed, most)
	}
	if r.flooderThrottled == 0 || r.lastHint <= 0 || r.lastHint > floodWindow {
		t.Errorf("the flooder got %d RESOURCE_EXHAUSTED, last retry hint %s; want some, with a hint within the window", r.flooderThrottled, r.lastHint)
	}
	if upstream429 != 0 {
		t.Errorf("the upstream refused %d requests: the key's limit was exceeded", upstream429)
	}
	// Served again once the hint has passed: the hint is the protocol's
	// own condition, bounded by one window.
	start, deadline := time.Now(), time.Now().Add(2*floodWindow)
	for {
		time.Sleep(r.lastHint)
		err := again()
		if err == nil || status.Code(err) == codes.NotFound {
			t.Logf("the flooder was served again %s after its last RESOURCE_EXHAUSTED", time.Since(start).Round(time.Millisecond))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the flooder was not served again within %s: %v", 2*floodWindow, err)
		}
		r.lastHint = max(retryHint(status.Convert(err)), 10*time.Millisecond)
	}
}

func floodSandbox(t *testing.T) *sandbox.Server {
	return testutil.StartSandbox(t, sandbox.WithRateLimit(floodLimit, floodWindow))
}

// readDistinct is the flooder's read: a distinct connector plugin each time
// (NOT_FOUND from the upstream), so that nothing but the upstream answers.
func readDistinct(ctx context.Context, c pluginv1.PluginServiceClient, i int) error {
	_, err := c.GetConnectorPlugin(ctx, &pluginv1.GetConnectorPluginRequest{Id: fmt.Sprintf("ccp-9%05d", i)})
	return err
}

func readKnown(ctx context.Context, c pluginv1.PluginServiceClient) error {
	_, err := c.GetConnectorPlugin(ctx, &pluginv1.GetConnectorPluginRequest{Id: sandbox.PluginID})
	return err
}

func TestFlood(t *testing.T) {
	t.Run("by peer address", func(t *testing.T) {
		sb := floodSandbox(t)
		f := startFacade(t, sb, nil)
		fl, lg := grpcClient(t, f.grpcAddr, "127.0.0.2", nil), grpcClient(t, f.grpcAddr, "127.0.0.3", nil)
		r := flood(func(ctx context.Context, i int) error { return readDistinct(ctx, fl, i) },
			func(ctx context.Context, _ int) error { return readKnown(ctx, lg) })
		// Over REST the flooder's empty bucket is a 429 in the Failure
		// envelope, with its own Retry-After (its bucket refills meanwhile:
		// read until it is empty again, a few reads at most).
		var resp *http.Response
		var body []byte
		for i := 0; i < 3*floodShare && (resp == nil || resp.StatusCode != http.StatusTooManyRequests); i++ {
			var err error
			if resp, err = httpClient("127.0.0.2", nil).Get(fmt.Sprintf("http://%s/connect/v1/custom-connector-plugins/ccp-8%05d", f.httpAddr, i)); err != nil {
				t.Fatal(err)
			}
			body, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" ||
			!strings.Contains(string(body), `"code":"caller_share_exhausted"`) {
			t.Errorf("REST over the share: %d, Retry-After %q, %s", resp.StatusCode, resp.Header.Get("Retry-After"), body)
		}
		r.check(t, 1, sb, f.upstream.count(429), func() error { return readDistinct(context.Background(), fl, 1e5-1) })
	})
	t.Run("by client certificate", func(t *testing.T) {
		ca := testutil.NewCA(t, "mesh")
		sb := floodSandbox(t)
		f := startFacade(t, sb, serverTLS(t, ca))
		fl, lg := grpcClient(t, f.grpcAddr, "", clientTLS(t, ca, "flooder")), grpcClient(t, f.grpcAddr, "", clientTLS(t, ca, "legit"))
		r := flood(func(ctx context.Context, i int) error { return readDistinct(ctx, fl, i) },
			func(ctx context.Context, _ int) error { return readKnown(ctx, lg) })
		r.check(t, 1, sb, f.upstream.count(429), func() error { return readDistinct(context.Background(), fl, 1e5-1) })
	})
	t.Run("by JWT", func(t *testing.T) {
		iss := testutil.NewIssuer(t)
		sb := floodSandbox(t)
		f := startFacade(t, sb, nil, caller.WithOIDC(newOIDC(t, iss)))
		c := grpcClient(t, f.grpcAddr, "", nil)
		as := func(sub string) context.Context {
			tok := iss.Token(t, testutil.Claims{Subject: sub, Audience: []string{"plugin-facade"}})
			return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+tok)
		}
		flooder, legit := as("system:serviceaccount:batch:flooder"), as("system:serviceaccount:web:reader")
		r := flood(func(_ context.Context, i int) error { return readDistinct(flooder, c, i) },
			func(context.Context, int) error { return readKnown(legit, c) })
		r.check(t, 1, sb, f.upstream.count(429), func() error { return readDistinct(flooder, c, 1e5-1) })
	})
}

// TestFloodFleet is the flood against three replicas sharing one real
// redis-server: the flooder and the legitimate caller spread their calls
// over the replicas, and the flooder is held to one share fleet-wide.
func TestFloodFleet(t *testing.T) {
	redis := fleettest.Start(t)
	sb := floodSandbox(t)
	var flooders, legits []pluginv1.PluginServiceClient
	var facades []*facade
	var fleets []*fleet.Fleet
	for range 3 {
		// A timeout that a loaded test machine keeps within: past it a replica
		// falls back to local budgets (TestFleetBudgetsFallBack), which is not
		// what this test measures.
		fl, err := fleet.Open(redis.URL(), fleet.WithTimeout(2*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = fl.Close() })
		if fl.Degraded() {
			t.Fatal("the fleet cannot reach redis-server")
		}
		f := startFacade(t, sb, nil, caller.WithSharedBudgets(fl.Budgets()))
		facades, fleets = append(facades, f), append(fleets, fl)
		flooders = append(flooders, grpcClient(t, f.grpcAddr, "127.0.0.2", nil))
		legits = append(legits, grpcClient(t, f.grpcAddr, "127.0.0.3", nil))
	}
	r := flood(func(ctx context.Context, i int) error { return readDistinct(ctx, flooders[i%3], i) },
		func(ctx context.Context, i int) error { return readKnown(ctx, legits[i%3]) })
	refused := 0
	for i, f := range facades {
		refused += f.upstream.count(429)
		if fleets[i].Degraded() {
			t.Errorf("replica %d lost Redis during the flood", i)
		}
	}
	r.check(t, 3, sb, refused, func() error { return readDistinct(context.Background(), flooders[0], 1e5-1) })
}

// TestFleetBudgetsFallBack: while Redis does not answer, each replica holds
// its callers to local budgets of the same size.
func TestFleetBudgetsFallBack(t *testing.T) {
	redis := fleettest.Start(t)
	fl, err := fleet.Open(redis.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = fl.Close() })
	f := startFacade(t, floodSandbox(t), nil, caller.WithSharedBudgets(fl.Budgets()))
	c := grpcClient(t, f.grpcAddr, "127.0.0.2", nil)
	redis.Stop()
	deadline := time.Now().Add(10 * time.Second)
	for !fl.Degraded() {
		if time.Now().After(deadline) {
			t.Fatal("the fleet did not notice that Redis stopped")
		}
		time.Sleep(10 * time.Millisecond)
	}
	served, throttled := 0, 0
	for i := range 3 * floodShare {
		err := readDistinct(context.Background(), c, i)
		switch st := status.Convert(err); {
		case err == nil || st.Code() == codes.NotFound:
			served++
		case errorReason(st) == caller.ReasonShareExceeded:
			throttled++
		default:
			t.Fatalf("call %d: %v", i, err)
		}
	}
	// A burst: the bucket's floodShare, the one call before the window was
	// known, and what refills meanwhile.
	if served > floodShare+3 || throttled == 0 {
		t.Errorf("with Redis down: %d served, %d throttled; want at most %d served", served, throttled, floodShare+3)
	}
}

// TestCachedAnswersAreFree: a caller pays for the requests its calls send
// upstream, not for the answers the cache gives.
func TestCachedAnswersAreFree(t *testing.T) {
	sb := floodSandbox(t)
	f := startFacadeWith(t, sb, nil, true, nil, []upstream.Option{upstream.WithCache(time.Minute, 100)})
	c := grpcClient(t, f.grpcAddr, "127.0.0.2", nil)
	for i := range 5 * floodShare {
		if err := readKnown(context.Background(), c); err != nil {
			t.Fatalf("read %d of a cached answer: %v", i, err)
		}
	}
	if n := sb.Requests(); n != 1 {
		t.Errorf("the upstream got %d requests, want 1", n)
	}
}
