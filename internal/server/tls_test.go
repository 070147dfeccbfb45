package server

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"net/http"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	pluginv1 "github.com/acme/plugin-facade/gen/go/confluent/plugin/v1"
	"github.com/acme/plugin-facade/internal/sandbox"
	"github.com/acme/plugin-facade/internal/service"
	"github.com/acme/plugin-facade/internal/upstream"
)

// testCA is a certificate authority made for one test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

// issue returns a leaf certificate for 127.0.0.1 usable by a server or a client.
func (ca *testCA) issue(t *testing.T, name string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestTLS serves both listeners over TLS, then mutual TLS, and checks who gets
// through over gRPC and over HTTPS (REST included: the gateway's own calls must
// not be refused).
func TestTLS(t *testing.T) {
	serverCA, clientCA := newTestCA(t, "server CA"), newTestCA(t, "client CA")
	serverCert, clientCert := serverCA.issue(t, "facade"), clientCA.issue(t, "caller")
	otherClientCert := newTestCA(t, "stranger CA").issue(t, "stranger")

	tests := []struct {
		name   string
		server *tls.Config
		client *tls.Certificate // nil: the client sends no certificate
		ok     bool
	}{
		{"TLS", &tls.Config{Certificates: []tls.Certificate{serverCert}}, nil, true},
		{"mutual TLS with a trusted client certificate", &tls.Config{Certificates: []tls.Certificate{serverCert},
			ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: clientCA.pool}, &clientCert, true},
		{"mutual TLS without a client certificate", &tls.Config{Certificates: []tls.Certificate{serverCert},
			ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: clientCA.pool}, nil, false},
		{"mutual TLS with an untrusted client certificate", &tls.Config{Certificates: []tls.Certificate{serverCert},
			ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: clientCA.pool}, &otherClientCert, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sb := startSandbox(t)
			uc, err := upstream.New(sb.URL())
			if err != nil {
				t.Fatal(err)
			}
			r := serve(t, service.New(uc, service.WithDefaultCredentials(sandboxKey)), WithTLS(tt.server))
			clientTLS := &tls.Config{RootCAs: serverCA.pool}
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
