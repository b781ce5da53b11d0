package loadtest

import (
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
	"time"
)

func TestReadProcSelf(t *testing.T) {
	before, err := readProc(os.Getpid())
	if err != nil {
		t.Fatalf("readProc(self): %v", err)
	}
	if before.RSS <= 0 {
		t.Errorf("RSS = %d, want > 0", before.RSS)
	}
	if before.CPU < 0 {
		t.Errorf("CPU = %s, want >= 0", before.CPU)
	}
	// Burn CPU until /proc shows it: utime and stime are the fields read. Bounded by
	// a deadline; a slow machine only takes longer.
	sink := 0
	deadline := time.Now().Add(30 * time.Second)
	for {
		for i := range 5_000_000 {
			sink += i
		}
		after, err := readProc(os.Getpid())
		if err != nil {
			t.Fatalf("readProc(self): %v", err)
		}
		if after.CPU > before.CPU {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("CPU stayed at %s after 30s of spinning (sink %d)", after.CPU, sink)
		}
	}
}

// TestCPUWindowSelf: a window over this process's own spinning shows CPU used, no more
// than the wall time on every core, and Pct and Per agree with it.
func TestCPUWindowSelf(t *testing.T) {
	w, err := StartCPU(os.Getpid())
	if err != nil {
		t.Fatalf("StartCPU(self): %v", err)
	}
	sink := 0
	var span CPUSpan
	for deadline := time.Now().Add(30 * time.Second); ; {
		for i := range 5_000_000 {
			sink += i
		}
		if span, err = w.End(); err != nil {
			t.Fatalf("End: %v", err)
		}
		if span.CPU >= 50*time.Millisecond {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("CPU %s after 30s of spinning (sink %d)", span.CPU, sink)
		}
	}
	// /proc counts in 10 ms ticks: allow one tick per core over the wall time.
	if limit := span.Wall*time.Duration(runtime.NumCPU()) + 10*time.Millisecond*time.Duration(runtime.NumCPU()); span.CPU > limit {
		t.Errorf("CPU %s over a wall time of %s: more than every core", span.CPU, span.Wall)
	}
	if got, want := span.Pct(), 100*span.CPU.Seconds()/span.Wall.Seconds(); got != want || got <= 0 {
		t.Errorf("Pct() = %g, want %g", got, want)
	}
	if got := span.Per(4); got != span.CPU/4 {
		t.Errorf("Per(4) = %s, want %s", got, span.CPU/4)
	}
	if got := span.Per(0); got != 0 {
		t.Errorf("Per(0) = %s, want 0", got)
	}
	if got := (CPUSpan{CPU: time.Second}).Pct(); got != 0 {
		t.Errorf("Pct of no wall time = %g, want 0", got)
	}
}

func TestCPUWindowMissing(t *testing.T) {
	if _, err := StartCPU(-1); err == nil {
		t.Error("StartCPU(-1): no error, want one")
	}
	if _, err := ProcCPU(-1); err == nil {
		t.Error("ProcCPU(-1): no error, want one")
	}
}

// TestStreamDeltas: the messages each stream stored between two scrapes, by name; a
// stream that stored nothing, a label that is not a stream's and a new stream.
func TestStreamDeltas(t *testing.T) {
	got := streamDeltas(
		map[string]float64{`stream="FEEDS"`: 10, `stream="KV_kioskfeed_shown"`: 3, `stream="AUDIT"`: 7},
		map[string]float64{`stream="FEEDS"`: 30, `stream="KV_kioskfeed_shown"`: 8, `stream="AUDIT"`: 7, `stream="NEW"`: 2, `other="x"`: 5},
	)
	want := map[string]float64{"FEEDS": 20, "KV_kioskfeed_shown": 5, "NEW": 2}
	if !maps.Equal(got, want) {
		t.Errorf("streamDeltas = %v, want %v", got, want)
	}
}

func TestReadProcMissing(t *testing.T) {
	if _, err := readProc(-1); err == nil {
		t.Error("readProc(-1): no error, want one")
	}
}

// TestReadProcOddName reads a process whose command name holds spaces and a ")", as
// stat(5) allows: the fields must still be found after the last ")".
func TestReadProcOddName(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// A symlink names the process (comm is the base name execve was given).
	odd := filepath.Join(t.TempDir(), "a) 1 2 3 4 5")
	if err := os.Symlink(self, odd); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(odd)
	cmd.Env = append(os.Environ(), "LOADTEST_HELPER=block")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start helper: %v", err)
	}
	t.Cleanup(func() {
		_ = stdin.Close()
		_ = cmd.Wait()
	})
	comm, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(cmd.Process.Pid), "comm"))
	if err != nil {
		t.Fatal(err)
	}
	if got := string(comm); got != "a) 1 2 3 4 5\n" {
		t.Fatalf("helper's comm = %q, want the odd name", got)
	}
	st, err := readProc(cmd.Process.Pid)
	if err != nil {
		t.Fatalf("readProc: %v", err)
	}
	if st.RSS <= 0 {
		t.Errorf("RSS = %d, want > 0", st.RSS)
	}
	// A process that has only started and now blocks has used well under a minute of
	// CPU; a field misread (flags, page faults) shows as hours.
	if st.CPU < 0 || st.CPU > time.Minute {
		t.Errorf("CPU = %s, want a fresh process's few milliseconds", st.CPU)
	}
}

// TestSources checks that every worker's dial addresses are loopback, distinct within
// the worker and from every other worker's, up to the most workers the options allow.
func TestSources(t *testing.T) {
	t.Parallel()
	const perWorker = 4
	maxWorkers := 19000 // tablets at most 19000, per-worker at least 1
	seen := make(map[string]int, maxWorkers*perWorker)
	for w := range maxWorkers {
		got := sources(w, perWorker)
		if len(got) != perWorker {
			t.Fatalf("sources(%d, %d) gave %d addresses, want %d", w, perWorker, len(got), perWorker)
		}
		for _, s := range got {
			ip := net.ParseIP(s)
			if ip == nil || ip.To4() == nil || !ip.IsLoopback() {
				t.Fatalf("sources(%d) holds %q, want an IPv4 loopback address", w, s)
			}
			if s == "127.0.0.1" {
				t.Fatalf("sources(%d) holds 127.0.0.1, the servers' own address", w)
			}
			if other, dup := seen[s]; dup {
				t.Fatalf("sources(%d) and sources(%d) share %s", w, other, s)
			}
			seen[s] = w
		}
	}
}
