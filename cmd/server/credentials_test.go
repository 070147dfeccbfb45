package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/acme/plugin-facade/internal/testutil"
)

// TestDefaultCredentialRejected: a default key the upstream rejects shows in
// /readyz's detail and in plugin_facade_default_credentials_rejected at
// start-up (the check asks once), and the answers of calls keep both
// current when the upstream changes its mind, in both directions. Readiness
// itself stays 200: callers with their own credential are still served.
func TestDefaultCredentialRejected(t *testing.T) {
	var reject atomic.Bool
	var requests atomic.Int32
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		w.Header().Set("Content-Type", "application/json")
		if reject.Load() && r.Header.Get("Authorization") != "Bearer callers-own" {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = io.WriteString(w, `{"errors":[{"status":"401","detail":"invalid API key"}]}`)
			return
		}
		w.WriteHeader(http.StatusNotFound)
		_, _ = io.WriteString(w, `{"errors":[{"status":"404","detail":"not found"}]}`)
	}))
	defer up.Close()
	reject.Store(true)

	ctx, cancel := context.WithCancel(t.Context())
	var stderr testutil.Buffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--upstream-url", up.URL, "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"},
			env(envAPIKey, "WRONG", envAPISecret, "hunter2"), io.Discard, &stderr)
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run = %v", err)
		}
	}()
	_, httpAddr := servingAddrs(t, &stderr)
	base := "http://" + httpAddr

	want := func(t *testing.T, state, gauge string) {
		t.Helper()
		var code int
		var body map[string]string
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			code, body = getJSON(t, base+"/readyz")
			if body["default_credentials"] == state || time.Now().After(deadline) {
				break
			}
		}
		if code != http.StatusOK || body["default_credentials"] != state {
			t.Fatalf("/readyz = %d %v, want 200 with default_credentials %q", code, body, state)
		}
		if m := get(t, base+"/metrics"); !strings.Contains(m, "\nplugin_facade_default_credentials_rejected "+gauge+"\n") {
			t.Errorf("/metrics lacks plugin_facade_default_credentials_rejected %s", gauge)
		}
	}
	t.Run("rejected at start-up", func(t *testing.T) {
		want(t, "rejected", "1")
		if n := requests.Load(); n != 1 {
			t.Errorf("%d upstream requests before any call, want the one check", n)
		}
		if !strings.Contains(stderr.String(), "the upstream rejects the default credential") {
			t.Errorf("no error logged:\n%s", stderr.String())
		}
	})
	t.Run("a caller's own credential teaches nothing", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodGet, base+"/connect/v1/custom-connector-plugins/ccp-12345", nil)
		req.Header.Set("Authorization", "Bearer callers-own")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Fatalf("own-credential call = %d, want the upstream's 404", resp.StatusCode)
		}
		want(t, "rejected", "1")
	})
	t.Run("accepted again, learned from a call", func(t *testing.T) {
		reject.Store(false)
		get(t, base+"/connect/v1/custom-connector-plugins/ccp-12345")
		want(t, "accepted", "0")
	})
	t.Run("rejected again, learned from a call", func(t *testing.T) {
		reject.Store(true)
		get(t, base+"/connect/v1/custom-connector-plugins/ccp-12345")
		want(t, "rejected", "1")
	})
	if strings.Contains(stderr.String(), "hunter2") || strings.Contains(stderr.String(), "WRONG:") {
		t.Error("the key was logged")
	}
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func getJSON(t *testing.T, url string) (int, map[string]string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]string
	_ = json.NewDecoder(resp.Body).Decode(&m)
	return resp.StatusCode, m
}
