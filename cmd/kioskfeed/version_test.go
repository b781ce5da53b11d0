package main

import (
	"bytes"
	"context"
	"encoding/json"
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
// repository, -buildvcs=true whatever GOFLAGS says) and checks that --version --json carries the commit git names: the VCS
// stamp is read from the real build info, which a test binary does not have.
func TestVersionOfABuiltBinary(t *testing.T) {
	head, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil {
		t.Fatalf("git rev-parse HEAD: %v (this test needs the repository's git checkout, as go build's VCS stamp does)", err)
	}
	goCmd := filepath.Join(runtime.GOROOT(), "bin", "go")
	exe := filepath.Join(t.TempDir(), "kioskfeed")
	if out, err := exec.Command(goCmd, "build", "-buildvcs=true", "-o", exe, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(exe, "--version", "--json").Output()
	if err != nil {
		t.Fatalf("kioskfeed --version --json: %v", err)
	}
	var v buildVersion
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatalf("%q: %v", out, err)
	}
	if v.Revision != strings.TrimSpace(string(head)) || v.Time == "" || v.Modified == nil || v.Module == "" || v.Version != v.Module {
		t.Errorf("built binary's version %+v, want revision %s, a commit time, the modified flag and the module version stamped by go build", v, head)
	}
	text, err := exec.Command(exe, "version").Output()
	if err != nil || len(v.Revision) < 12 || !strings.HasPrefix(string(text), "kioskfeed "+v.Version+" ("+v.Revision[:12]) {
		t.Errorf("kioskfeed version: %v\n%s", err, text)
	}
}
