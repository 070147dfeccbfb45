package server

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	pluginv1 "github.com/acme/plugin-facade/gen/go/confluent/plugin/v1"
	"github.com/acme/plugin-facade/internal/sandbox"
	"github.com/acme/plugin-facade/internal/service"
	"github.com/acme/plugin-facade/internal/testutil"
	"github.com/acme/plugin-facade/internal/upstream"
	"github.com/acme/plugin-facade/internal/upstream/upstreamtest"
)

// TestWatchOverREST: the gateway streams a watch as newline-delimited JSON,
// one {"result": <the upstream's JSON>} per change, and ends the response
// when the phase is terminal; a failure is a final {"error": <a Failure
// envelope>}.
func TestWatchOverREST(t *testing.T) {
	s := startStack(t, []service.Option{service.WithDefaultCredentials(sandboxKey),
		service.WithWatchIntervals(service.WatchIntervals{Min: 10 * time.Millisecond, Default: 20 * time.Millisecond, Cap: 80 * time.Millisecond})},
		sandbox.WithLifecycle(300*time.Millisecond))

	watch := func(path string) (int, []map[string]json.RawMessage) {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, s.httpURL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		client := &http.Client{Timeout: 10 * time.Second}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		assertDescribed(t, path, restResponse{resp.StatusCode, resp.Header, body}, nil)
		if ct := resp.Header.Get("Content-Type"); ct != ndjsonContentType {
			t.Errorf("Content-Type %q, want %q", ct, ndjsonContentType)
		}
		var lines []map[string]json.RawMessage
		sc := bufio.NewScanner(bytes.NewReader(body))
		for sc.Scan() {
			if strings.TrimSpace(sc.Text()) == "" {
				continue
			}
			var line map[string]json.RawMessage
			if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
				t.Fatalf("line %q is not a JSON object: %v", sc.Text(), err)
			}
			lines = append(lines, line)
		}
		if err := sc.Err(); err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, lines
	}

	t.Run("processing, then ready", func(t *testing.T) {
		status, lines := watch("/ccpm/v1/plugins/" + sandbox.PluginID + "/versions/" + sandbox.ProcessingVersionID + ":watch?environment=" + sandbox.Environment + "&poll_interval=0.02s")
		if status != http.StatusOK {
			t.Fatalf("status %d", status)
		}
		var got []string
		for _, l := range lines {
			var v upstream.PluginVersion // the upstream's JSON
			if err := json.Unmarshal(l["result"], &v); err != nil || v.Status == nil || v.Status.Phase == nil {
				t.Fatalf("line %s: %v", l["result"], err)
			}
			got = append(got, *v.Status.Phase)
		}
		if strings.Join(got, ",") != "PROCESSING,READY" {
			t.Errorf("phases %v, want PROCESSING,READY", got)
		}
	})
	t.Run("an unknown version ends with a Not Found error", func(t *testing.T) {
		status, lines := watch("/ccpm/v1/plugins/" + sandbox.PluginID + "/versions/ver-00000:watch?environment=" + sandbox.Environment)
		if status != http.StatusNotFound || len(lines) != 1 || lines[0]["error"] == nil {
			t.Fatalf("%d %v, want 404 (nothing was sent before the error) and one error", status, lines)
		}
		var e failureEnvelope
		if err := json.Unmarshal(lines[0]["error"], &e); err != nil || len(e.Errors) != 1 ||
			e.Errors[0].Status != "404" || !strings.Contains(e.Errors[0].Detail, "not found") {
			t.Errorf("error %s, want the upstream's 404 envelope", lines[0]["error"])
		}
	})
	t.Run("an invalid request is a 400", func(t *testing.T) {
		before := s.sandbox.Requests()
		status, _ := watch("/ccpm/v1/plugins/" + sandbox.PluginID + "/versions/" + sandbox.VersionID + ":watch")
		if status != http.StatusBadRequest || s.sandbox.Requests() != before {
			t.Errorf("without an environment: %d after %d upstream requests, want 400 and none", status, s.sandbox.Requests()-before)
		}
	})
}

// TestWatchErrorHeadersOverREST: a watch that fails before its first message
// gets the headers a unary call's failure gets: the upstream's challenge on a
// 401, Retry-After on a 429.
func TestWatchErrorHeadersOverREST(t *testing.T) {
	challenge := `Basic error="invalid_key", error_description="The API Key is invalid"`
	tests := []struct {
		name       string
		resp       upstreamtest.Response
		wantStatus int
		header     string
		want       string
	}{
		{"401 with the upstream's challenge", upstreamtest.Response{Status: 401,
			Header: http.Header{"Www-Authenticate": {challenge}}, Body: `{"errors":[{"status":"401","title":"Unauthorized"}]}`},
			401, "WWW-Authenticate", challenge},
		{"429 with a retry hint", upstreamtest.Response{Status: 429,
			Header: http.Header{"Retry-After": {"30"}}, Body: `{"errors":[{"status":"429","title":"Too Many Requests"}]}`},
			429, "Retry-After", "30"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := upstreamtest.Start(t, tt.resp)
			uc, err := upstream.New(up.URL)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(uc.Close)
			// One failed poll ends the watch, so that the 429 (otherwise
			// retried within the stream) ends it at once.
			s := startServer(t, service.New(uc, service.WithDefaultCredentials(sandboxKey),
				service.WithWatchIntervals(service.WatchIntervals{MaxFailures: 1})), nil)
			r := s.get(t, "/ccpm/v1/plugins/ccp-1/versions/ver-1:watch?environment=env-1")
			if r.status != tt.wantStatus || r.header.Get(tt.header) != tt.want {
				t.Errorf("%d, %s %q; want %d, %q", r.status, tt.header, r.header.Get(tt.header), tt.wantStatus, tt.want)
			}
		})
	}
}

