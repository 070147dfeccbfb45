package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	pluginv1 "github.com/acme/plugin-facade/gen/go/confluent/plugin/v1"
	"github.com/acme/plugin-facade/internal/fleet/fleettest"
	"github.com/acme/plugin-facade/internal/sandbox"
	"github.com/acme/plugin-facade/internal/testutil"
	"github.com/acme/plugin-facade/internal/upstream"
)

// The multi-replica tests run replicas as real processes of this binary (see
// TestMain) against one sandbox and, when the fleet shares its state, one
// redis-server, so that a replica can be killed for real.

// replica is one facade process of a fleet under test.
type replica struct {
	cmd     *exec.Cmd
	out     *testutil.Buffer
	httpURL string
	client  pluginv1.PluginServiceClient
	done    chan struct{}
}

// fleetSetup is how many replicas run, and the Redis they share (none: each
// keeps its state in memory).
type fleetSetup struct {
	name     string
	replicas int
	redis    bool
}

var fleetSetups = []fleetSetup{
	{"one replica", 1, false},
	{"three replicas without Redis", 3, false},
	{"three replicas with Redis", 3, true},
}

// startFleet starts n replicas in front of sb, sharing redisURL when it is
// set, with the extra flags.
func startFleet(t *testing.T, sb *sandbox.Server, n int, redisURL string, extra ...string) []*replica {
	t.Helper()
	rs := make([]*replica, n)
	for i := range rs {
		rs[i] = startReplica(t, sb, redisURL, extra...)
	}
	return rs
}

func startReplica(t *testing.T, sb *sandbox.Server, redisURL string, extra ...string) *replica {
	t.Helper()
	grpcAddr, httpAddr := testutil.FreeAddr(t), testutil.FreeAddr(t)
	env := []string{"CONFLUENT_CLOUD_API_KEY=" + sandbox.APIKey, "CONFLUENT_CLOUD_API_SECRET=" + sandbox.APISecret}
	if redisURL != "" {
		// Through the environment, as a URL with a password should be given.
		env = append(env, "PLUGIN_FACADE_REDIS_URL="+redisURL)
	}
	args := append([]string{"--grpc-addr", grpcAddr, "--http-addr", httpAddr, "--upstream-url", sb.URL(),
		"--log-level", "warn", "--shutdown-timeout", "2s"}, extra...)
	cmd, out := command(t, env, args...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := &replica{cmd: cmd, out: out, httpURL: "http://" + httpAddr, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(r.done) }()
	t.Cleanup(r.kill)
	if err := r.waitReady(15 * time.Second); err != nil {
		t.Fatalf("replica: %v\n%s", err, out.String())
	}
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	r.client = pluginv1.NewPluginServiceClient(conn)
	return r
}

// kill ends the replica at once, as a crashed process or a lost node would.
func (r *replica) kill() {
	select {
	case <-r.done:
		return
	default:
	}
	_ = r.cmd.Process.Kill()
	<-r.done
}

func (r *replica) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		// Ready, and done with the start-up check of its key, so that the
		// test's counts of upstream requests start after it.
		if code, body, err := r.readyz(); err == nil && code == http.StatusOK && !strings.Contains(body, `"default_credentials":"unchecked"`) {
			return nil
		}
		select {
		case <-r.done:
			return errors.New("exited before it was ready")
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready within %v", timeout)
		}
	}
}

