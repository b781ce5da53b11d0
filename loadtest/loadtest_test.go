package loadtest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/kioskfeed/kioskfeed/client"
)

// TestMain removes the kioskfeed binary once the tests are done (kioskfeedBinary builds
// it on first use, so the unit tests run without it) and fails the package if a test
// leaves a goroutine running: Run must stop everything it started. With
// LOADTEST_HELPER=block the test binary is instead a stand-in child process that waits
// for its stdin to end.
func TestMain(m *testing.M) {
	if os.Getenv("LOADTEST_HELPER") == "block" {
		_, _ = io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}
	code := m.Run()
	if built.dir != "" {
		_ = os.RemoveAll(built.dir)
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// built is the kioskfeed binary, built once for the tests that need it.
var built struct {
	once sync.Once
	dir  string
	exe  string
	err  error
}

// kioskfeedBinary builds cmd/kioskfeed with the go command once per test binary and
// returns its path; a failed build fails the calling test with the compiler's output.
func kioskfeedBinary(tb testing.TB) string {
	tb.Helper()
	built.once.Do(func() {
		goCmd, err := exec.LookPath("go")
		if err != nil {
			if root := os.Getenv("GOROOT"); root != "" {
				goCmd, err = filepath.Join(root, "bin", "go"), nil
			}
		}
		if err != nil {
			built.err = fmt.Errorf("no go command on PATH to build kioskfeed with: %w", err)
			return
		}
		dir, err := os.MkdirTemp("", "kioskfeed-loadtest-bin-")
		if err != nil {
			built.err = err
			return
		}
		built.dir = dir
		exe := filepath.Join(dir, "kioskfeed")
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, goCmd, "build", "-o", exe, "github.com/kioskfeed/kioskfeed/cmd/kioskfeed").CombinedOutput()
		if err != nil {
			built.err = fmt.Errorf("go build ./cmd/kioskfeed: %w\n%s", err, out)
			return
		}
		built.exe = exe
	})
	if built.err != nil {
		tb.Fatalf("cannot build the kioskfeed binary: %v", built.err)
	}
	return built.exe
}

// logOnFailure shows the end of every log a run left in dir, and its progress lines,
// when the test fails. Register it after t.TempDir so it runs before the removal.
func logOnFailure(t *testing.T, dir string, progress *bytes.Buffer) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		if progress != nil {
			t.Logf("progress:\n%s", progress)
		}
		logs, _ := filepath.Glob(filepath.Join(dir, "*.log"))
		for _, name := range logs {
			raw, err := os.ReadFile(name)
			if err != nil {
				continue
			}
			if len(raw) > 4096 {
				raw = raw[len(raw)-4096:]
			}
			t.Logf("%s (end):\n%s", filepath.Base(name), raw)
		}
	})
}

