//go:build !unix

package bridge_test

import (
	"testing"
	"time"
)

// processCPU is not read where getrusage is missing: the benchmarks report 0 CPU there.
func processCPU(*testing.B) time.Duration { return 0 }
