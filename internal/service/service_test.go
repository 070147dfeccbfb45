package service

import (
	"context"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	pluginv1 "github.com/acme/plugin-facade/gen/go/confluent/plugin/v1"
	"github.com/acme/plugin-facade/internal/failure"
	"github.com/acme/plugin-facade/internal/upstream"
	"github.com/acme/plugin-facade/internal/upstream/upstreamtest"
)

// defaultKey is the service's own Cloud API key in these tests.
var defaultKey = upstream.BasicAuth("SERVICEKEY", "service-secret")

// startService runs the service on a real gRPC server (in memory, over bufconn)
// against the given upstream URL and returns a client for it. Its upstream
// client makes one exchange per call (no retries, no rate-limit guard), so
// that each upstream answer maps on its own; see startServiceOf for others.
func startService(t *testing.T, upstreamURL string, opts ...Option) pluginv1.PluginServiceClient {
	t.Helper()
	uc, err := upstream.New(upstreamURL, upstream.WithRetry(upstream.RetryPolicy{MaxAttempts: 1}), upstream.WithRateLimitGuard(false))
	if err != nil {
		t.Fatal(err)
	}
	return startServiceOf(t, uc, opts...)
}

// startServiceOf runs the service with the given upstream client.
func startServiceOf(t *testing.T, uc *upstream.Client, opts ...Option) pluginv1.PluginServiceClient {
	t.Helper()
	return startServiceOn(t, uc, nil, opts...)
}

// startServiceOn is startServiceOf on a gRPC server with serverOpts (such as
// interceptors).
func startServiceOn(t *testing.T, uc *upstream.Client, serverOpts []grpc.ServerOption, opts ...Option) pluginv1.PluginServiceClient {
	t.Helper()
	t.Cleanup(uc.Close)
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer(serverOpts...)
	pluginv1.RegisterPluginServiceServer(srv, New(uc, opts...))
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)

	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return pluginv1.NewPluginServiceClient(conn)
}

// startFake starts a scripted upstream and the service in front of it.
func startFake(t *testing.T, resp upstreamtest.Response, opts ...Option) (*upstreamtest.Server, pluginv1.PluginServiceClient) {
	t.Helper()
	up := upstreamtest.Start(t, resp)
	return up, startService(t, up.URL, opts...)
}

