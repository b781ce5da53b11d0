package bridge_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/kioskfeed/kioskfeed/bridge"
)

// TestMain fails the package if any test leaves a goroutine running: every component
// must stop what it starts. An illegal move of a session's state panics in every test.
func TestMain(m *testing.M) {
	bridge.StrictStates()
	goleak.VerifyTestMain(m)
}
