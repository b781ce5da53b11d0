package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"
)

// version is set at release builds with -ldflags "-X main.version=v1.2.3".
var version = "dev"

// buildVersion is what "kioskfeed version" says about this binary: the release version
// (or, without one, the module version the go command stamped), the commit it was built
// from and whether the tree had changes, and the Go that built it. The VCS fields are
// empty in a binary built without VCS stamping (go test, -buildvcs=false, a tarball).
type buildVersion struct {
	Version  string `json:"version"`
	Module   string `json:"module,omitempty"`
	Revision string `json:"vcs_revision,omitempty"`
	Time     string `json:"vcs_time,omitempty"`
	Modified *bool  `json:"vcs_modified,omitempty"`
	Go       string `json:"go"`
	Platform string `json:"platform"`
}

// readVersion reads info (from debug.ReadBuildInfo; ok false when there is none).
func readVersion(info *debug.BuildInfo, ok bool) buildVersion {
	v := buildVersion{Version: version, Go: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if !ok || info == nil {
		return v
	}
	if info.GoVersion != "" {
		v.Go = info.GoVersion
	}
	if m := info.Main.Version; m != "" && m != "(devel)" {
		v.Module = m
		if v.Version == "dev" {
			v.Version = m
		}
	}
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			v.Revision = s.Value
		case "vcs.time":
			v.Time = s.Value
		case "vcs.modified":
			mod := s.Value == "true"
			v.Modified = &mod
		}
	}
	return v
}

// String is the first line of "kioskfeed version", kept as it was before the other
// lines came: "kioskfeed VERSION (REVISION[12]) GO".
func (v buildVersion) String() string {
	var b strings.Builder
	b.WriteString("kioskfeed " + v.Version)
	if len(v.Revision) >= 12 {
		b.WriteString(" (" + v.Revision[:12])
		if v.Modified != nil && *v.Modified {
			b.WriteString("+dirty")
		}
		b.WriteString(")")
	}
	b.WriteString(" " + v.Go)
	return b.String()
}

// versionCmd is "kioskfeed version [--json]" (also --version and -version, as many
// tools take it): the summary line, then each field of the build info on a line of its
// own; --json prints them as one JSON object, for scripts and bug reports.
func versionCmd(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("kioskfeed version", flag.ContinueOnError)
	fs.SetOutput(stderr)
	asJSON := fs.Bool("json", false, "print the version as a JSON object")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("kioskfeed version takes no arguments, got %q", fs.Args())}
	}
	v := readVersion(debug.ReadBuildInfo())
	if *asJSON {
		return json.NewEncoder(stdout).Encode(v)
	}
	fmt.Fprintln(stdout, v.String())
	line := func(k, val string) {
		if val != "" {
			fmt.Fprintf(stdout, "  %-9s %s\n", k, val)
		}
	}
	line("module", v.Module)
	line("revision", v.Revision)
	line("time", v.Time)
	if v.Modified != nil {
		line("modified", fmt.Sprint(*v.Modified))
	}
	line("go", v.Go+" "+v.Platform)
	return nil
}
