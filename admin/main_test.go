package admin_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if any test leaves a goroutine running: every component
// must stop what it starts.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