// readyz returns the status and body of the replica's readiness probe.
func (r *replica) readyz() (int, string, error) {
	resp, err := http.Get(r.httpURL + "/readyz")
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// upstreamRequests is how many HTTP exchanges the replica made with the
// upstream for plugin versions (what watches poll), from its metrics; the
// start-up check of the default credential asks for a connector plugin.
func (r *replica) upstreamRequests(t *testing.T) int {
	t.Helper()
	resp, err := http.Get(r.httpURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	n := 0
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "plugin_facade_upstream_requests_total{") || !strings.Contains(line, `route="`+upstream.RoutePluginVersion+`"`) {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		n += int(v)
	}
	return n
}

// redisFor starts a Redis for a setup that shares its state, and returns its
// URL ("" for one that does not). The replicas' Redis operations get a
// generous timeout: a loaded machine running the tests under -race must not
// degrade the fleet (a replica starved of CPU for 50ms, the default, does).
func redisFor(t *testing.T, s fleetSetup) (url string, extra []string) {
	if !s.redis {
		return "", nil
	}
	return fleettest.Start(t).URL(), []string{"--redis-timeout", "1s"}
}

// TestFleetSharesTheRateLimitWindow: once one replica has seen a 429, the
// others answer RESOURCE_EXHAUSTED without calling the upstream.
func TestFleetSharesTheRateLimitWindow(t *testing.T) {
	for _, s := range fleetSetups {
		t.Run(s.name, func(t *testing.T) {
			url, extra := redisFor(t, s)
			sb := testutil.StartSandbox(t, sandbox.WithRateLimit(3, time.Minute))
			rs := startFleet(t, sb, s.replicas, url, extra...)

			// Another client of the same key spends the window.
			exhaust(t, sb)
			_, err := rs[0].client.GetConnectorPlugin(context.Background(), &pluginv1.GetConnectorPluginRequest{Id: sandbox.PluginID})
			if status.Code(err) != codes.ResourceExhausted {
				t.Fatalf("first replica: %v; want RESOURCE_EXHAUSTED from the upstream's 429", err)
			}
			time.Sleep(300 * time.Millisecond) // a pub/sub message on loopback takes well under a millisecond

			before := sb.Requests()
			for _, r := range rs[1:] {
				_, err := r.client.GetConnectorPlugin(context.Background(), &pluginv1.GetConnectorPluginRequest{Id: sandbox.PluginID})
				if status.Code(err) != codes.ResourceExhausted {
					t.Errorf("another replica: %v; want RESOURCE_EXHAUSTED", err)
				}
				_, err = r.client.GetPluginVersion(context.Background(), &pluginv1.GetPluginVersionRequest{
					PluginId: sandbox.PluginID, Id: sandbox.VersionID, Environment: sandbox.Environment})
				if status.Code(err) != codes.ResourceExhausted {
					t.Errorf("another replica: %v; want RESOURCE_EXHAUSTED", err)
				}
			}
			calls := sb.Requests() - before
			t.Logf("%s: upstream calls by the other replicas after one saw a 429: %d", s.name, calls)
			if s.redis && calls != 0 {
				t.Errorf("the other replicas made %d upstream calls; want 0", calls)
			}
		})
	}
}

// exhaust spends sb's rate-limit window with direct requests until it
// answers 429.
func exhaust(t *testing.T, sb *sandbox.Server) {
	t.Helper()
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte(sandbox.APIKey+":"+sandbox.APISecret))
	for range 100 {
		req, _ := http.NewRequest(http.MethodGet, sb.URL()+"/connect/v1/custom-connector-plugins/"+sandbox.PluginID, nil)
		req.Header.Set("Authorization", basic)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusTooManyRequests {
			return
		}
	}
	t.Fatal("the sandbox never answered 429")
}

