package sandbox

import (
	"crypto/tls"
	"crypto/x509"
	"testing"
)

// TestLoopbackCertIsTrustedAsItsOwnRoot: a client that adds the certificate
// to its roots verifies it for 127.0.0.1 and localhost, and the key matches.
func TestLoopbackCertIsTrustedAsItsOwnRoot(t *testing.T) {
	certPEM, keyPEM, err := LoopbackCert()
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatalf("certificate and key do not pair: %v", err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(certPEM) {
		t.Fatal("the certificate's PEM does not parse as a root")
	}
	for _, name := range []string{"127.0.0.1", "localhost"} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: name}); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: "example.com"}); err == nil {
		t.Error("verified for example.com, a name it was not made for")
	}
}
