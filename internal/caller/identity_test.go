package caller_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	pluginv1 "github.com/acme/plugin-facade/gen/go/confluent/plugin/v1"
	"github.com/acme/plugin-facade/internal/caller"
	"github.com/acme/plugin-facade/internal/sandbox"
	"github.com/acme/plugin-facade/internal/server"
	"github.com/acme/plugin-facade/internal/testutil"
)

// lastCall returns the fields of the last "finished call" line in log.
func lastCall(t *testing.T, log string) map[string]any {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(log), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		var m map[string]any
		if json.Unmarshal([]byte(lines[i]), &m) == nil && m["msg"] == "finished call" {
			return m
		}
	}
	t.Fatalf("no call log line in:\n%s", log)
	return nil
}

func newOIDC(t *testing.T, iss *testutil.Issuer) *caller.OIDC {
	t.Helper()
	o, err := caller.NewOIDC(context.Background(), iss.URL, "plugin-facade", nil)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// TestIdentitySources: each source of identity, strongest first, as the
// call log line shows it.
func TestIdentitySources(t *testing.T) {
	sb := testutil.StartSandbox(t)
	iss := testutil.NewIssuer(t)
	ca := testutil.NewCA(t, "mesh")
	plain := startFacade(t, sb, nil, caller.WithOIDC(newOIDC(t, iss)),
		caller.WithTrustedProxies([]netip.Prefix{netip.MustParsePrefix("127.0.0.2/32"), netip.MustParsePrefix("10.0.0.0/8")}))
	mtls := startFacade(t, sb, serverTLS(t, ca), caller.WithOIDC(newOIDC(t, iss)))
	saToken := iss.Token(t, testutil.Claims{Subject: "system:serviceaccount:team-a:reader", Audience: []string{"plugin-facade"}})

	tests := []struct {
		name       string
		f          *facade
		from       string
		md         []string // outgoing metadata pairs (REST: headers)
		rest       bool
		tls        bool
		wantCaller string
		wantSource string
	}{
		{"peer address", plain, "127.0.0.3", nil, false, false, "ip:127.0.0.3", "peer"},
		{"forwarding headers of an untrusted peer are ignored", plain, "127.0.0.3",
			[]string{"x-forwarded-for", "203.0.113.9"}, false, false, "ip:127.0.0.3", "peer"},
		{"X-Forwarded-For through a trusted proxy: nearest untrusted hop", plain, "127.0.0.2",
			[]string{"x-forwarded-for", "198.51.100.1, 203.0.113.9, 10.1.2.3"}, false, false, "ip:203.0.113.9", "forwarded"},
		{"Forwarded through a trusted proxy", plain, "127.0.0.2",
			[]string{"forwarded", `for=192.0.2.60;proto=https, for="[2001:db8::17]:4711"`}, false, false, "ip:2001:db8::17", "forwarded"},
		{"a hop that names no address counts as the proxy's", plain, "127.0.0.2",
			[]string{"forwarded", "for=192.0.2.60, for=unknown"}, false, false, "ip:127.0.0.2", "peer"},
		{"REST: peer address", plain, "127.0.0.3", nil, true, false, "ip:127.0.0.3", "peer"},
		{"REST: X-Forwarded-For through a trusted proxy", plain, "127.0.0.2",
			[]string{"X-Forwarded-For", "203.0.113.7"}, true, false, "ip:203.0.113.7", "forwarded"},
		{"REST: spoofed X-Forwarded-For from an untrusted peer", plain, "127.0.0.3",
			[]string{"X-Forwarded-For", "203.0.113.7"}, true, false, "ip:127.0.0.3", "peer"},
		{"JWT of the issuer", plain, "127.0.0.3", []string{"authorization", "Bearer " + saToken}, false, false,
			"jwt:system:serviceaccount:team-a:reader", "token"},
		{"REST: JWT of the issuer", plain, "127.0.0.3", []string{"Authorization", "Bearer " + saToken}, true, false,
			"jwt:system:serviceaccount:team-a:reader", "token"},
		{"client certificate", mtls, "", nil, false, true, "cn:team-b", "certificate"},
		{"client certificate beats a JWT", mtls, "", []string{"authorization", "Bearer " + saToken}, false, true, "cn:team-b", "certificate"},
		{"REST: client certificate", mtls, "", nil, true, true, "cn:team-b", "certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := sb.Requests()
			var cfg = clientTLS(t, ca, "team-b")
			if !tt.tls {
				cfg = nil
			}
			if tt.rest {
				scheme := "http"
				if tt.tls {
					scheme = "https"
				}
				req, _ := http.NewRequest(http.MethodGet, scheme+"://"+tt.f.httpAddr+"/connect/v1/custom-connector-plugins/"+sandbox.PluginID, nil)
				for i := 0; i+1 < len(tt.md); i += 2 {
					req.Header.Set(tt.md[i], tt.md[i+1])
				}
				resp, err := httpClient(tt.from, cfg).Do(req)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("status %d: %s", resp.StatusCode, body)
				}
			} else {
				ctx := metadata.AppendToOutgoingContext(context.Background(), tt.md...)
				if _, err := grpcClient(t, tt.f.grpcAddr, tt.from, cfg).GetConnectorPlugin(ctx,
					&pluginv1.GetConnectorPluginRequest{Id: sandbox.PluginID}); err != nil {
					t.Fatal(err)
				}
			}
			if got := sb.Requests() - before; got != 1 {
				t.Errorf("the upstream got %d requests, want 1 (with the service's key)", got)
			}
			line := lastCall(t, tt.f.log.String())
			if line["caller"] != tt.wantCaller || line["caller_source"] != tt.wantSource {
				t.Errorf("call log caller = %v (%v), want %s (%s)", line["caller"], line["caller_source"], tt.wantCaller, tt.wantSource)
			}
			if strings.Contains(tt.f.log.String(), saToken) {
				t.Error("the token is in the log")
			}
		})
	}
}

