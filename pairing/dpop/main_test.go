package dpop

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if any test leaves a goroutine running (NATS servers and
// connections the tests start).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
