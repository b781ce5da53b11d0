package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestBinaryDoesNotLinkTesting asks the go command for every package the production
// binary links and fails if the testing package is among them: test helpers (which take
// a testing.TB) must stay out of what is shipped. It once came in through the load tool
// (loadtest → pairing/pairingtest). As a check of the build graph itself, it holds for
// the files and build tags of this build, whatever imports them.
func TestBinaryDoesNotLinkTesting(t *testing.T) {
	goCmd := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goCmd); err != nil {
		if goCmd, err = exec.LookPath("go"); err != nil {
			t.Fatalf("no go command to list the binary's packages with: %v", err)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	// The package's path, not ".", so that the answer is the binary's, not this test's.
	out, err := exec.CommandContext(ctx, goCmd, "list", "-deps", "github.com/kioskfeed/kioskfeed/cmd/kioskfeed").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	pkgs := strings.Fields(string(out))
	seen := map[string]bool{}
	for _, p := range pkgs {
		seen[p] = true
	}
	// The list must be the binary's: it holds its own package and the load tool.
	for _, want := range []string{"github.com/kioskfeed/kioskfeed/cmd/kioskfeed", "github.com/kioskfeed/kioskfeed/loadtest"} {
		if !seen[want] {
			t.Fatalf("go list -deps does not list %s: not the binary's packages?\n%s", want, out)
		}
	}
	for _, bad := range []string{"testing", "github.com/kioskfeed/kioskfeed/pairing/pairingtest", "github.com/kioskfeed/kioskfeed/bridge/bridgetest", "github.com/kioskfeed/kioskfeed/broker/brokertest", "github.com/kioskfeed/kioskfeed/internal/schematest"} {
		if seen[bad] {
			why, _ := exec.CommandContext(ctx, goCmd, "list", "-f", "{{.ImportPath}}: {{join .Imports \" \"}}", "-deps", "github.com/kioskfeed/kioskfeed/cmd/kioskfeed").Output()
			var importers []string
			for line := range strings.SplitSeq(string(why), "\n") {
				if path, imports, ok := strings.Cut(line, ": "); ok && strings.Contains(" "+imports+" ", " "+bad+" ") {
					importers = append(importers, path)
				}
			}
			t.Errorf("the kioskfeed binary links %s (imported by %s)", bad, strings.Join(importers, ", "))
		}
	}
}
