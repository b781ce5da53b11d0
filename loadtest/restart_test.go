package loadtest

import (
	"bytes"
	"math"
	"testing"
	"time"
)

// TestRunBreaksTheRestartDown: the restart's figures come in their parts (drain,
// start, the tablets' first attempts after the 1012, the attempts that brought them
// back, the handshakes), each present and in causal order, and they add up to the
// total. No wall-time bound: speed is the tool's output, not the test's.
func TestRunBreaksTheRestartDown(t *testing.T) {
	exe := kioskfeedBinary(t)
	dir := t.TempDir()
	var progress bytes.Buffer
	logOnFailure(t, dir, &progress)
	res, err := Run(t.Context(), Options{
		Exe: exe, Tablets: 20, PerWorker: 10, Events: 2, Rate: 20, Idle: time.Second,
		Settle: 300 * time.Millisecond, Timeout: 3 * time.Minute, Dir: dir, Progress: &progress,
		NoNATS: true, NoCentrifugo: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	rs := res.Restart
	if rs == nil {
		t.Fatal("no restart figures")
	}
	t.Logf("%+v", *rs)
	if rs.DrainS <= 0 || rs.StartS <= 0 || math.Abs(rs.ReadyS-(rs.DrainS+rs.StartS)) > 1e-6 {
		t.Fatalf("drain %v + start %v, ready at %v: want both measured, adding up", rs.DrainS, rs.StartS, rs.ReadyS)
	}
	if rs.JitterFirstS <= 0 || rs.JitterLastS < rs.JitterFirstS || math.Abs(rs.JitterS-(rs.JitterLastS-rs.JitterFirstS)) > 1e-6 {
		t.Fatalf("first attempts after the 1012 at %v–%v (window %v)", rs.JitterFirstS, rs.JitterLastS, rs.JitterS)
	}
	if rs.BackFirstS < rs.JitterFirstS || rs.BackLastS < rs.BackFirstS || rs.BackLastS > res.ReconnectAllS {
		t.Fatalf("attempts that came back at %v–%v, first attempts from %v, all synced at %v", rs.BackFirstS, rs.BackLastS, rs.JitterFirstS, res.ReconnectAllS)
	}
	if rs.SyncedFirstS <= rs.BackFirstS || rs.SyncedFirstS > res.ReconnectAllS || rs.HandshakesPerS <= 0 ||
		math.Abs(rs.HandshakesS-(res.ReconnectAllS-rs.SyncedFirstS)) > 1e-6 {
		t.Fatalf("synced at %v–%v, handshakes %v s (%v/s)", rs.SyncedFirstS, res.ReconnectAllS, rs.HandshakesS, rs.HandshakesPerS)
	}
}
