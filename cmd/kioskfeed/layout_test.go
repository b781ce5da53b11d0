package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

const modulePath = "github.com/kioskfeed/kioskfeed/"

// mayImport is the shape of the code, as each package's doc.go states it: the kioskfeed
// packages each one may link, directly or through another (internal/ packages are
// leaves anyone may use). A package missing from this table fails the test, so a new
// package states where it sits before it lands; cmd/kioskfeed wires them all and may
// link anything.
var mayImport = map[string][]string{
	"config":              {},
	"docs":                {},
	"client":              {},
	"internal/httpx":      {},
	"internal/jsonx":      {},
	"internal/kvx":        {},
	"internal/apitest":    {"docs"},
	"internal/schematest": {"docs"},
	"pairing/dpop":        {},
	"broker":              {"schedule"},
	"schedule":            {},
	"broker/brokertest":   {"broker", "schedule"},
	"pairing":             {"broker", "pairing/dpop", "schedule"},
	"pairing/pairingtest": {"client"},
	"alerts":              {"broker", "schedule"},
	"admin":               {"broker", "pairing", "pairing/dpop", "alerts", "schedule"},
	"bridge":              {"broker", "schedule"},
	"bridge/bridgetest":   {"client", "pairing/pairingtest", "docs"},
	"pwa":                 {},
	"loadtest":            {"client"},
	"cmd/kioskfeed":       nil, // anything
}

// noNATS are the packages that must not link the NATS client or server: the PWA's
// server, the HTTP plumbing and the public tablet client speak HTTP and WebSocket only.
var noNATS = []string{"pwa", "client", "internal/httpx", "internal/jsonx", "internal/apitest", "config", "docs"}

// TestPackageLayout checks the import graph of the production packages against
// mayImport and noNATS, so that the boundaries the doc.go files describe (bridge and
// pairing never import each other, the client speaks only the wire, pwa writes a 404
// without linking NATS) are facts of the build and not just prose.
func TestPackageLayout(t *testing.T) {
	goCmd := filepath.Join(runtime.GOROOT(), "bin", "go")
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, goCmd, "list", "-f", `{{.ImportPath}}{{range .Deps}} {{.}}{{end}}`, modulePath+"...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	seen := map[string]bool{}
	for line := range strings.SplitSeq(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		pkg, ok := strings.CutPrefix(fields[0], modulePath)
		if !ok {
			continue
		}
		seen[pkg] = true
		allowed, known := mayImport[pkg]
		if !known {
			t.Errorf("package %s is not in mayImport: add it, with the kioskfeed packages it may import (and say so in its doc.go)", pkg)
			continue
		}
		for _, dep := range fields[1:] {
			if slices.Contains(noNATS, pkg) && strings.HasPrefix(dep, "github.com/nats-io/") {
				t.Errorf("%s links %s; it must not link NATS", pkg, dep)
			}
			d, ours := strings.CutPrefix(dep, modulePath)
			if !ours || allowed == nil || strings.HasPrefix(d, "internal/") || slices.Contains(allowed, d) {
				continue
			}
			t.Errorf("%s links %s; it may link only %v and internal/ packages", pkg, d, allowed)
		}
	}
	// The table must be the module's: a package it names that no longer exists is a
	// stale line that would hide a new package of the same name's place.
	for pkg := range mayImport {
		if !seen[pkg] {
			t.Errorf("mayImport names %s, which is not a package of the module (any more)", pkg)
		}
	}
}

// TestReadmeLayoutMatchesTheFolders checks the README's layout block (the code block
// that begins with "broker/") against the module: every package has its line (or sits
// under a folder that has one, such as admin/web/), and every folder the block names
// exists. A newcomer reads that block first; it must not send them to a folder that moved.
func TestReadmeLayoutMatchesTheFolders(t *testing.T) {
	root := filepath.Join("..", "..")
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(readme), "```\nbroker/ ")
	if !ok {
		t.Fatal("README.md has no layout block (a code block whose first line starts with broker/)")
	}
	block, _, _ := strings.Cut("broker/ "+after, "```")
	named := map[string]bool{}
	for line := range strings.SplitSeq(block, "\n") {
		if line == "" || line[0] == ' ' {
			continue // a continuation line
		}
		dir := strings.TrimSuffix(strings.Fields(line)[0], "/")
		named[dir] = true
		if fi, err := os.Stat(filepath.Join(root, dir)); err != nil || !fi.IsDir() {
			t.Errorf("README layout names %s/, which is not a folder", dir)
		}
	}
	if len(named) < 8 {
		t.Fatalf("README layout block names only %d folders: %v", len(named), named)
	}
	goCmd := filepath.Join(runtime.GOROOT(), "bin", "go")
	out, err := exec.CommandContext(t.Context(), goCmd, "list", modulePath+"...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, p := range strings.Fields(string(out)) {
		pkg, ok := strings.CutPrefix(p, modulePath)
		if !ok {
			continue
		}
		if !named[pkg] {
			t.Errorf("package %s has no line in the README's layout block", pkg)
		}
	}
}