func readExample(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile("../upstream/testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// exampleTime is the spec's example timestamp, 2006-01-02T15:04:05-07:00.
var exampleTime = timestamppb.New(time.Date(2006, 1, 2, 22, 4, 5, 0, time.UTC))

func TestGetPluginVersionTranslatesTheSpecExample(t *testing.T) {
	_, client := startFake(t, upstreamtest.Response{Status: 200, Body: readExample(t, "plugin_version.json")}, WithDefaultCredentials(defaultKey))

	got, err := client.GetPluginVersion(t.Context(), &pluginv1.GetPluginVersionRequest{
		PluginId: "ccp-12345", Id: "ver-12345", Environment: "env-00000",
	})
	if err != nil {
		t.Fatal(err)
	}
	want := &pluginv1.CustomConnectPluginVersion{
		ApiVersion: "ccpm/v1",
		Kind:       "CustomConnectPluginVersion",
		Id:         "ver-12345",
		Metadata: &pluginv1.ObjectMeta{
			Self:         "https://api.confluent.cloud/ccpm/v1/plugins/ccp-12345/versions/ver-12345?environment=env-abc123",
			ResourceName: proto.String("crn://confluent.cloud/organization=9bb441c4-edef-46ac-8a41-c49e44a3fd9a/environment=env-abc123/custom-connect-plugin=ccp-12345/version=ver-12345"),
			CreatedAt:    exampleTime,
			UpdatedAt:    exampleTime,
			DeletedAt:    exampleTime,
		},
		Spec: &pluginv1.CustomConnectPluginVersionSpec{
			Version:                   "1.2.3",
			SensitiveConfigProperties: []string{"passwords", "keys", "tokens"},
			DocumentationLink:         proto.String("https://github.com/confluentinc/kafka-connect-datagen"),
			ContentFormat:             pluginv1.ContentFormat_CONTENT_FORMAT_ZIP,
			ContentFormatRaw:          proto.String("ZIP"),
			ConnectorClasses: []*pluginv1.ConnectorClass{{
				ClassName: "io.confluent.kafka.connect.datagen.DatagenConnector",
				Type:      pluginv1.ConnectorType_CONNECTOR_TYPE_SOURCE,
				TypeRaw:   proto.String("SOURCE"),
			}},
			UploadSource: &pluginv1.UploadSource{
				Location:    pluginv1.UploadLocation_UPLOAD_LOCATION_PRESIGNED_URL,
				LocationRaw: proto.String("PRESIGNED_URL_LOCATION"),
				UploadId:    proto.String("e53bb2e8-8de3-49fa-9fb1-4e3fd9a16b66"),
			},
			Environment: &pluginv1.EnvScopedObjectReference{
				Id:           "env-00000",
				Environment:  proto.String("env-00000"),
				Related:      "https://api.confluent.cloud/v2/environments/env-00000",
				ResourceName: "https://api.confluent.cloud/organization=9bb441c4-edef-46ac-8a41-c49e44a3fd9a/environment=env-00000",
			},
		},
		Status: &pluginv1.CustomConnectPluginVersionStatus{
			Phase:        pluginv1.VersionPhase_VERSION_PHASE_PROCESSING,
			PhaseRaw:     proto.String("PROCESSING"),
			ErrorMessage: proto.String("Version creation failed due to invalid plugin archive."),
		},
	}
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Errorf("GetPluginVersion mismatch (-want +got):\n%s", diff)
	}
}

func TestGetConnectorPluginTranslatesTheSpecExample(t *testing.T) {
	_, client := startFake(t, upstreamtest.Response{Status: 200, Body: readExample(t, "connector_plugin.json")}, WithDefaultCredentials(defaultKey))

	got, err := client.GetConnectorPlugin(t.Context(), &pluginv1.GetConnectorPluginRequest{Id: "dlz-f3a90de"})
	if err != nil {
		t.Fatal(err)
	}
	want := &pluginv1.CustomConnectorPlugin{
		ApiVersion: "connect/v1",
		Kind:       "CustomConnectorPlugin",
		Id:         "dlz-f3a90de",
		Metadata: &pluginv1.ObjectMeta{
			Self:         "https://api.confluent.cloud/connect/v1/custom-connector-plugins/ccp-12345",
			ResourceName: proto.String("crn://confluent.cloud/organization=9bb441c4-edef-46ac-8a41-c49e44a3fd9a/custom-connector-plugin=ccp-12345"),
			CreatedAt:    exampleTime,
			UpdatedAt:    exampleTime,
			DeletedAt:    exampleTime,
		},
		DisplayName:               "Datagen Source",
		ContentFormat:             pluginv1.ContentFormat_CONTENT_FORMAT_ZIP,
		ContentFormatRaw:          proto.String("ZIP"),
		Description:               proto.String("Generates mock data for development and testing."),
		DocumentationLink:         proto.String("https://github.com/confluentinc/kafka-connect-datagen"),
		ConnectorClass:            "io.confluent.kafka.connect.datagen.DatagenConnector",
		ConnectorType:             pluginv1.ConnectorType_CONNECTOR_TYPE_SOURCE,
		ConnectorTypeRaw:          proto.String("SOURCE"),
		Cloud:                     pluginv1.Cloud_CLOUD_AWS,
		CloudRaw:                  proto.String("AWS"),
		SensitiveConfigProperties: []string{"passwords", "keys", "tokens"},
		UploadSource: &pluginv1.UploadSource{
			Location:    pluginv1.UploadLocation_UPLOAD_LOCATION_PRESIGNED_URL,
			LocationRaw: proto.String("PRESIGNED_URL_LOCATION"),
			UploadId:    proto.String("e53bb2e8-8de3-49fa-9fb1-4e3fd9a16b66"),
		},
		RuntimeLanguage:    pluginv1.RuntimeLanguage_RUNTIME_LANGUAGE_JAVA,
		RuntimeLanguageRaw: proto.String("JAVA"),
	}
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Errorf("GetConnectorPlugin mismatch (-want +got):\n%s", diff)
	}
}

