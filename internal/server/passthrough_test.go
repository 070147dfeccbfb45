package server

import (
	"bufio"
	"net/http"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pluginv1 "github.com/acme/plugin-facade/gen/go/confluent/plugin/v1"
	"github.com/acme/plugin-facade/internal/fleet"
	"github.com/acme/plugin-facade/internal/fleet/fleettest"
	"github.com/acme/plugin-facade/internal/service"
	"github.com/acme/plugin-facade/internal/upstream"
	"github.com/acme/plugin-facade/internal/upstream/upstreamtest"
)

// driftedVersion is a plugin version as a later Confluent Cloud might send it:
// a field the contract does not know ("retention", top level and in spec), an
// enum value it does not know (phase ARCHIVING), and the upstream's own
// spacing.
const driftedVersion = `{"api_version": "ccpm/v1", "kind": "CustomConnectPluginVersion", "id": "ver-1", ` +
	`"retention": {"days": 7}, "spec": {"version": "1.0.0", "signed": true}, "status": {"phase": "ARCHIVING"}}`

// TestRESTPassesTheUpstreamResourceOnUnchanged: the upstream's resource
// reaches REST callers byte for byte, fields and enum values the contract does
// not know included: directly, from the cache, from the fleet's shared cache on
// another replica, and in a watch that other replica relays from the replica
// that polls (two replicas, one real redis-server, each with a User-Agent of
// its own so that the upstream shows who asked).
func TestRESTPassesTheUpstreamResourceOnUnchanged(t *testing.T) {
	redis := fleettest.Start(t)
	up := upstreamtest.Start(t, upstreamtest.Response{Status: 200, Body: driftedVersion})
	replica := func(name string) *stack {
		fl, err := fleet.Open(redis.URL(), fleet.WithTimeout(time.Second))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = fl.Close() })
		uc, err := upstream.New(up.URL, upstream.WithUserAgent(name), upstream.WithCache(time.Minute, 16), upstream.WithCacheStore(fl.Cache()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(uc.Close)
		svc := service.New(uc, service.WithDefaultCredentials(sandboxKey), service.WithWatchRelay(fl.Watches()),
			service.WithWatchIntervals(service.WatchIntervals{Min: 10 * time.Millisecond, Default: 50 * time.Millisecond}))
		return startServer(t, svc, nil)
	}
	a, b := replica("replica-a"), replica("replica-b")
	const path = "/ccpm/v1/plugins/ccp-1/versions/ver-1"

	for _, tt := range []struct {
		name         string
		on           *stack
		wantA, wantB int // upstream requests so far
	}{
		{"directly", a, 1, 0},
		{"from the cache", a, 1, 0},
		{"from the fleet's cache, on the other replica", b, 1, 0},
	} {
		r := tt.on.get(t, path+"?environment=env-1")
		if r.status != http.StatusOK || string(r.body) != driftedVersion {
			t.Errorf("%s: %d %s\nwant 200 %s", tt.name, r.status, r.body, driftedVersion)
		}
		// /openapi.json stays true of what the upstream adds.
		if facade, _ := specs(t); facade.validate(path+"?environment=env-1", r, true) != nil {
			t.Errorf("%s: the answer is not what /openapi.json describes: %v", tt.name, facade.validate(path+"?environment=env-1", r, true))
		}
		if gotA, gotB := up.CountFrom("replica-a"), up.CountFrom("replica-b"); gotA != tt.wantA || gotB != tt.wantB {
			t.Errorf("%s: the replicas asked the upstream %d and %d times, want %d and %d", tt.name, gotA, gotB, tt.wantA, tt.wantB)
		}
	}

	// A watch on A polls (A takes the lease); one on B relays what A polled.
	firstLine := func(s *stack) string {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, s.httpURL+path+":watch?environment=env-1", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		sc := bufio.NewScanner(resp.Body)
		sc.Scan()
		return sc.Text()
	}
	want := `{"result":` + driftedVersion + `}`
	if got := firstLine(a); got != want {
		t.Errorf("the watch on the polling replica: %s\nwant %s", got, want)
	}
	if got := firstLine(b); got != want {
		t.Errorf("the watch on the relaying replica: %s\nwant %s", got, want)
	}
	if n := up.CountFrom("replica-b"); n != 0 {
		t.Errorf("the relaying replica asked the upstream %d times, want 0", n)
	}
}

// TestRESTPassesOnAFieldOfAnotherType: a resource whose field holds a value of
// a type the contract does not expect is still the resource. REST callers,
// who get the upstream's JSON as sent, get it; gRPC callers, who get the
// typed message, get the failure of an undecodable answer; in either order,
// the second from the cache.
func TestRESTPassesOnAFieldOfAnotherType(t *testing.T) {
	const body = `{"api_version": "connect/v1", "kind": "CustomConnectorPlugin", "id": "ccp-1", "display_name": {"en": "Sink"}}`
	const path = "/connect/v1/custom-connector-plugins/ccp-1"
	for _, restFirst := range []bool{true, false} {
		up := upstreamtest.Start(t, upstreamtest.Response{Status: 200, Body: body})
		uc, err := upstream.New(up.URL, upstream.WithCache(time.Minute, 16))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(uc.Close)
		s := startServer(t, service.New(uc, service.WithDefaultCredentials(sandboxKey)), nil)
		rest := func() {
			if r := s.get(t, path); r.status != http.StatusOK || string(r.body) != body {
				t.Errorf("REST (first %v): %d %s\nwant 200 %s", restFirst, r.status, r.body, body)
			}
		}
		grpcRead := func() {
			_, err := s.client.GetConnectorPlugin(t.Context(), &pluginv1.GetConnectorPluginRequest{Id: "ccp-1"})
			reason := ""
			for _, d := range status.Convert(err).Details() {
				if info, ok := d.(*errdetails.ErrorInfo); ok {
					reason = info.GetReason()
				}
			}
			if status.Code(err) != codes.Internal || reason != "UPSTREAM_RESPONSE_UNDECODABLE" {
				t.Errorf("gRPC (REST first %v): %v, want INTERNAL UPSTREAM_RESPONSE_UNDECODABLE", restFirst, err)
			}
		}
		if restFirst {
			rest()
			grpcRead()
		} else {
			grpcRead()
			rest()
		}
		if n := up.Count(); n != 1 {
			t.Errorf("REST first %v: the upstream got %d requests, want 1", restFirst, n)
		}
	}
}
