package main

import (
	"context"
	"encoding/base64"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/prototext"

	pluginv1 "github.com/acme/plugin-facade/gen/go/confluent/plugin/v1"
	"github.com/acme/plugin-facade/internal/sandbox"
	"github.com/acme/plugin-facade/internal/testutil"
)

// TestNoSecretInOutput runs the server at debug level with its own Cloud API
// key in the environment, makes calls with good and bad credentials of every
// kind over gRPC and REST, and looks for each secret, plain and base64, in
// everything the process and the calls produced.
func TestNoSecretInOutput(t *testing.T) {
	sb, err := sandbox.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	basic := func(k, s string) string { return base64.StdEncoding.EncodeToString([]byte(k + ":" + s)) }
	secrets := []string{
		sandbox.APISecret, basic(sandbox.APIKey, sandbox.APISecret), // the service's own key, from the environment
		sandbox.BearerToken, "wr0ng-t0ken-s3cret", "hunter2", basic("KEY", "hunter2"), "d1gest-s3cret",
	}
	auths := []string{
		"", // the service's own key
		"Bearer " + sandbox.BearerToken,
		"Bearer wr0ng-t0ken-s3cret",
		"Basic " + basic("KEY", "hunter2"),
		"Digest d1gest-s3cret",
	}

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var stdout, stderr testutil.Buffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--upstream-url", sb.URL(), "--log-level", "debug", "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"},
			env(envAPIKey, sandbox.APIKey, envAPISecret, sandbox.APISecret), &stdout, &stderr)
	}()
	grpcAddr, httpAddr := servingAddrs(t, &stderr)
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := pluginv1.NewPluginServiceClient(conn)

	var seen strings.Builder // what callers saw: errors, details, bodies, headers
	for _, auth := range auths {
		for _, id := range []string{sandbox.PluginID, "ccp-00000"} {
			ctx := t.Context()
			if auth != "" {
				ctx = metadata.AppendToOutgoingContext(ctx, "authorization", auth)
			}
			_, err := client.GetConnectorPlugin(ctx, &pluginv1.GetConnectorPluginRequest{Id: id})
			if err != nil {
				seen.WriteString(err.Error())
				seen.WriteString(prototext.Format(status.Convert(err).Proto()))
			}

			req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+httpAddr+"/connect/v1/custom-connector-plugins/"+id, nil)
			if auth != "" {
				req.Header.Set("Authorization", auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			seen.Write(body)
			for k, v := range resp.Header {
				seen.WriteString(k + ": " + strings.Join(v, ",") + "\n")
			}
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run = %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("run did not return")
	}

	if n := strings.Count(stderr.String(), `"msg":"finished call"`); n != 2*2*len(auths) {
		t.Errorf("%d call log lines, want %d: the test did not see the calls it made", n, 2*2*len(auths))
	}
	for name, out := range map[string]string{"stdout": stdout.String(), "stderr": stderr.String(), "responses": seen.String()} {
		for _, s := range secrets {
			if strings.Contains(out, s) {
				t.Errorf("%s holds the secret %q:\n%s", name, s, out)
			}
		}
	}
}