func TestEnumValuesTheFacadeDoesNotKnowAreCarriedRaw(t *testing.T) {
	_, client := startFake(t, upstreamtest.Response{Status: 200, Body: `{
		"api_version":"connect/v1","kind":"CustomConnectorPlugin","id":"ccp-1",
		"display_name":"Future","connector_class":"a.B",
		"content_format":"TAR","connector_type":"TRANSFORM","cloud":"ORACLE","runtime_language":"RUST",
		"upload_source":{"location":"GIT_REPOSITORY_LOCATION"}}`}, WithDefaultCredentials(defaultKey))
	got, err := client.GetConnectorPlugin(t.Context(), &pluginv1.GetConnectorPluginRequest{Id: "ccp-1"})
	if err != nil {
		t.Fatalf("an unknown enum value must not fail the call: %v", err)
	}
	want := &pluginv1.CustomConnectorPlugin{
		ApiVersion: "connect/v1", Kind: "CustomConnectorPlugin", Id: "ccp-1",
		DisplayName: "Future", ConnectorClass: "a.B",
		ContentFormatRaw:   proto.String("TAR"),
		ConnectorTypeRaw:   proto.String("TRANSFORM"),
		CloudRaw:           proto.String("ORACLE"),
		RuntimeLanguageRaw: proto.String("RUST"),
		UploadSource:       &pluginv1.UploadSource{LocationRaw: proto.String("GIT_REPOSITORY_LOCATION")},
	}
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Errorf("mismatch (-want +got):\n%s", diff)
	}
}

func TestAbsentOptionalFieldsStayAbsent(t *testing.T) {
	_, client := startFake(t, upstreamtest.Response{Status: 200, Body: `{
		"api_version":"ccpm/v1","kind":"CustomConnectPluginVersion","id":"ver-1",
		"metadata":{"self":"https://x/ver-1"},
		"spec":{"version":"0.1.0","connector_classes":[{"class_name":"a.B"}],"environment":{"id":"env-1","related":"r","resource_name":"crn"}},
		"status":{}}`}, WithDefaultCredentials(defaultKey))
	got, err := client.GetPluginVersion(t.Context(), &pluginv1.GetPluginVersionRequest{PluginId: "ccp-1", Id: "ver-1", Environment: "env-1"})
	if err != nil {
		t.Fatal(err)
	}
	want := &pluginv1.CustomConnectPluginVersion{
		ApiVersion: "ccpm/v1", Kind: "CustomConnectPluginVersion", Id: "ver-1",
		Metadata: &pluginv1.ObjectMeta{Self: "https://x/ver-1"},
		Spec: &pluginv1.CustomConnectPluginVersionSpec{
			Version:          "0.1.0",
			ConnectorClasses: []*pluginv1.ConnectorClass{{ClassName: "a.B"}},
			Environment:      &pluginv1.EnvScopedObjectReference{Id: "env-1", Related: "r", ResourceName: "crn"},
		},
		Status: &pluginv1.CustomConnectPluginVersionStatus{},
	}
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Errorf("mismatch (-want +got):\n%s", diff)
	}
	if got.GetMetadata().ResourceName != nil || got.GetSpec().DocumentationLink != nil || got.GetStatus().PhaseRaw != nil {
		t.Error("absent optional fields must have no presence")
	}
}