// TestBadTokens: a token meant for the facade that does not verify is
// UNAUTHENTICATED with a reason, reaches nothing upstream, and shows nowhere.
func TestBadTokens(t *testing.T) {
	sb := testutil.StartSandbox(t)
	iss := testutil.NewIssuer(t)
	f := startFacade(t, sb, nil, caller.WithOIDC(newOIDC(t, iss)))
	client := grpcClient(t, f.grpcAddr, "", nil)
	aud := []string{"plugin-facade"}
	now := time.Now()
	unpublished, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	b64 := base64.RawURLEncoding.EncodeToString
	payload := b64([]byte(`{"iss":"` + iss.URL + `","sub":"mallory","aud":"plugin-facade","exp":` + jsonTime(now.Add(time.Hour)) + `}`))

	tests := []struct {
		name, token, wantWords string
	}{
		{"expired", iss.Token(t, testutil.Claims{Subject: "a", Audience: aud, Expiry: now.Add(-time.Minute), IssuedAt: now.Add(-time.Hour)}), "expired"},
		{"not valid yet", iss.Token(t, testutil.Claims{Subject: "a", Audience: aud, NotBefore: now.Add(time.Hour)}), "not valid yet"},
		{"wrong audience", iss.Token(t, testutil.Claims{Subject: "a", Audience: []string{"someone-else"}}), "audience"},
		{"wrong issuer, our audience", iss.Token(t, testutil.Claims{Issuer: "https://evil.example", Subject: "a", Audience: aud}), "issuer"},
		{"unsigned (alg none)", b64([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + payload + ".", "not a JWT signed"},
		{"unknown key id", iss.SignWith(t, unpublished, "key-unknown", testutil.Claims{Subject: "a", Audience: aud}), "signature"},
		{"malformed header", "e30K!!." + payload + ".c2ln", "not a JWT signed"},
		{"forged signature", strings.Join(strings.Split(iss.Token(t, testutil.Claims{Subject: "a", Audience: aud}), ".")[:2], ".") + ".AAAA", "signature"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := sb.Requests()
			ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+tt.token)
			_, err := client.GetConnectorPlugin(ctx, &pluginv1.GetConnectorPluginRequest{Id: sandbox.PluginID})
			st := status.Convert(err)
			if st.Code() != codes.Unauthenticated || !strings.Contains(st.Message(), tt.wantWords) {
				t.Fatalf("got %v %q, want UNAUTHENTICATED saying %q", st.Code(), st.Message(), tt.wantWords)
			}
			if reason := errorReason(st); reason != caller.ReasonBadToken {
				t.Errorf("reason %q, want %s", reason, caller.ReasonBadToken)
			}
			if got := sb.Requests() - before; got != 0 {
				t.Errorf("the upstream got %d requests", got)
			}
			for where, text := range map[string]string{"error": st.String(), "log": f.log.String(), "metrics": scrape(t, f)} {
				if strings.Contains(text, tt.token) || strings.Contains(text, payload) {
					t.Errorf("the token is in the %s", where)
				}
			}
		})
	}

	t.Run("a bearer of another issuer is the caller's own credential, forwarded", func(t *testing.T) {
		before := sb.Requests()
		ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+sandbox.BearerToken)
		if _, err := client.GetConnectorPlugin(ctx, &pluginv1.GetConnectorPluginRequest{Id: sandbox.PluginID}); err != nil {
			t.Fatal(err)
		}
		if got := sb.Requests() - before; got != 1 {
			t.Errorf("the upstream got %d requests, want 1", got)
		}
	})
}

func jsonTime(t time.Time) string { b, _ := json.Marshal(t.Unix()); return string(b) }

func errorReason(st *status.Status) string {
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info.GetReason()
		}
	}
	return ""
}

func scrape(t *testing.T, f *facade) string {
	t.Helper()
	mfs, err := f.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, mf := range mfs {
		b.WriteString(mf.String())
	}
	return b.String()
}

