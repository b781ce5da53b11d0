package loadtest

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestClusterRefusesBadOptions: a cluster run's options are checked before anything
// starts, with errors that say what to change, and the tablets bound is per instance.
func TestClusterRefusesBadOptions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		opts Options
		want string
	}{
		{name: "too many instances", opts: Options{Instances: 9}, want: "instances must be 1 to 8, not 9"},
		{name: "negative instances", opts: Options{Instances: -1}, want: "instances and nats-cluster must not be negative, not -1 and 0"},
		{name: "even NATS cluster", opts: Options{Instances: 3, NATSCluster: 2}, want: "nats-cluster must be 1, 3 or 5 nodes (a quorum survives one loss from 3), not 2"},
		{name: "with a scenario", opts: Options{Instances: 3, Scenario: ScenarioStorm}, want: "a cluster run (instances, nats-cluster) is a run of its own, not with scenario storm"},
		{name: "fewer tablets than instances", opts: Options{Instances: 3, Tablets: 2}, want: "a cluster run needs a tablet per instance at least: 2 tablets for 3 instances"},
		{name: "over the per-instance bound", opts: Options{Instances: 3, Tablets: 57001}, want: "tablets must be 1 to 57000 (19000 per instance), not 57001"},
		{name: "one instance on a cluster", opts: Options{NATSCluster: 3, Tablets: 19001}, want: "tablets must be 1 to 19000 (19000 per instance), not 19001"},
	}
	for _, tt := range tests {
		opts := tt.opts
		opts.Exe = "/nonexistent/kioskfeed" // defaults() is all Run does before it starts anything
		if err := opts.defaults(); err == nil || err.Error() != tt.want {
			t.Errorf("%s: defaults() = %v, want %q", tt.name, err, tt.want)
		}
	}
	// Run refuses them the same way, before it makes its directory.
	dir := filepath.Join(t.TempDir(), "run")
	if res, err := Run(t.Context(), Options{Instances: 9, Exe: "/nonexistent/kioskfeed", Dir: dir}); err == nil || res != nil {
		t.Errorf("Run with 9 instances = %v, %v; want no result and an error", res, err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("Run made its directory (stat: %v) although the options were refused", err)
	}
}

// TestClusterLayout: the workers are a multiple of the instances and every tablet has
// an instance; a kill whose survivors could not hold the moved sockets under the
// open-files limit is skipped with the figures that say why, and one that fits is not.
func TestClusterLayout(t *testing.T) {
	t.Parallel()
	layout := func(tablets, perWorker, instances, limit int) *clusterRun {
		o := Options{Tablets: tablets, PerWorker: perWorker, Instances: instances}
		cr := &clusterRun{run: &run{opts: o}, limit: limit}
		cr.layout()
		return cr
	}
	cr := layout(50000, 5000, 3, 20000)
	sum, workers := 0, 0
	for k, in := range cr.inst {
		sum += in.tablets
		workers += len(in.workers)
		for _, i := range in.workers {
			if cr.instanceOf(i) != k {
				t.Errorf("worker %d listed under instance %d, instanceOf says %d", i, k, cr.instanceOf(i))
			}
		}
		if in.tablets < 16666 || in.tablets > 16667 {
			t.Errorf("%s takes %d of 50000 tablets, want 16666 or 16667", in.name, in.tablets)
		}
	}
	if sum != 50000 || workers != 12 {
		t.Errorf("%d tablets on %d workers, want 50000 on 12 (10 rounded up to a multiple of 3)", sum, workers)
	}
	if err := cr.checkFiles(); err != nil {
		t.Errorf("checkFiles: %v, want none (16667 + 1000 fits 20000)", err)
	}
	want := "survivors would need 25000 sockets each (26000 files with the margin), the open-files limit is 20000"
	if got := cr.killSkip(); got != want {
		t.Errorf("killSkip at 50000 = %q, want %q", got, want)
	}
	if got := layout(36000, 5000, 3, 20000).killSkip(); got != "" {
		t.Errorf("killSkip at 36000 = %q, want none (18000 + 1000 fits 20000)", got)
	}
	if got := layout(100, 5000, 1, 20000).killSkip(); !strings.Contains(got, "one instance") {
		t.Errorf("killSkip with one instance = %q, want it to say there is one instance", got)
	}
	if err := layout(57000, 5000, 3, 19500).checkFiles(); err == nil || !strings.Contains(err.Error(), "the open-files limit is 19500") {
		t.Errorf("checkFiles with 19000 per instance under a limit of 19500 = %v, want a refusal naming the limit", err)
	}
	if got := layout(4, 1, 3, 20000); len(got.inst[0].workers)+len(got.inst[1].workers)+len(got.inst[2].workers) != 6 {
		t.Errorf("4 tablets at 1 per worker on 3 instances: want 6 workers (a multiple of 3)")
	}
	// A worker's backends start with its own instance and hold every instance once.
	cr = layout(150, 50, 3, 20000)
	for k, in := range cr.inst {
		in.port = 1000 + k
	}
	b := cr.backends(4) // instance 1
	if strings.Join(b, ",") != "127.0.0.1:1001,127.0.0.1:1002,127.0.0.1:1000" {
		t.Errorf("backends(4) = %v, want instance 1's first, then 2 and 0", b)
	}
}

