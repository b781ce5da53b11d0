//go:build faults

package loadtest

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestFaultClusterRun runs "kioskfeed loadtest --instances 3 --nats-cluster 3" as a
// user would, at small N: three instances on a real 3-node NATS cluster (child
// processes on loopback), the tablets spread over them, a fan-out, then the last
// instance SIGKILLed while events flow. Every tablet gets every event once and in order,
// before and across the move; no lease conflicts while each tablet has one socket;
// every one of the killed instance's tablets is back, on the survivors; and the JSON
// holds the cluster's figures. It is behind the faults tag (task test:faults, CI): it
// takes over a minute, most of it the dead instance's leases lapsing.
func TestFaultClusterRun(t *testing.T) {
	exe := kioskfeedBinary(t)
	dir := t.TempDir()
	logOnFailure(t, dir, nil)
	const tablets, events, instances = 150, 4, 3
	ctx, cancel := context.WithTimeout(t.Context(), 8*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, exe, "loadtest", "--instances", "3", "--nats-cluster", "3", "--tablets", "150",
		"--per-worker", "50", "--events", "4", "--rate", "5", "--idle", "1ms", "--settle", "200ms",
		"--server-env", "KIOSKFEED_LEASE_TTL=5s", "--dir", dir, "--json")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	t.Logf("progress:\n%s", stderr.String())
	if err != nil {
		t.Fatalf("kioskfeed loadtest: %v\nstdout: %s", err, stdout.String())
	}
	var res Result
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		t.Fatalf("stdout is not one JSON result: %v\n%s", err, stdout.String())
	}
	var raw struct {
		Cluster map[string]json.RawMessage `json:"cluster"`
	}
	_ = json.Unmarshal(stdout.Bytes(), &raw)
	for _, key := range []string{"instances", "nats_nodes", "replicas", "fanout_p50_ms", "fanout_p99_ms", "missing", "duplicates",
		"lease_conflicts", "closes_4409", "per_instance", "nats", "kill", "open_files_limit"} {
		if _, ok := raw.Cluster[key]; !ok {
			t.Errorf("JSON cluster has no %q", key)
		}
	}
	c := res.Cluster
	if c == nil {
		t.Fatalf("no cluster figures in %s", stdout.String())
	}
	counts := []struct {
		name      string
		got, want int
	}{
		{"Tablets", res.Tablets, tablets},
		{"Instances", c.Instances, instances},
		{"NATSNodes", c.NATSNodes, 3},
		{"Replicas", c.Replicas, 3},
		{"Workers", c.Workers, 3},
		{"Deliveries", c.Deliveries, tablets * events},
		{"Missing", c.Missing, 0},
		{"Duplicates", c.Duplicates, 0},
		{"LeaseConflicts", c.LeaseConflicts, 0},
		{"Closes4409", c.Closes4409, 0},
		{"PerInstance", len(c.PerInstance), instances},
		{"NATS", len(c.NATS), 3},
	}
	for _, p := range c.PerInstance {
		counts = append(counts, []struct {
			name      string
			got, want int
		}{
			{p.Name + ".Tablets", p.Tablets, tablets / instances},
			{p.Name + ".Deliveries", p.Deliveries, tablets / instances * events},
			{p.Name + ".Missing", p.Missing, 0},
		}...)
		if p.RSSAfterBytes <= 0 || p.FanoutP99Ms <= 0 || p.FanoutP50Ms > p.FanoutP99Ms {
			t.Errorf("%s: RSS after %d, fan-out p50 %g p99 %g; want RSS > 0 and 0 < p50 <= p99", p.Name, p.RSSAfterBytes, p.FanoutP50Ms, p.FanoutP99Ms)
		}
	}
	for _, n := range c.NATS {
		if n.RSSAfterBytes <= 0 {
			t.Errorf("%s: RSS after %d, want > 0", n.Name, n.RSSAfterBytes)
		}
	}
	checkOrdered(t, "cluster", c.FanoutP50Ms, c.FanoutP90Ms, c.FanoutP99Ms, c.FanoutMaxMs)
	k := c.Kill
	if k == nil {
		t.Fatalf("no kill figures (skipped: %q)", c.KillSkipped)
	}
	counts = append(counts, []struct {
		name      string
		got, want int
	}{
		{"Kill.Tablets", k.Tablets, tablets / instances},
		{"Kill.Unsynced", k.Unsynced, 0},
		{"Kill.MovedMissing", k.MovedMissing, 0},
		{"Kill.MovedDuplicates", k.MovedDuplicates, 0},
		{"Kill.StayedMissing", k.StayedMissing, 0},
		{"Kill.StayedDuplicates", k.StayedDuplicates, 0},
		{"Kill.SurvivorConnections", k.SurvivorConnections, tablets},
		{"Kill.SurvivorHandshakes[ok]", k.SurvivorHandshakes["ok"], tablets / instances},
	}...)
	for _, cnt := range counts {
		if cnt.got != cnt.want {
			t.Errorf("%s = %d, want %d", cnt.name, cnt.got, cnt.want)
		}
	}
	if k.Instance != "instance-2" || k.Events < 3 || k.MovedAllS <= 0 || k.FirstSyncedS > k.MovedAllS {
		t.Errorf("kill of %q: %d events, first synced %g s, all %g s; want instance-2, at least 3 events, 0 < first <= all",
			k.Instance, k.Events, k.FirstSyncedS, k.MovedAllS)
	}
	// Every moved tablet saw its socket end without a close frame (the kill); a failed
	// attempt after it counts one more.
	if k.Closes["1006"] < tablets/instances {
		t.Errorf("kill: the moved tablets saw %d closes without a close frame, want at least %d (one each)", k.Closes["1006"], tablets/instances)
	}
	if k.LeaseConflicts != k.Closes4409 || k.LeaseConflicts != k.SurvivorHandshakes["duplicate"] {
		t.Errorf("kill: %d lease conflicts, %d 4409s seen, %d duplicate handshakes; want the same count three ways", k.LeaseConflicts, k.Closes4409, k.SurvivorHandshakes["duplicate"])
	}
	if _, err := os.Stat(filepath.Join(dir, "result.json")); err != nil {
		t.Errorf("result.json beside the logs: %v", err)
	}
}
