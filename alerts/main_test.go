package alerts_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/kioskfeed/kioskfeed/internal/schematest"
)

// TestMain fails the package if a test leaves a goroutine running, or if an alert a
// test read (from the stream or as a webhook delivery) failed docs/schemas/alert.json.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(schemaChecked{m})
}

// schemaChecked runs the tests, then fails the run if an alert failed its schema.
type schemaChecked struct{ m *testing.M }

func (s schemaChecked) Run() int { return schematest.Main(s.m.Run) }