// TestWatchOverRESTGoesThroughTheStreamInterceptors: a watch served over
// REST in process gets the call log line (protocol rest, with the HTTP
// client's address and what the upstream answered), the gRPC metrics and
// panic recovery of a watch over gRPC.
func TestWatchOverRESTGoesThroughTheStreamInterceptors(t *testing.T) {
	sb := startSandbox(t)
	s, logs := instrumentedStack(t, sb.URL())
	path := "/ccpm/v1/plugins/" + sandbox.PluginID + "/versions/" + sandbox.VersionID + ":watch?environment=" + sandbox.Environment
	if r := s.get(t, path); r.status != http.StatusOK || !strings.Contains(string(r.body), `"phase":"READY"`) {
		t.Fatalf("watch of a READY version = %d %s", r.status, r.body)
	}
	if r := s.get(t, "/ccpm/v1/plugins/ccp-00000/versions/ver-1:watch?environment="+sandbox.Environment); r.status != http.StatusNotFound {
		t.Fatalf("watch of an unknown version = %d %s", r.status, r.body)
	}
	lines := logs.lines(t, "finished call")
	if len(lines) != 2 {
		t.Fatalf("%d call log lines, want 2: %v", len(lines), lines)
	}
	for i, code := range []string{"OK", "NotFound"} {
		l := lines[i]
		addr, _ := l["peer.address"].(string)
		if l["grpc.method"] != "WatchPluginVersion" || l["grpc.method_type"] != "server_stream" || l["protocol"] != "rest" ||
			l["grpc.code"] != code || !strings.HasPrefix(addr, "127.0.0.1") || l["upstream_status"] == nil {
			t.Errorf("line %d = %v, want WatchPluginVersion server_stream over rest from 127.0.0.1, code %s, with the upstream's status", i, l, code)
		}
	}
	fams := scrape(t, s.httpURL)
	for code, want := range map[string]float64{"OK": 1, "NotFound": 1} {
		if got := value(fams, "grpc_server_handled_total", "protocol", "rest", "grpc_method", "WatchPluginVersion", "grpc_type", "server_stream", "grpc_code", code); got != want {
			t.Errorf("grpc_server_handled_total{WatchPluginVersion, %s} = %v, want %v", code, got, want)
		}
	}
}

// TestShutdownEndsWatchesAtOnce is issue 15's defect 4: a shutdown with a
// gRPC and a REST watch open ends both at once, the gRPC one UNAVAILABLE and
// the REST one with a 503 envelope that says to watch again, and Serve
// returns long before its shutdown timeout.
func TestShutdownEndsWatchesAtOnce(t *testing.T) {
	sb := testutil.StartSandbox(t, sandbox.WithLifecycle(time.Hour)) // PROCESSING throughout
	uc, err := upstream.New(sb.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(uc.Close)
	svc := service.New(uc, service.WithDefaultCredentials(sandboxKey),
		service.WithWatchIntervals(service.WatchIntervals{Min: 10 * time.Millisecond, Default: 20 * time.Millisecond}))
	r := serve(t, svc, WithShutdownTimeout(30*time.Second))
	conn, err := grpc.NewClient(r.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	req := &pluginv1.WatchPluginVersionRequest{PluginId: sandbox.PluginID, Id: sandbox.ProcessingVersionID, Environment: sandbox.Environment}
	stream, err := pluginv1.NewPluginServiceClient(conn).WatchPluginVersion(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + r.httpAddr + "/ccpm/v1/plugins/" + sandbox.PluginID + "/versions/" +
		sandbox.ProcessingVersionID + ":watch?environment=" + sandbox.Environment)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	lines := bufio.NewScanner(resp.Body)
	if !lines.Scan() || !strings.HasPrefix(lines.Text(), `{"result":`) {
		t.Fatalf("the REST watch's first line: %q, %v", lines.Text(), lines.Err())
	}

	start := time.Now()
	r.stop()
	if _, err := stream.Recv(); status.Code(err) != codes.Unavailable {
		t.Errorf("the gRPC watch at shutdown ended with %v, want UNAVAILABLE", err)
	}
	var last struct {
		Error *failureEnvelope `json:"error"`
	}
	for lines.Scan() {
		if err := json.Unmarshal(lines.Bytes(), &last); err != nil {
			t.Fatalf("line %q: %v", lines.Text(), err)
		}
	}
	if e := last.Error; e == nil || len(e.Errors) != 1 || e.Errors[0].Status != "503" || !strings.Contains(e.Errors[0].Detail, "watch again") {
		t.Errorf("the REST watch's last line: %+v, want a 503 envelope saying to watch again", last.Error)
	}
	if err := r.wait(t); err != nil {
		t.Errorf("Serve = %v, want nil", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("shutdown took %v with two watches open, want it not to wait for them", d)
	}
}