// TestFleetSharesTheCache: 30 concurrent identical calls spread over the
// replicas make one upstream call.
func TestFleetSharesTheCache(t *testing.T) {
	for _, s := range fleetSetups {
		t.Run(s.name, func(t *testing.T) {
			url, extra := redisFor(t, s)
			sb := testutil.StartSandbox(t)
			rs := startFleet(t, sb, s.replicas, url, append(extra, "--cache-ttl", "30s")...)
			before := sb.Requests()
			var wg sync.WaitGroup
			errs := make(chan error, 30)
			for i := range 30 {
				wg.Go(func() {
					_, err := rs[i%len(rs)].client.GetConnectorPlugin(context.Background(), &pluginv1.GetConnectorPluginRequest{Id: sandbox.PluginID})
					errs <- err
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Fatal(err)
				}
			}
			calls := sb.Requests() - before
			t.Logf("%s: upstream calls for 30 concurrent identical calls: %d", s.name, calls)
			if s.redis && calls != 1 {
				t.Errorf("%d upstream calls; want 1", calls)
			}
		})
	}
}

// TestFleetPollsAWatchOnce: 30 watchers spread over the replicas cost the
// upstream the polls of one replica's watch, and each sees PROCESSING then
// READY, once each.
func TestFleetPollsAWatchOnce(t *testing.T) {
	polls := map[string]int64{}
	for _, s := range fleetSetups {
		t.Run(s.name, func(t *testing.T) {
			url, extra := redisFor(t, s)
			sb := testutil.StartSandbox(t, sandbox.WithLifecycle(2500*time.Millisecond))
			rs := startFleet(t, sb, s.replicas, url, extra...)
			before := sb.Requests()
			results := watchAll(t, rs, 30, nil)
			for i, r := range results {
				if r.err != nil || strings.Join(r.phases, ",") != "PROCESSING,READY" {
					t.Errorf("watcher %d (replica %d): phases %v, error %v; want PROCESSING, READY", i, i%len(rs), r.phases, r.err)
				}
			}
			polls[s.name] = sb.Requests() - before
			t.Logf("%s: upstream polls for 30 watchers: %d", s.name, polls[s.name])
			if one, ok := polls[fleetSetups[0].name]; ok && s.redis && polls[s.name] > one+1 {
				t.Errorf("%d polls; want one replica's worth (%d, +1 for a lease changing hands)", polls[s.name], one)
			}
		})
	}
}

type watchResult struct {
	phases []string
	err    error
}

// watchAll runs n watchers of the sandbox's processing version, spread over
// rs, polling every second, until each ends; started, when set, is closed
// once every watcher has its first message.
func watchAll(t *testing.T, rs []*replica, n int, started chan<- struct{}) []watchResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	results := make([]watchResult, n)
	var first, all sync.WaitGroup
	first.Add(n)
	for i := range n {
		all.Go(func() {
			firstDone := false
			defer func() {
				if !firstDone {
					first.Done()
				}
			}()
			stream, err := rs[i%len(rs)].client.WatchPluginVersion(ctx, &pluginv1.WatchPluginVersionRequest{
				PluginId: sandbox.PluginID, Id: sandbox.ProcessingVersionID, Environment: sandbox.Environment,
				PollInterval: durationpb.New(time.Second)})
			if err != nil {
				results[i].err = err
				return
			}
			for {
				v, err := stream.Recv()
				if err != nil {
					if !errors.Is(err, io.EOF) {
						results[i].err = err
					}
					return
				}
				results[i].phases = append(results[i].phases, v.GetStatus().GetPhaseRaw())
				if !firstDone {
					firstDone = true
					first.Done()
				}
			}
		})
	}
	if started != nil {
		go func() { first.Wait(); close(started) }()
	}
	all.Wait()
	return results
}