// TestNextBackend: a tablet whose instance cannot be dialled goes to one of the others,
// spread over them; from there on to the next in turn; with one instance it stays.
func TestNextBackend(t *testing.T) {
	t.Parallel()
	seen := map[int]int{}
	for range 400 {
		seen[nextBackend(0, 3)]++
	}
	if len(seen) != 2 || seen[1] < 100 || seen[2] < 100 {
		t.Errorf("from its own instance of 3: %v, want instances 1 and 2, both often", seen)
	}
	if got := nextBackend(1, 3); got != 2 {
		t.Errorf("nextBackend(1, 3) = %d, want 2", got)
	}
	if got := nextBackend(2, 3); got != 0 {
		t.Errorf("nextBackend(2, 3) = %d, want 0", got)
	}
	if got := nextBackend(0, 1); got != 0 {
		t.Errorf("nextBackend(0, 1) = %d, want 0", got)
	}
	if got := nextBackend(0, 2); got != 1 {
		t.Errorf("nextBackend(0, 2) = %d, want 1", got)
	}
}

// TestDialBackendsFallsOver: a tablet whose instance refuses connections (a dead
// process's port) reaches the next one in the same dial and stays there.
func TestDialBackendsFallsOver(t *testing.T) {
	t.Parallel()
	live, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	gone, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := gone.Addr().String()
	gone.Close()
	tb := &tablet{cfg: &connectConfig{addrs: []string{dead, live.Addr().String()}}}
	for range 2 {
		c, err := tb.dialBackends(t.Context(), &net.Dialer{Timeout: 5 * time.Second}, "tcp")
		if err != nil {
			t.Fatalf("dialBackends: %v, want the live instance", err)
		}
		if got := c.RemoteAddr().String(); got != live.Addr().String() {
			t.Errorf("dialled %s, want the live %s", got, live.Addr())
		}
		c.Close()
		if tb.backend != 1 {
			t.Errorf("backend = %d after the fall-over, want 1", tb.backend)
		}
	}
	// Every instance dead: one error naming each, after one try each.
	tb = &tablet{cfg: &connectConfig{addrs: []string{dead, dead}}}
	if _, err := tb.dialBackends(t.Context(), &net.Dialer{Timeout: 5 * time.Second}, "tcp"); err == nil || strings.Count(err.Error(), dead) != 2 {
		t.Errorf("dialBackends with every instance dead: %v, want an error naming both tries", err)
	}
}

// TestRunNATSNodeAlone: a "cluster" of one node (--nats-cluster 1) serves JetStream
// standalone; with its own route alone it would wait for peers that never come and
// elect no meta leader.
func TestRunNATSNodeAlone(t *testing.T) {
	port, err1 := freePort()
	route, err2 := freePort()
	if err := errors.Join(err1, err2); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- RunNATSNode(ctx, NATSNodeOptions{Name: "alone", Port: port, ClusterPort: route,
			Routes: []string{"nats-route://127.0.0.1:" + strconv.Itoa(route)}, StoreDir: t.TempDir()})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("RunNATSNode: %v", err)
		}
	}()
	deadline := time.Now().Add(30 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		nc, err := nats.Connect("nats://127.0.0.1:"+strconv.Itoa(port), nats.Timeout(time.Second))
		if err == nil {
			js, _ := jetstream.New(nc)
			actx, acancel := context.WithTimeout(ctx, 2*time.Second)
			_, err = js.AccountInfo(actx)
			acancel()
			nc.Close()
			if err == nil {
				return
			}
		}
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("JetStream on a lone node did not answer within 30s: %v", last)
}