// TestRun drives a whole small run with the real binary: a server child, three worker
// processes pairing 40 tablets through PIN + DPoP, the fan-out, the restart, and the
// same fan-out through nats-server's WebSocket listener and through Centrifugo. It
// asserts what was delivered and that the figures were taken, never how fast.
func TestRun(t *testing.T) {
	exe := kioskfeedBinary(t)
	dir := t.TempDir()
	var progress bytes.Buffer
	logOnFailure(t, dir, &progress)

	const tablets, events = 40, 5
	res, err := Run(t.Context(), Options{
		Exe:       exe,
		Tablets:   tablets,
		PerWorker: 15,
		Events:    events,
		Rate:      20,
		Idle:      time.Second,
		Settle:    300 * time.Millisecond,
		Timeout:   3 * time.Minute,
		Dir:       dir,
		Progress:  &progress,
	})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if res == nil {
		t.Fatal("Run returned no result and no error")
	}
	raw, _ := json.Marshal(res)
	t.Logf("result: %s", raw)

	counts := []struct {
		name      string
		got, want int
	}{
		{"Tablets", res.Tablets, tablets},
		{"Workers", res.Workers, 3},
		{"Deliveries", res.Deliveries, tablets * events},
		{"Missing", res.Missing, 0},
		{"Duplicates", res.Duplicates, 0},
		{"AfterRestartMissing", res.AfterRestartMissing, 0},
		{"NATSDeliveries", res.NATSDeliveries, tablets * events},
		{"NATSMissing", res.NATSMissing, 0},
		{"NATSDuplicates", res.NATSDuplicates, 0},
	}
	if cent := res.Centrifugo; cent == nil {
		t.Error("no Centrifugo figures")
	} else {
		counts = append(counts, []struct {
			name      string
			got, want int
		}{
			{"Centrifugo.Subscribers", cent.Subscribers, tablets},
			{"Centrifugo.Deliveries", cent.Deliveries, tablets * events},
			{"Centrifugo.Missing", cent.Missing, 0},
			{"Centrifugo.Duplicates", cent.Duplicates, 0},
		}...)
		checkOrdered(t, "centrifugo", cent.FanoutP50Ms, cent.FanoutP90Ms, cent.FanoutP99Ms, cent.FanoutMaxMs)
		// CPU comes from /proc in clock ticks (10 ms): a run this small may see none.
		if cent.ConnectsPerS <= 0 || cent.FanoutWindowS <= 0 || cent.FanoutServerCPUUsDel < 0 || cent.ConnectServerCPUUs < 0 || cent.ConnectWorkerCPUUs < 0 {
			t.Errorf("Centrifugo: connects/s %g, publish window %g s, CPU per delivery %g µs, per connection %g µs (the workers' %g µs); want > 0, > 0, >= 0, >= 0 (>= 0)",
				cent.ConnectsPerS, cent.FanoutWindowS, cent.FanoutServerCPUUsDel, cent.ConnectServerCPUUs, cent.ConnectWorkerCPUUs)
		}
	}
	if res.ConnectServerCPUUsPerHandshake < 0 || res.ConnectWorkerCPUUsPerHandshake < 0 || res.NATSWSServerCPUUsPerDelivery < 0 {
		t.Errorf("server CPU per handshake %g µs (the workers' %g µs), nats-server's per delivery %g µs; want all >= 0",
			res.ConnectServerCPUUsPerHandshake, res.ConnectWorkerCPUUsPerHandshake, res.NATSWSServerCPUUsPerDelivery)
	}
	for _, c := range counts {
		if c.got != c.want {
			t.Errorf("%s = %d, want %d", c.name, c.got, c.want)
		}
	}
	if res.ReconnectAllS <= 0 {
		t.Errorf("ReconnectAllS = %g, want > 0 (the restart phase ran)", res.ReconnectAllS)
	}
	if res.ServerRSSTabletsBytes <= 0 {
		t.Errorf("ServerRSSTabletsBytes = %d, want > 0", res.ServerRSSTabletsBytes)
	}
	if res.GoroutinesTablets <= 0 {
		t.Errorf("GoroutinesTablets = %g, want > 0 (scraped from /metrics)", res.GoroutinesTablets)
	}
	checkOrdered(t, "kioskfeed", res.FanoutP50Ms, res.FanoutP90Ms, res.FanoutP99Ms, res.FanoutMaxMs)
	checkOrdered(t, "nats-server ws", res.NATSWSFanoutP50Ms, res.NATSWSFanoutP90Ms, res.NATSWSFanoutP99Ms, res.NATSWSFanoutMaxMs)

	// A clean run with a directory of its own leaves the logs there.
	for _, name := range []string{"server-1", "server-2", "server-3", "worker-0", "worker-1", "worker-2", "nats-server", "centrifugo"} {
		if _, err := os.Stat(filepath.Join(dir, name+".log")); err != nil {
			t.Errorf("log of %s: %v", name, err)
		}
	}
}

