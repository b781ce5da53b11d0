package main

import (
	"bytes"
	"context"
	"debug/buildinfo"
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

// TestReadVersion: the fields come from the build info, a release version set with
// -X main.version wins over the module version, and "(devel)" is no version.
func TestReadVersion(t *testing.T) {
	info := &debug.BuildInfo{GoVersion: "go1.99.1", Main: debug.Module{Path: "github.com/kioskfeed/kioskfeed", Version: "v0.3.1-0.20261201101010-0123456789ab+dirty"},
		Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "0123456789abcdef0123456789abcdef01234567"}, {Key: "vcs.time", Value: "2026-12-01T10:10:10Z"}, {Key: "vcs.modified", Value: "true"}, {Key: "GOOS", Value: "linux"}}}
	v := readVersion(info, true)
	if v.Version != info.Main.Version || v.Module != info.Main.Version || v.Revision != info.Settings[0].Value || v.Time != "2026-12-01T10:10:10Z" || v.Modified == nil || !*v.Modified || v.Go != "go1.99.1" {
		t.Errorf("readVersion = %+v", v)
	}
	if got, want := v.String(), "kioskfeed "+info.Main.Version+" (0123456789ab+dirty) go1.99.1"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	old := version
	version = "v1.2.3"
	defer func() { version = old }()
	if v := readVersion(info, true); v.Version != "v1.2.3" || v.Module != info.Main.Version {
		t.Errorf("with -X main.version=v1.2.3: %+v, want that version and the module's kept", v)
	}
	version = "dev"
	info.Main.Version, info.Settings = "(devel)", nil
	if v := readVersion(info, true); v.Version != "dev" || v.Module != "" || v.Revision != "" || v.Modified != nil {
		t.Errorf("a (devel) build without VCS: %+v, want version dev and nothing else", v)
	}
	if v := readVersion(nil, false); v.Version != "dev" || v.Go != runtime.Version() {
		t.Errorf("no build info: %+v", v)
	}
}

// TestVersionCommand: "version", "--version" and "-version" print the same, --json one
// JSON object, and an argument is a usage error.
func TestVersionCommand(t *testing.T) {
	var outs []string
	for _, args := range [][]string{{"version"}, {"--version"}, {"-version"}} {
		var out bytes.Buffer
		if err := run(context.Background(), args, env(nil), &out, io.Discard); err != nil {
			t.Fatalf("%q: %v", args, err)
		}
		outs = append(outs, out.String())
	}
	if outs[0] != outs[1] || outs[1] != outs[2] || !strings.HasPrefix(outs[0], "kioskfeed ") || !strings.Contains(outs[0], "\n  go        "+runtime.Version()) {
		t.Errorf("version outputs:\n%s\n%s\n%s", outs[0], outs[1], outs[2])
	}
	for _, args := range [][]string{{"--version", "--json"}, {"version", "--json"}} {
		var out bytes.Buffer
		if err := run(context.Background(), args, env(nil), &out, io.Discard); err != nil {
			t.Fatalf("%q: %v", args, err)
		}
		var v map[string]any
		if err := json.Unmarshal(out.Bytes(), &v); err != nil || v["go"] != runtime.Version() || v["version"] == "" || v["platform"] != runtime.GOOS+"/"+runtime.GOARCH {
			t.Errorf("%q printed %q (%v), want a JSON object with version, go and platform", args, out.String(), err)
		}
	}
	if err := run(context.Background(), []string{"version", "extra"}, env(nil), io.Discard, io.Discard); exitCode(err) != 2 {
		t.Errorf("version extra: %v, want a usage error", err)
	}
}

// TestVersionOfABuiltBinary builds the binary as a user does (go build in the
// repository, -buildvcs=true whatever GOFLAGS says) and checks that --version --json
// carries what go build stamped, read back from the binary's own build info (a test
// binary has none): in a git clone, the commit git names, its time and the modified
// flag. Where go stamps no commit (a git worktree, a source tree without .git), it
// checks that none is printed either.
func TestVersionOfABuiltBinary(t *testing.T) {
	goCmd := filepath.Join(runtime.GOROOT(), "bin", "go")
	exe := filepath.Join(t.TempDir(), "kioskfeed")
	if out, err := exec.Command(goCmd, "build", "-buildvcs=true", "-o", exe, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	info, err := buildinfo.ReadFile(exe)
	if err != nil {
		t.Fatalf("build info of the built binary: %v", err)
	}
	stamped := map[string]string{}
	for _, s := range info.Settings {
		stamped[s.Key] = s.Value
	}
	out, err := exec.Command(exe, "--version", "--json").Output()
	if err != nil {
		t.Fatalf("kioskfeed --version --json: %v", err)
	}
	var v buildVersion
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatalf("%q: %v", out, err)
	}
	wantModule, wantVersion := info.Main.Version, info.Main.Version
	if wantModule == "(devel)" { // no version stamped: the binary says "dev"
		wantModule, wantVersion = "", "dev"
	}
	if v.Module != wantModule || v.Version != wantVersion || v.Go != info.GoVersion {
		t.Errorf("built binary's version %+v, want module %q, version %q and Go %q as go build stamped them", v, wantModule, wantVersion, info.GoVersion)
	}
	rev := stamped["vcs.revision"]
	if rev == "" {
		if v.Revision != "" || v.Time != "" || v.Modified != nil {
			t.Errorf("go build stamped no commit, yet --version printed %+v", v)
		}
		t.Logf("go build stamped no commit here (a worktree or a tree without .git): checked that none is printed")
		return
	}
	head, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil || strings.TrimSpace(string(head)) != rev {
		t.Fatalf("git rev-parse HEAD = %q, %v; go build stamped %s", head, err, rev)
	}
	if v.Revision != rev || v.Time != stamped["vcs.time"] || v.Modified == nil || fmt.Sprint(*v.Modified) != stamped["vcs.modified"] {
		t.Errorf("built binary's version %+v, want revision %s, time %s and modified %s as stamped", v, rev, stamped["vcs.time"], stamped["vcs.modified"])
	}
	text, err := exec.Command(exe, "version").Output()
	if err != nil || !strings.HasPrefix(string(text), "kioskfeed "+v.Version+" ("+rev[:12]) {
		t.Errorf("kioskfeed version: %v\n%s", err, text)
	}
}
