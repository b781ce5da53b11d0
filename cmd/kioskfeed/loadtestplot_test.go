package main

import (
	"bytes"
	"encoding/json"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kioskfeed/kioskfeed/loadtest"
)

// writeResult writes a full run's result at n tablets, as --json prints it.
func writeResult(t *testing.T, path string, n int, p99 float64) {
	t.Helper()
	r := loadtest.Result{Tablets: n, Scenario: loadtest.ScenarioFull, Deliveries: 5 * n, FanoutP99Ms: p99,
		ServerRSSPairedBytes: 50 << 20, ServerRSSAfterConnectBytes: 50<<20 + int64(n)*16<<10,
		NATSDeliveries: 5 * n, NATSWSFanoutP99Ms: 2 * p99, NATSWSRSSBytesPerSub: 48 << 10,
		Centrifugo: &loadtest.PeerResult{Server: "centrifugo " + loadtest.CentrifugoVersion, Deliveries: 5 * n, FanoutP99Ms: 1.5 * p99, RSSBytesPerSub: 46 << 10}}
	raw, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, append(raw, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestLoadtestPlotWritesAPNG(t *testing.T) {
	dir := t.TempDir()
	var files []string
	for i, n := range []int{1000, 10000, 10000, 18000} {
		f := filepath.Join(dir, "r"+string(rune('a'+i))+".json")
		writeResult(t, f, n, float64(100+50*i))
		files = append(files, f)
	}
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"flags first", append([]string{"-o", filepath.Join(dir, "a.png"), "--title", "2 vCPU VM"}, files...)},
		{"flags after the files", append(append([]string{}, files...), "-o", filepath.Join(dir, "b.png"))},
		{"a file named twice", append(append([]string{"-o", filepath.Join(dir, "c.png")}, files...), files[0])},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if err := run(t.Context(), append([]string{"loadtest", "plot"}, tc.args...), env(nil), &stdout, &stderr); err != nil {
				t.Fatalf("loadtest plot: %v\n%s", err, stderr.String())
			}
			out := tc.args[slices.Index(tc.args, "-o")+1]
			if !strings.Contains(stdout.String(), out) || !strings.Contains(stdout.String(), "4 runs") {
				t.Errorf("stdout %q: want the PNG's path and 4 runs", stdout.String())
			}
			f, err := os.Open(out)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			img, err := png.Decode(f)
			if err != nil {
				t.Fatalf("%s does not decode: %v", out, err)
			}
			if got := img.Bounds().Size(); got != image.Pt(loadtest.PlotWidth, loadtest.PlotHeight) {
				t.Errorf("size %v, want %dx%d", got, loadtest.PlotWidth, loadtest.PlotHeight)
			}
		})
	}
}

// TestLoadtestPlotBadInput: each mistake is an error that says what is wrong, a
// non-zero exit code, no PNG, and no panic.
func TestLoadtestPlotBadInput(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.json")
	writeResult(t, good, 1000, 100)
	notResult := filepath.Join(dir, "notes.json")
	if err := os.WriteFile(notResult, []byte(`{"hello": "world"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	garbage := filepath.Join(dir, "garbage.json")
	if err := os.WriteFile(garbage, []byte("\x89PNG not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A file that opens but cannot be read, for root too: a run directory whose
	// result.json is a directory (read: is a directory).
	unreadable := filepath.Join(dir, "run", "result.json")
	if err := os.MkdirAll(unreadable, 0o755); err != nil {
		t.Fatal(err)
	}
	absent := filepath.Join(dir, "absent.json")
	out := filepath.Join(dir, "out.png")
	for _, tc := range []struct {
		name     string
		args     []string
		wantCode int
		wantMsg  string
	}{
		{"no files", []string{"-o", out}, 2, "at least one result file"},
		{"absent file", []string{"-o", out, good, absent}, 1, absent},
		{"unreadable", []string{"-o", out, filepath.Dir(unreadable)}, 1, unreadable},
		{"not a result", []string{"-o", out, good, notResult}, 1, "not a result"},
		{"not JSON", []string{"-o", out, garbage}, 1, "not a result"},
		{"unknown flag", []string{"--colour", "red", good}, 2, "colour"},
		{"no directory for the PNG", []string{"-o", filepath.Join(dir, "no", "such", "x.png"), good}, 1, "no such"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := run(t.Context(), append([]string{"loadtest", "plot"}, tc.args...), env(nil), &stdout, &stderr)
			if err == nil {
				t.Fatalf("no error; stdout %q", stdout.String())
			}
			if got := exitCode(err); got != tc.wantCode {
				t.Errorf("exit code %d, want %d (%v)", got, tc.wantCode, err)
			}
			if msg := err.Error() + stderr.String(); !strings.Contains(msg, tc.wantMsg) {
				t.Errorf("error %q (stderr %q): want it to say %q", err, stderr.String(), tc.wantMsg)
			}
			if _, err := os.Stat(out); err == nil {
				t.Errorf("%s was written", out)
			}
		})
	}
}
