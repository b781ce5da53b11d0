package main

import (
	"runtime/debug"
	"strings"
)

// version is set at release builds with -ldflags "-X main.version=v1.2.3".
var version = "dev"

func versionString() string {
	var b strings.Builder
	b.WriteString("kioskfeed " + version)
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, s := range info.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				b.WriteString(" (" + s.Value[:12] + ")")
			}
		}
		b.WriteString(" " + info.GoVersion)
	}
	return b.String()
}
