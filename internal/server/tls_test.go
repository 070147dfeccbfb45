package server

import (
	"crypto/tls"
	"net/http"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	pluginv1 "github.com/acme/plugin-facade/gen/go/confluent/plugin/v1"
	"github.com/acme/plugin-facade/internal/sandbox"
	"github.com/acme/plugin-facade/internal/service"
	"github.com/acme/plugin-facade/internal/testutil"
	"github.com/acme/plugin-facade/internal/upstream"
)

// TestTLS serves both listeners over TLS, then mutual TLS, and checks who gets
// through over gRPC and over HTTPS (REST included: the gateway's own calls must
// not be refused).
func TestTLS(t *testing.T) {
	serverCA, clientCA := testutil.NewCA(t, "server CA"), testutil.NewCA(t, "client CA")
	serverCert, clientCert := serverCA.Issue(t, "facade"), clientCA.Issue(t, "caller")
	otherClientCert := testutil.NewCA(t, "stranger CA").Issue(t, "stranger")

	tests := []struct {
		name   string
		server *tls.Config
		client *tls.Certificate // nil: the client sends no certificate
		ok     bool
	}{
		{"TLS", &tls.Config{Certificates: []tls.Certificate{serverCert}}, nil, true},
		{"mutual TLS with a trusted client certificate", &tls.Config{Certificates: []tls.Certificate{serverCert},
			ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: clientCA.Pool}, &clientCert, true},
		{"mutual TLS without a client certificate", &tls.Config{Certificates: []tls.Certificate{serverCert},
			ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: clientCA.Pool}, nil, false},
		{"mutual TLS with an untrusted client certificate", &tls.Config{Certificates: []tls.Certificate{serverCert},
			ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: clientCA.Pool}, &otherClientCert, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sb := startSandbox(t)
			uc, err := upstream.New(sb.URL())
			if err != nil {
				t.Fatal(err)
			}
			r := serve(t, service.New(uc, service.WithDefaultCredentials(sandboxKey)), WithTLS(tt.server))
			clientTLS := &tls.Config{RootCAs: serverCA.Pool}
			if tt.client != nil {
				clientTLS.Certificates = []tls.Certificate{*tt.client}
			}

			conn, err := grpc.NewClient(r.grpcAddr, grpc.WithTransportCredentials(credentials.NewTLS(clientTLS)))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			_, err = pluginv1.NewPluginServiceClient(conn).GetConnectorPlugin(t.Context(), &pluginv1.GetConnectorPluginRequest{Id: sandbox.PluginID})
			if (err == nil) != tt.ok {
				t.Errorf("gRPC over TLS: %v, want success %v", err, tt.ok)
			}

			httpClient := &http.Client{Transport: &http.Transport{TLSClientConfig: clientTLS}, Timeout: 10 * time.Second}
			defer httpClient.CloseIdleConnections()
			resp, err := httpClient.Get("https://" + r.httpAddr + "/connect/v1/custom-connector-plugins/" + sandbox.PluginID)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					t.Errorf("REST over TLS = %s, want 200", resp.Status)
				}
			}
			if (err == nil) != tt.ok {
				t.Errorf("REST over TLS: %v, want success %v", err, tt.ok)
			}

			// Plaintext is refused on both ports.
			plain, err := grpc.NewClient(r.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				t.Fatal(err)
			}
			defer plain.Close()
			if _, err := pluginv1.NewPluginServiceClient(plain).GetConnectorPlugin(t.Context(), &pluginv1.GetConnectorPluginRequest{Id: sandbox.PluginID}); err == nil {
				t.Error("plaintext gRPC call succeeded on the TLS port")
			}
			if resp, err := http.Get("http://" + r.httpAddr + "/healthz"); err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					t.Error("plaintext HTTP got 200 on the TLS port")
				}
			}
		})
	}
}