// TestRunAckMeasuresServer: a short run whose tablets acknowledge every event reports
// the server's CPU over the idle and the publish window, and what it stored in JetStream
// then: each event once in FEEDS, and the shown records in their bucket (flushed every
// 300 ms here, so a window of some seconds holds several flushes).
func TestRunAckMeasuresServer(t *testing.T) {
	exe := kioskfeedBinary(t)
	dir := t.TempDir()
	var progress bytes.Buffer
	logOnFailure(t, dir, &progress)

	const tablets, events = 100, 12
	res, err := Run(t.Context(), Options{
		Exe:          exe,
		Tablets:      tablets,
		PerWorker:    50,
		Events:       events,
		Rate:         4,
		Idle:         time.Second,
		Settle:       300 * time.Millisecond,
		Timeout:      3 * time.Minute,
		NoRestart:    true,
		NoNATS:       true,
		NoCentrifugo: true,
		Ack:          true,
		Dir:          dir,
		Progress:     &progress,
		ServerEnv:    []string{"KIOSKFEED_SHOWN_FLUSH_EVERY=300ms"},
	})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	raw, _ := json.Marshal(res)
	t.Logf("result: %s", raw)
	if res.Deliveries != tablets*events || res.Missing != 0 || res.Duplicates != 0 {
		t.Fatalf("deliveries %d (missing %d, repeated %d), want %d (0, 0)", res.Deliveries, res.Missing, res.Duplicates, tablets*events)
	}
	// 12 events at 4/s: the first and the last publish are 2.75 s apart.
	if res.FanoutWindowS < 2.75 {
		t.Errorf("FanoutWindowS = %g, want >= 2.75 (it holds every publish)", res.FanoutWindowS)
	}
	// The server read 1,200 deliveries' worth of sockets and stored 12 events with an
	// fsync each: more than nothing; and never more than every core the whole window.
	ceiling := float64(100*runtime.NumCPU()) + 5
	if res.FanoutServerCPUPct <= 0 || res.FanoutServerCPUPct > ceiling {
		t.Errorf("FanoutServerCPUPct = %g, want in (0, %g]", res.FanoutServerCPUPct, ceiling)
	}
	if want := res.FanoutServerCPUPct / 100 * res.FanoutWindowS * 1e6 / float64(res.Deliveries); res.FanoutServerCPUUsPerDelivery <= 0 || res.FanoutServerCPUUsPerDelivery > 1.01*want+1 || res.FanoutServerCPUUsPerDelivery < 0.99*want-1 {
		t.Errorf("FanoutServerCPUUsPerDelivery = %g, want the window's CPU over the deliveries, %g", res.FanoutServerCPUUsPerDelivery, want)
	}
	if res.IdleLeaseCPUPct < 0 || res.IdleLeaseCPUPct > ceiling || res.IdleServerCPUMs < 0 {
		t.Errorf("idle CPU %g %% (%g ms), want in [0, %g]", res.IdleLeaseCPUPct, res.IdleServerCPUMs, ceiling)
	}
	if res.IdleTailCPUPct < 0 || res.IdleTailCPUPct > ceiling || res.IdleTailS < 0.5 || res.IdleTailS > 1 {
		t.Errorf("idle tail CPU %g %% over %g s, want in [0, %g] over the idle's second half (0.5 s)", res.IdleTailCPUPct, res.IdleTailS, ceiling)
	}
	if got := res.FanoutJSWrites["FEEDS"]; got != events {
		t.Errorf("FEEDS stored %g messages in the publish window, want the %d events (all: %v)", got, events, res.FanoutJSWrites)
	}
	if got := res.FanoutJSWrites[shownStream]; got < 1 {
		t.Errorf("%s stored %g messages in the publish window, want the acks' flushes (all: %v)", shownStream, got, res.FanoutJSWrites)
	}
	if res.FanoutJSShownWritesPerS <= 0 || res.FanoutJSWritesPerS < res.FanoutJSShownWritesPerS+float64(events)/res.FanoutWindowS-0.01 {
		t.Errorf("JetStream writes %g/s, shown %g/s: want shown > 0 and all >= shown + events", res.FanoutJSWritesPerS, res.FanoutJSShownWritesPerS)
	}
}

// checkOrdered fails t unless p50 <= p90 <= p99 <= max, and max > 0 (a latency was
// recorded at all).
func checkOrdered(t *testing.T, what string, p50, p90, p99, maxMs float64) {
	t.Helper()
	if !(p50 <= p90 && p90 <= p99 && p99 <= maxMs) {
		t.Errorf("%s fan-out percentiles p50 %g, p90 %g, p99 %g, max %g: want ascending", what, p50, p90, p99, maxMs)
	}
	if maxMs <= 0 || p50 < 0 {
		t.Errorf("%s fan-out p50 %g, max %g ms: want latencies recorded", what, p50, maxMs)
	}
}

