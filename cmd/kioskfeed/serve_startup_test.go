package main

import (
	"strings"
	"testing"
)

// TestServeLogsItsStartUpSteps: the "serving" line says how long each step of the
// start-up took (a restart's start is part of the time its tablets are away).
func TestServeLogsItsStartUpSteps(t *testing.T) {
	s := startServe(t, t.TempDir())
	defer func() { _ = s.stop() }()
	var line string
	for l := range strings.SplitSeq(s.stderr.String(), "\n") {
		if strings.Contains(l, "msg=serving") {
			line = l
		}
	}
	for _, step := range []string{"start_broker=", "start_pairing=", "start_bridge=", "start_alerts=", "start_admin="} {
		if !strings.Contains(line, step) {
			t.Fatalf("the serving line %q lacks %s", line, step)
		}
	}
}