func TestCredentials(t *testing.T) {
	basic := "Basic Q0FMTEVSOmNhbGxlci1zZWNyZXQ=" // CALLER:caller-secret
	tests := []struct {
		name        string
		md          []string // authorization metadata values the caller sends
		opts        []Option
		wantErr     string // substring of the status message; "" means success
		wantReason  string // the ErrorInfo reason of the failure
		wantForward string // Authorization the upstream must receive
	}{
		{name: "caller's Basic is forwarded", md: []string{basic}, opts: []Option{WithDefaultCredentials(defaultKey)}, wantForward: basic},
		{name: "caller's Bearer is forwarded", md: []string{"Bearer tok.en-1"}, opts: []Option{WithDefaultCredentials(defaultKey)}, wantForward: "Bearer tok.en-1"},
		{name: "caller's credential works without a default", md: []string{"Bearer tok"}, wantForward: "Bearer tok"},
		{name: "the service key is used when the caller sends none", opts: []Option{WithDefaultCredentials(defaultKey)}, wantForward: "Basic U0VSVklDRUtFWTpzZXJ2aWNlLXNlY3JldA=="},
		{name: "neither: unauthenticated", wantErr: "no credentials", wantReason: failure.ReasonNoCredentials},
		{name: "malformed: unauthenticated", md: []string{"Token abcdef123"}, opts: []Option{WithDefaultCredentials(defaultKey)}, wantErr: "invalid authorization metadata", wantReason: failure.ReasonBadCredentials},
		{name: "two values: unauthenticated", md: []string{"Bearer tokenAAAA", "Bearer tokenBBBB"}, opts: []Option{WithDefaultCredentials(defaultKey)}, wantErr: "exactly one", wantReason: failure.ReasonBadCredentials},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, client := startFake(t, upstreamtest.Response{Status: 200, Body: readExample(t, "connector_plugin.json")}, tt.opts...)
			ctx := t.Context()
			for _, v := range tt.md {
				ctx = metadata.AppendToOutgoingContext(ctx, "authorization", v)
			}
			_, err := client.GetConnectorPlugin(ctx, &pluginv1.GetConnectorPluginRequest{Id: "ccp-12345"})
			if tt.wantErr != "" {
				assertStatus(t, err, wantStatus{code: codes.Unauthenticated, msg: msg(tt.wantErr), reason: tt.wantReason,
					domain: failure.FacadeDomain, metadata: map[string]string{failure.KeyWWWAuthenticate: failure.DefaultChallenge}})
				if n := f.Count(); n != 0 {
					t.Errorf("upstream received %d requests, want 0", n)
				}
				for _, v := range tt.md {
					if strings.Contains(err.Error(), strings.Fields(v)[1]) {
						t.Errorf("error repeats the credential: %v", err)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := f.Last(t).Header.Get("Authorization"); got != tt.wantForward {
				t.Errorf("upstream got Authorization %q, want %q", got, tt.wantForward)
			}
		})
	}
}

func TestInvalidRequestsNeverReachTheUpstream(t *testing.T) {
	long := strings.Repeat("a", 256)
	tests := []struct {
		name       string
		call       func(context.Context, pluginv1.PluginServiceClient) error
		wantFields []string
	}{
		{"version: all fields missing", func(ctx context.Context, c pluginv1.PluginServiceClient) error {
			_, err := c.GetPluginVersion(ctx, &pluginv1.GetPluginVersionRequest{})
			return err
		}, []string{"plugin_id", "id", "environment"}},
		{"version: environment missing", func(ctx context.Context, c pluginv1.PluginServiceClient) error {
			_, err := c.GetPluginVersion(ctx, &pluginv1.GetPluginVersionRequest{PluginId: "ccp-1", Id: "ver-1"})
			return err
		}, []string{"environment"}},
		{"version: slash in plugin_id", func(ctx context.Context, c pluginv1.PluginServiceClient) error {
			_, err := c.GetPluginVersion(ctx, &pluginv1.GetPluginVersionRequest{PluginId: "ccp-1/versions", Id: "ver-1", Environment: "env-1"})
			return err
		}, []string{"plugin_id"}},
		{"version: query injection in environment", func(ctx context.Context, c pluginv1.PluginServiceClient) error {
			_, err := c.GetPluginVersion(ctx, &pluginv1.GetPluginVersionRequest{PluginId: "ccp-1", Id: "ver-1", Environment: "env-1&page_size=1000"})
			return err
		}, []string{"environment"}},
		{"version: dot-dot id", func(ctx context.Context, c pluginv1.PluginServiceClient) error {
			_, err := c.GetPluginVersion(ctx, &pluginv1.GetPluginVersionRequest{PluginId: "ccp-1", Id: "..", Environment: "env-1"})
			return err
		}, []string{"id"}},
		{"version: 256 characters", func(ctx context.Context, c pluginv1.PluginServiceClient) error {
			_, err := c.GetPluginVersion(ctx, &pluginv1.GetPluginVersionRequest{PluginId: long, Id: "ver-1", Environment: "env-1"})
			return err
		}, []string{"plugin_id"}},
		{"watch: every invalid field, the poll interval too", func(ctx context.Context, c pluginv1.PluginServiceClient) error {
			stream, err := c.WatchPluginVersion(ctx, &pluginv1.WatchPluginVersionRequest{PluginId: "ccp-1", Id: "ver/1", Environment: "env-1",
				PollInterval: &durationpb.Duration{Seconds: -1}})
			if err != nil {
				return err
			}
			_, err = stream.Recv()
			return err
		}, []string{"id", "poll_interval"}},
		{"plugin: missing id", func(ctx context.Context, c pluginv1.PluginServiceClient) error {
			_, err := c.GetConnectorPlugin(ctx, &pluginv1.GetConnectorPluginRequest{})
			return err
		}, []string{"id"}},
		{"plugin: encoded slash", func(ctx context.Context, c pluginv1.PluginServiceClient) error {
			_, err := c.GetConnectorPlugin(ctx, &pluginv1.GetConnectorPluginRequest{Id: "ccp-1%2F..%2F"})
			return err
		}, []string{"id"}},
		{"plugin: fragment", func(ctx context.Context, c pluginv1.PluginServiceClient) error {
			_, err := c.GetConnectorPlugin(ctx, &pluginv1.GetConnectorPluginRequest{Id: "ccp-1#x"})
			return err
		}, []string{"id"}},
		{"plugin: whitespace and control characters", func(ctx context.Context, c pluginv1.PluginServiceClient) error {
			_, err := c.GetConnectorPlugin(ctx, &pluginv1.GetConnectorPluginRequest{Id: "ccp 1\n"})
			return err
		}, []string{"id"}},
		{"plugin: non-ASCII", func(ctx context.Context, c pluginv1.PluginServiceClient) error {
			_, err := c.GetConnectorPlugin(ctx, &pluginv1.GetConnectorPluginRequest{Id: "ccp-é"})
			return err
		}, []string{"id"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, client := startFake(t, upstreamtest.Response{Status: 200, Body: `{"id":"x","kind":"K"}`}, WithDefaultCredentials(defaultKey))
			err := tt.call(t.Context(), client)
			assertStatus(t, err, wantStatus{code: codes.InvalidArgument, msg: msg("invalid request"), badRequestFields: tt.wantFields,
				reason: failure.ReasonInvalidArgument, domain: failure.FacadeDomain})
			if n := f.Count(); n != 0 {
				t.Errorf("upstream received %d requests, want 0", n)
			}
		})
	}
}

func TestValidIdentifiersAreAccepted(t *testing.T) {
	_, client := startFake(t, upstreamtest.Response{Status: 200, Body: `{"id":"x","kind":"K"}`}, WithDefaultCredentials(defaultKey))
	for _, id := range []string{"ccp-12345", "a", "A_b.c~d-e", strings.Repeat("x", 255), "..."} {
		if _, err := client.GetConnectorPlugin(t.Context(), &pluginv1.GetConnectorPluginRequest{Id: id}); err != nil {
			t.Errorf("id %q: %v", id, err)
		}
	}
}