// TestCommandJSON runs "kioskfeed loadtest --json --quiet" as a user would and checks
// that stdout is exactly one JSON object with the headline figures, and that the
// default scratch directory is removed after a clean run.
func TestCommandJSON(t *testing.T) {
	exe := kioskfeedBinary(t)
	tmp := t.TempDir()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe, "loadtest", "--tablets", "12", "--per-worker", "6", "--events", "3", "--rate", "20", "--idle", "500ms", "--settle", "200ms", "--json", "--quiet")
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
	cmd.WaitDelay = 10 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("kioskfeed loadtest: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	out := stdout.String()
	line, ok := strings.CutSuffix(out, "\n")
	if !ok || strings.Contains(line, "\n") {
		t.Fatalf("stdout is not exactly one line:\n%q", out)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(line), &got); err != nil {
		t.Fatalf("stdout is not one JSON object: %v\n%s", err, line)
	}
	for _, key := range []string{"tablets", "rss_bytes_per_tablet", "fanout_p50_ms", "fanout_p99_ms", "fanout_max_ms", "nats_ws_fanout_p99_ms", "reconnect_all_s", "handshakes_per_s", "idle_lease_cpu_pct"} {
		if _, ok := got[key].(float64); !ok {
			t.Errorf("key %q = %#v, want a number", key, got[key])
		}
	}
	if n, _ := got["tablets"].(float64); n != 12 {
		t.Errorf("tablets = %v, want 12", got["tablets"])
	}
	if stderr.Len() > 0 {
		t.Errorf("stderr with --quiet and a clean run: %q, want nothing", stderr.String())
	}
	left, _ := filepath.Glob(filepath.Join(tmp, "kioskfeed-loadtest-*"))
	if len(left) > 0 {
		t.Errorf("scratch directories left after a clean run: %q", left)
	}
}

// TestRunReportsServerThatCannotStart makes the server under test refuse its
// configuration: Run must fail, say which process failed and where its log is, and
// start no worker.
func TestRunReportsServerThatCannotStart(t *testing.T) {
	exe := kioskfeedBinary(t)
	dir := t.TempDir()
	logOnFailure(t, dir, nil)
	res, err := Run(t.Context(), Options{
		Exe:       exe,
		Tablets:   4,
		PerWorker: 2,
		Timeout:   time.Minute,
		Dir:       dir,
		ServerEnv: []string{"KIOSKFEED_HEARTBEAT=abc"},
	})
	if err == nil {
		t.Fatal("Run with KIOSKFEED_HEARTBEAT=abc: no error, want the server's failure")
	}
	serverLog := filepath.Join(dir, "server-1.log")
	for _, want := range []string{"server-1", serverLog} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	raw, rerr := os.ReadFile(serverLog)
	if rerr != nil {
		t.Fatalf("server log: %v", rerr)
	}
	if !strings.Contains(string(raw), "KIOSKFEED_HEARTBEAT") {
		t.Errorf("server log %q does not name the bad setting", raw)
	}
	if res != nil && (res.Workers != 0 || res.Deliveries != 0) {
		t.Errorf("result after a failed start: %d workers, %d deliveries; want none", res.Workers, res.Deliveries)
	}
	if workers, _ := filepath.Glob(filepath.Join(dir, "worker-*.log")); len(workers) > 0 {
		t.Errorf("workers started although the server never did: %q", workers)
	}
}

