package bridge_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/kioskfeed/kioskfeed/bridge"
	"github.com/kioskfeed/kioskfeed/internal/schematest"
)

// TestMain fails the package if any test leaves a goroutine running: every component
// must stop what it starts. An illegal move of a session's state panics in every test.
// It also fails it if any socket frame failed its JSON Schema (docs/schemas/), even in
// a test that tolerated the helper's error (internal/schematest records them).
func TestMain(m *testing.M) {
	bridge.StrictStates()
	goleak.VerifyTestMain(schemaChecked{m})
}

// schemaChecked runs the tests, then fails the run if a frame failed its schema.
type schemaChecked struct{ m *testing.M }

func (s schemaChecked) Run() int { return schematest.Main(s.m.Run) }