// TestFleetWatchSurvivesThePollingReplica kills the replica that polls for a
// watched version: another takes over, and the watchers of the others see
// READY, with no error and no duplicate.
func TestFleetWatchSurvivesThePollingReplica(t *testing.T) {
	r := fleettest.Start(t)
	sb := testutil.StartSandbox(t, sandbox.WithLifecycle(5*time.Second))
	rs := startFleet(t, sb, 3, r.URL(), "--redis-timeout", "1s")

	started := make(chan struct{})
	done := make(chan []watchResult)
	go func() { done <- watchAll(t, rs, 30, started) }()
	select {
	case <-started:
	case <-time.After(15 * time.Second):
		t.Fatal("the watchers got no first message within 15s")
	}
	// The one replica that has called the upstream is the one polling.
	var polling []int
	for i, r := range rs {
		if r.upstreamRequests(t) > 0 {
			polling = append(polling, i)
		}
	}
	if len(polling) != 1 {
		t.Fatalf("replicas %v have polled; want exactly one", polling)
	}
	killed := polling[0]
	rs[killed].kill()
	killedAt := time.Now()
	// Another replica polls within about two poll intervals (1s here): the
	// lease expires 1.5 intervals after its last renewal, and the others ask
	// for it every half interval.
	var tookOver time.Duration
	for tookOver == 0 {
		for i, r := range rs {
			if i != killed && r.upstreamRequests(t) > 0 {
				tookOver = time.Since(killedAt)
			}
		}
		if time.Since(killedAt) > 10*time.Second {
			t.Fatal("no replica took over polling within 10s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("another replica polled %v after the polling one was killed", tookOver.Round(10*time.Millisecond))
	// The two intervals are held exactly, in fake time, by service's
	// TestPollingMovesWithinTwoIntervalsOfADeath. Here, on real processes,
	// a loaded machine runs the replicas' timers, their Redis calls and this
	// test's scrapes late (3.18s once under make test), so only a lease of
	// the wrong order (several intervals) fails.
	if tookOver > 5*time.Second {
		t.Errorf("polling moved after %v; want about two poll intervals (2s)", tookOver)
	}

	results := <-done
	for i, res := range results {
		if i%len(rs) == killed {
			continue // their replica is gone: they watch again elsewhere
		}
		if res.err != nil || strings.Join(res.phases, ",") != "PROCESSING,READY" {
			t.Errorf("watcher %d (replica %d): phases %v, error %v; want PROCESSING, READY", i, i%len(rs), res.phases, res.err)
		}
	}
	took := 0
	for i, r := range rs {
		if i != killed && r.upstreamRequests(t) > 0 {
			took++
		}
	}
	if took != 1 {
		t.Errorf("%d replicas polled after the polling one was killed; want exactly one", took)
	}
	t.Logf("READY reached the remaining watchers %v after the kill", time.Since(killedAt).Round(100*time.Millisecond))
}

// TestFleetDegradesWithoutRedis stops Redis while the replicas serve calls:
// no caller sees an error, readiness stays 200 and says the fleet is
// degraded; once Redis is back the replicas share their cache again.
func TestFleetDegradesWithoutRedis(t *testing.T) {
	r := fleettest.Start(t)
	sb := testutil.StartSandbox(t, sandbox.WithRateLimit(0, 0), sandbox.WithSyntheticIDs())
	// A generous --redis-timeout (see redisFor): a stopped Redis refuses
	// connections at once whatever the timeout, while the default one
	// degrades a replica that a loaded machine starves for 50ms, and so
	// failed the check of sharing below.
	rs := startFleet(t, sb, 3, r.URL(), "--cache-ttl", "30s", "--redis-timeout", "1s")

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stop := make(chan struct{})
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		calls int
		errs  []error
	)
	callsMade := func() int { mu.Lock(); defer mu.Unlock(); return calls }
	// Each phase (Redis up, down, back) lasts until the callers have made
	// 20 more calls in it.
	awaitCalls := func(phase string) {
		t.Helper()
		from := callsMade()
		testutil.Eventually(t, 10*time.Second, "20 calls "+phase, func() bool { return callsMade() >= from+20 })
	}
	for w := range 6 {
		wg.Go(func() {
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				case <-ctx.Done(): // the test failed early
					return
				default:
				}
				// Distinct ids, so that every call needs the cache and the
				// claims in Redis.
				id := fmt.Sprintf("%s%d", sandbox.SyntheticPluginPrefix, w*1_000_000+n)
				_, err := rs[w%len(rs)].client.GetConnectorPlugin(ctx, &pluginv1.GetConnectorPluginRequest{Id: id})
				mu.Lock()
				calls++
				if err != nil {
					errs = append(errs, err)
				}
				mu.Unlock()
			}
		})
	}
	awaitCalls("with Redis up")
	r.Stop()
	waitFleet(t, rs, "degraded", 5*time.Second)
	awaitCalls("with Redis down")
	// Degraded, the replicas leave Redis alone but for their checks and the
	// subscription's reconnections, whose failed dials go-redis logs: the
	// phase lasts until one has (checked below to be a JSON line).
	testutil.Eventually(t, 10*time.Second, "a go-redis line (component go-redis) while Redis is down", func() bool {
		return goRedisLines(t, rs) > 0
	})
	if err := r.Restart(); err != nil {
		t.Fatal(err)
	}
	waitFleet(t, rs, "shared", 10*time.Second)
	awaitCalls("with Redis back")
	close(stop)
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("%d of %d calls failed while Redis stopped and started; first: %v", len(errs), calls, errs[0])
	}
	t.Logf("%d calls, none failed, across Redis stopping and starting", calls)

	// Sharing resumed: one replica's answer serves the others. Each try asks
	// for an id not asked before; a try that made more than one upstream call
	// (a replica lost a connection to the restart and degraded until its next
	// check) is followed by another, until one shares or the time is up.
	tries, last := 0, 0
	shared := func() bool {
		tries++
		id := fmt.Sprintf("%s%d", sandbox.SyntheticPluginPrefix, 900_000_000+tries)
		before := sb.Requests()
		for _, rep := range rs {
			if _, err := rep.client.GetConnectorPlugin(ctx, &pluginv1.GetConnectorPluginRequest{Id: id}); err != nil {
				t.Fatal(err)
			}
		}
		last = int(sb.Requests() - before)
		return last == 1
	}
	deadline := time.Now().Add(5 * time.Second)
	for !shared() {
		if time.Now().After(deadline) {
			t.Fatalf("after Redis came back, 3 replicas made %d upstream calls for one id (try %d); want 1", last, tries)
		}
	}
	t.Logf("after Redis came back, 3 replicas shared one upstream call at try %d", tries)

	// go-redis's own lines went through slog: every line stays JSON.
	for i, rep := range rs {
		for line := range strings.Lines(rep.out.String()) {
			if !json.Valid([]byte(line)) {
				t.Errorf("replica %d wrote a line that is not JSON: %q", i, line)
			}
		}
	}
}