// TestRunRefusesADirInUse: a --dir that holds a last run's files is refused before
// anything starts, and nothing in it is touched. A run there used to start its servers
// on the last run's event log, whose event ids its publishes repeat: every publish was
// answered as a duplicate and every tablet "missed" every event.
func TestRunRefusesADirInUse(t *testing.T) {
	t.Parallel()
	scratch := t.TempDir()
	dir := filepath.Join(scratch, "run")
	if err := os.MkdirAll(filepath.Join(dir, "nats-1"), 0o700); err != nil {
		t.Fatal(err)
	}
	kept := filepath.Join(dir, "result.json")
	if err := os.WriteFile(kept, []byte(`{"tablets":1}`), 0o600); err != nil {
		t.Fatal(err)
	}
	var progress bytes.Buffer
	res, err := Run(t.Context(), Options{Exe: filepath.Join(scratch, "no-such-kioskfeed"), Dir: dir, Progress: &progress})
	want := "dir must be new or empty, not " + dir + ", which holds nats-1 and 1 more (a run there would start on the last run's data)"
	if err == nil || err.Error() != want {
		t.Fatalf("Run in a used dir: %v, want %q", err, want)
	}
	if res != nil || progress.Len() > 0 {
		t.Errorf("Run started something: result %+v, progress %q", res, progress.String())
	}
	if raw, err := os.ReadFile(kept); err != nil || string(raw) != `{"tablets":1}` {
		t.Errorf("the last run's result.json: %q, %v; want it untouched", raw, err)
	}
	// An empty one is taken (and, failing here for want of a binary, left in place).
	empty := filepath.Join(scratch, "empty")
	if err := os.Mkdir(empty, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := Run(t.Context(), Options{Exe: filepath.Join(scratch, "no-such-kioskfeed"), Dir: empty, Progress: io.Discard}); err == nil || strings.Contains(err.Error(), "dir must be") {
		t.Errorf("Run in an empty dir: %v, want it taken (and a failure to start the missing binary)", err)
	}
}

// TestRunRefusesBadOptions checks that each out-of-range option is refused by name
// before anything starts: no process, no directory, no progress line.
func TestRunRefusesBadOptions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		opts Options
		want string
	}{
		{name: "too many tablets", opts: Options{Tablets: 20000}, want: "tablets must be 1 to 19000, not 20000"},
		{name: "negative tablets", opts: Options{Tablets: -1}, want: "tablets must be 1 to 19000, not -1"},
		{name: "per-worker too large", opts: Options{PerWorker: 15001}, want: "per-worker must be 1 to 15000, not 15001"},
		{name: "negative events", opts: Options{Events: -3}, want: "events must be 1 to 10000, not -3"},
		{name: "too many events", opts: Options{Events: 10001}, want: "events must be 1 to 10000, not 10001"},
		{name: "negative rate", opts: Options{Rate: -1}, want: "rate must be above 0 and at most 10000 per second, not -1"},
		{name: "rate too high", opts: Options{Rate: 20000}, want: "rate must be above 0 and at most 10000 per second, not 20000"},
		{name: "payload too small", opts: Options{Payload: 10}, want: "payload must be 32 to 60000 bytes, not 10"},
		{name: "payload too large", opts: Options{Payload: 60001}, want: "payload must be 32 to 60000 bytes, not 60001"},
		{name: "negative idle", opts: Options{Idle: -time.Second}, want: "idle must not be negative, not -1s"},
		{name: "negative settle", opts: Options{Settle: -time.Millisecond}, want: "settle must not be negative, not -1ms"},
		{name: "negative timeout", opts: Options{Timeout: -time.Minute}, want: "timeout must not be negative, not -1m0s"},
		{name: "unknown scenario", opts: Options{Scenario: "flood"}, want: `scenario must be full, outage or storm, not "flood"`},
		{name: "share of all", opts: Options{Scenario: ScenarioOutage, Share: 1}, want: "share must be above 0 and below 1, not 1"},
		{name: "negative share", opts: Options{Scenario: ScenarioStorm, Share: -0.5}, want: "share must be above 0 and below 1, not -0.5"},
		{name: "heartbeat below a second", opts: Options{Scenario: ScenarioOutage, Heartbeat: 500 * time.Millisecond}, want: "heartbeat must be whole seconds from 1s to 5m, not 500ms"},
		{name: "negative outage", opts: Options{Scenario: ScenarioOutage, OutageFor: -time.Second}, want: "outage and drop wait must not be negative, not -1s and 29s"},
		{name: "too far behind", opts: Options{Scenario: ScenarioStorm, Behind: 100001}, want: "behind must be 1 to 100000, not 100001"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			scratch := t.TempDir()
			opts := tt.opts
			// An Exe that cannot start and a Dir that does not exist yet: starting
			// anything would show in the error or on the disk.
			opts.Exe = filepath.Join(scratch, "no-such-kioskfeed")
			opts.Dir = filepath.Join(scratch, "run")
			var progress bytes.Buffer
			opts.Progress = &progress
			res, err := Run(t.Context(), opts)
			if err == nil {
				t.Fatalf("Run(%+v): no error, want %q", tt.opts, tt.want)
			}
			if got := err.Error(); got != tt.want {
				t.Errorf("Run error = %q, want %q", got, tt.want)
			}
			if res != nil {
				t.Errorf("Run result = %+v, want nil", res)
			}
			if _, err := os.Stat(opts.Dir); !os.IsNotExist(err) {
				t.Errorf("Run made its directory (stat: %v) although the options were refused", err)
			}
			if progress.Len() > 0 {
				t.Errorf("progress = %q, want nothing", progress.String())
			}
		})
	}
}

