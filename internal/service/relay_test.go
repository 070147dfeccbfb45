package service

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	pluginv1 "github.com/acme/plugin-facade/gen/go/confluent/plugin/v1"
	"github.com/acme/plugin-facade/internal/upstream"
)

// TestRelayedEventsRoundTrip: what a replica publishes is what the others
// tell their watchers, the response metadata included, except the polls,
// which are the receiving replica's own.
func TestRelayedEventsRoundTrip(t *testing.T) {
	meta := upstream.Meta{StatusCode: 200, RequestID: "req-1", Attempts: 2,
		RateLimit: upstream.RateLimit{Limit: 1000, Remaining: 0, Reset: 7 * time.Second}, RetryAfter: 3 * time.Second}
	failed, err := status.New(codes.NotFound, "Confluent Cloud: Not Found").WithDetails(
		&errdetails.ErrorInfo{Reason: "NOT_FOUND", Domain: "api.confluent.cloud"})
	if err != nil {
		t.Fatal(err)
	}
	phase := "PROCESSING"
	tests := []struct {
		name string
		ev   *watchEvent
	}{
		{"a version", &watchEvent{version: &pluginv1.CustomConnectPluginVersion{Id: "ver-1",
			Status: &pluginv1.CustomConnectPluginVersionStatus{PhaseRaw: &phase}}, meta: meta, polls: 5}},
		{"a final version", &watchEvent{version: &pluginv1.CustomConnectPluginVersion{Id: "ver-1"}, final: true, meta: meta}},
		{"the failure that ends the watch", &watchEvent{err: failed.Err(), final: true, meta: upstream.Meta{StatusCode: 404, RequestID: "req-2",
			RateLimit: upstream.RateLimit{Limit: -1, Remaining: -1, Reset: -1}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msg, err := encodeRelayed(tt.ev)
			if err != nil {
				t.Fatal(err)
			}
			got, err := decodeRelayed(msg, 0)
			if err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(got.version, tt.ev.version) || got.final != tt.ev.final || got.polls != 0 {
				t.Errorf("got version %v final %v polls %d; want %v %v 0", got.version, got.final, got.polls, tt.ev.version, tt.ev.final)
			}
			wantMeta := tt.ev.meta
			wantMeta.Attempts = 0
			if diff := cmp.Diff(wantMeta, got.meta); diff != "" {
				t.Errorf("meta (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(status.Convert(tt.ev.err).Proto(), status.Convert(got.err).Proto(), protocmp.Transform()); diff != "" {
				t.Errorf("status (-want +got):\n%s", diff)
			}
		})
	}
	for _, msg := range []string{"not json", `{"format":0,"final":true}`, `{"format":2,"version":""}`} {
		if _, err := decodeRelayed([]byte(msg), 0); err == nil {
			t.Errorf("%s decoded; want an error (undecodable, or of another format)", msg)
		}
	}
}