// goRedisLines counts the log lines of go-redis (component go-redis) the
// replicas wrote.
func goRedisLines(t *testing.T, rs []*replica) int {
	t.Helper()
	n := 0
	for _, rep := range rs {
		for line := range strings.Lines(rep.out.String()) {
			var entry map[string]any
			if json.Unmarshal([]byte(line), &entry) == nil && entry["component"] == "go-redis" {
				n++
			}
		}
	}
	return n
}

// waitFleet waits until every replica's readiness is 200 and says that the
// fleet's state is want ("shared" or "degraded").
func waitFleet(t *testing.T, rs []*replica, want string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for _, rep := range rs {
		for {
			code, body, err := rep.readyz()
			if err == nil && code == http.StatusOK && strings.Contains(body, `"fleet":"`+want+`"`) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("readiness: %d %q %v; want 200 saying the fleet is %s", code, body, err, want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// TestRedisPasswordNeverShown: the Redis URL's password appears in no log
// line and no error, whether it is right, wrong or the URL invalid.
func TestRedisPasswordNeverShown(t *testing.T) {
	const password = "fleet-Pa55word"
	r := fleettest.StartWith(t, fleettest.Options{User: "facade", Password: password})
	sb := testutil.StartSandbox(t)
	good := startReplica(t, sb, r.URL(), "--log-level", "info")
	if _, body, _ := good.readyz(); !strings.Contains(body, `"fleet":"shared"`) {
		t.Errorf("readiness with the right password: %s", body)
	}
	wrong := startReplica(t, sb, strings.Replace(r.URL(), password, password+"-wrong", 1), "--log-level", "info")
	if _, body, _ := wrong.readyz(); !strings.Contains(body, `"fleet":"degraded"`) {
		t.Errorf("readiness with a wrong password: %s", body)
	}
	// The wrong one still serves, on its own state.
	if _, err := wrong.client.GetConnectorPlugin(context.Background(), &pluginv1.GetConnectorPluginRequest{Id: sandbox.PluginID}); err != nil {
		t.Errorf("a replica that cannot reach Redis failed a call: %v", err)
	}
	good.kill()
	wrong.kill()
	for _, out := range []string{good.out.String(), wrong.out.String()} {
		if strings.Contains(out, password) || !strings.Contains(out, "facade:xxxxx@") {
			t.Errorf("the log shows the password, or not the redacted URL:\n%s", out)
		}
	}

	cmd, out := command(t, []string{"PLUGIN_FACADE_REDIS_URL=redis://facade:" + password + "@127.0.0.1:notaport/0"})
	var exit *exec.ExitError
	if err := cmd.Run(); !errors.As(err, &exit) || exit.ExitCode() != 2 || !strings.Contains(out.String(), "--redis-url") ||
		strings.Contains(out.String(), password) {
		t.Errorf("an invalid Redis URL: %v\n%s\nwant exit status 2 naming --redis-url, without the password", err, out.String())
	}
}