func TestPercentiles(t *testing.T) {
	t.Parallel()
	ms := func(vals ...int) []int32 { // milliseconds as the µs the workers report
		out := make([]int32, len(vals))
		for i, v := range vals {
			out[i] = int32(v * 1000)
		}
		return out
	}
	seq := func(n int) []int32 {
		out := make([]int32, n)
		for i := range out {
			out[i] = int32((n - i) * 1000) // descending: percentiles must sort
		}
		return out
	}
	tests := []struct {
		name string
		lat  []int32
		want [4]float64
	}{
		{name: "none", lat: nil, want: [4]float64{0, 0, 0, 0}},
		{name: "one", lat: ms(7), want: [4]float64{7, 7, 7, 7}},
		{name: "two", lat: ms(9, 1), want: [4]float64{1, 9, 9, 9}},
		{name: "ten", lat: seq(10), want: [4]float64{5, 9, 10, 10}},
		{name: "hundred", lat: seq(100), want: [4]float64{50, 90, 99, 100}},
		{name: "thousand", lat: seq(1000), want: [4]float64{500, 900, 990, 1000}},
		{name: "one slow among equals", lat: ms(2, 2, 2, 2, 2, 2, 2, 2, 2, 40), want: [4]float64{2, 2, 40, 40}},
		{name: "sub-millisecond", lat: []int32{250, 750, 1500, 500}, want: [4]float64{0.5, 1.5, 1.5, 1.5}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := append([]int32(nil), tt.lat...)
			if got := percentiles(in); got != tt.want {
				t.Errorf("percentiles(%v) = %v, want %v", tt.lat, got, tt.want)
			}
			for i := range in {
				if in[i] != tt.lat[i] {
					t.Fatalf("percentiles changed its input: %v, was %v", in, tt.lat)
				}
			}
		})
	}
}

func TestPayload(t *testing.T) {
	t.Parallel()
	for _, size := range []int{32, 64, 100, 256, 1000, 60000} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			before := time.Now().UnixNano()
			raw := payload(size, 3, 17)
			after := time.Now().UnixNano()
			// Exact once the size leaves room for the fields; the smallest sizes
			// allowed still carry them, so they come out a little larger.
			if size >= 64 && len(raw) != size {
				t.Errorf("len = %d, want %d", len(raw), size)
			}
			if len(raw) < size || len(raw) > max(size, 64) {
				t.Errorf("len = %d, want %d to %d", len(raw), size, max(size, 64))
			}
			var got struct {
				P   int    `json:"p"`
				N   int    `json:"n"`
				T   int64  `json:"t"`
				Pad string `json:"pad"`
			}
			dec := json.NewDecoder(bytes.NewReader(raw))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&got); err != nil {
				t.Fatalf("payload is not the expected JSON: %v\n%s", err, raw)
			}
			if got.P != 3 || got.N != 17 {
				t.Errorf("p, n = %d, %d, want 3, 17", got.P, got.N)
			}
			if got.T < before || got.T > after {
				t.Errorf("t = %d, want the send time, between %d and %d", got.T, before, after)
			}
		})
	}
}

// TestWorkerConnectDialsFromSources checks that a worker's tablets dial from the
// addresses the connect command gives, spread over all of them, as its NATS
// subscribers do: one address's ephemeral ports would otherwise bound a large run. The
// listener is plain TCP, so no tablet ever syncs; only where it dials from matters.
func TestWorkerConnectDialsFromSources(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu   sync.Mutex
		seen = map[string]int{}
	)
	accepted := make(chan struct{})
	go func() {
		defer close(accepted)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
			mu.Lock()
			seen[host]++
			mu.Unlock()
			_ = c.Close()
		}
	}()

	ctx, cancel := context.WithCancel(t.Context())
	w := &worker{ctx: ctx}
	const n = 8
	for range n {
		key, err := client.NewKey()
		if err != nil {
			t.Fatal(err)
		}
		dev := client.NewDevice("http://"+l.Addr().String(), key)
		dev.SetCredentials(client.Credentials{DeviceID: "dev_loadtest", Token: "tok", Expires: time.Now().Add(time.Hour)}) // no refresh before the dial
		w.tablets = append(w.tablets, &tablet{dev: dev, src: net.IPv4(127, 0, 0, 1), firstSynced: make(chan struct{})})
	}
	srcs := sources(2, 4)
	done := make(chan reply, 1)
	go func() {
		done <- w.do(command{Op: "connect", WSURL: "ws://" + l.Addr().String() + "/ws", Addr: l.Addr().String(), Origin: "http://" + l.Addr().String(), Sources: srcs, Ramp: n, Timeout: timeoutMS(2 * time.Minute)})
	}()
	defer func() {
		cancel()
		<-done
		w.shutdown()
		_ = l.Close()
		<-accepted
	}()

	want := map[string]bool{}
	for _, s := range srcs {
		want[s] = true
	}
	for deadline := time.Now().Add(time.Minute); ; {
		mu.Lock()
		got := maps.Clone(seen)
		mu.Unlock()
		for host := range got {
			if !want[host] {
				t.Fatalf("a tablet dialled from %s, want one of %q (seen %v)", host, srcs, got)
			}
		}
		if len(got) == len(srcs) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("dialled from %v after a minute, want all of %q", got, srcs)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