// TestJWKSRotation: a token signed with a key the issuer published after the
// facade cached its keys verifies: the unknown key id makes it fetch them
// again.
func TestJWKSRotation(t *testing.T) {
	sb := testutil.StartSandbox(t)
	iss := testutil.NewIssuer(t)
	f := startFacade(t, sb, nil, caller.WithOIDC(newOIDC(t, iss)))
	client := grpcClient(t, f.grpcAddr, "", nil)
	call := func(tok string) error {
		ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+tok)
		_, err := client.GetConnectorPlugin(ctx, &pluginv1.GetConnectorPluginRequest{Id: sandbox.PluginID})
		return err
	}
	claims := testutil.Claims{Subject: "system:serviceaccount:a:b", Audience: []string{"plugin-facade"}}
	if err := call(iss.Token(t, claims)); err != nil {
		t.Fatal(err)
	}
	fetched := iss.KeyFetches()
	if err := call(iss.Token(t, claims)); err != nil {
		t.Fatal(err)
	}
	if iss.KeyFetches() != fetched {
		t.Errorf("a known key id fetched the keys again")
	}
	iss.Rotate(t)
	if err := call(iss.Token(t, claims)); err != nil {
		t.Fatalf("a token of the rotated key: %v", err)
	}
	if iss.KeyFetches() <= fetched {
		t.Errorf("the rotated key was not fetched")
	}
}

// TestCertificateFromAnotherCA: the handshake fails; nothing reaches the
// upstream.
func TestCertificateFromAnotherCA(t *testing.T) {
	sb := testutil.StartSandbox(t)
	ca, other := testutil.NewCA(t, "mesh"), testutil.NewCA(t, "intruder")
	f := startFacade(t, sb, serverTLS(t, ca))
	cfg := clientTLS(t, other, "mallory")
	cfg.RootCAs = ca.Pool // trusts the server; its own certificate is the intruder's
	_, err := grpcClient(t, f.grpcAddr, "", cfg).GetConnectorPlugin(context.Background(), &pluginv1.GetConnectorPluginRequest{Id: sandbox.PluginID})
	if status.Code(err) != codes.Unavailable {
		t.Errorf("gRPC: got %v, want UNAVAILABLE (handshake refused)", err)
	}
	if _, err := httpClient("", cfg).Get("https://" + f.httpAddr + "/connect/v1/custom-connector-plugins/" + sandbox.PluginID); err == nil {
		t.Error("REST: the handshake succeeded")
	}
	if n := sb.Requests(); n != 0 {
		t.Errorf("the upstream got %d requests", n)
	}
}

// TestSpanCarriesCaller: the call's server span names the caller, and holds
// no token.
func TestSpanCarriesCaller(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	iss := testutil.NewIssuer(t)
	f := startFacadeWith(t, testutil.StartSandbox(t), nil, true, []server.Option{server.WithTracerProvider(tp)}, nil, caller.WithOIDC(newOIDC(t, iss)))
	tok := iss.Token(t, testutil.Claims{Subject: "system:serviceaccount:a:b", Audience: []string{"plugin-facade"}})
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+tok)
	if _, err := grpcClient(t, f.grpcAddr, "", nil).GetConnectorPlugin(ctx, &pluginv1.GetConnectorPluginRequest{Id: sandbox.PluginID}); err != nil {
		t.Fatal(err)
	}
	// The server ends its span once the answer is written: wait for it.
	serverSpans := func() (n int) {
		for _, s := range rec.Ended() {
			if s.SpanKind() == trace.SpanKindServer {
				n++
			}
		}
		return n
	}
	for deadline := time.Now().Add(5 * time.Second); serverSpans() == 0; {
		if time.Now().After(deadline) {
			t.Fatal("no server span ended within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	var found bool
	for _, s := range rec.Ended() {
		if s.SpanKind() != trace.SpanKindServer {
			continue
		}
		for _, a := range s.Attributes() {
			if strings.Contains(a.Value.Emit(), tok) {
				t.Errorf("span attribute %s holds the token", a.Key)
			}
			if a.Key == "caller.name" && a.Value.AsString() == "jwt:system:serviceaccount:a:b" {
				found = true
			}
		}
	}
	if !found {
		t.Error("no server span has caller.name")
	}
}

// TestOwnCredentialKeepsItsWindow: a caller over its share of the service's
// key is still served with a credential of its own.
func TestOwnCredentialKeepsItsWindow(t *testing.T) {
	f := startFacade(t, floodSandbox(t), nil)
	c := grpcClient(t, f.grpcAddr, "127.0.0.2", nil)
	throttled := false
	for i := 0; i < 3*floodShare && !throttled; i++ {
		err := readDistinct(context.Background(), c, i)
		throttled = errorReason(status.Convert(err)) == caller.ReasonShareExceeded
	}
	if !throttled {
		t.Fatal("the caller was never held to its share")
	}
	own := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+sandbox.BearerToken)
	if err := readKnown(own, c); err != nil {
		t.Errorf("with its own credential: %v", err)
	}
}
