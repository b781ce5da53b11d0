package bridge_test

import (
	"testing"

	"github.com/kioskfeed/kioskfeed/internal/schematest"
)

// checkServerText fails t if p, a whole text message a test read from the server
// without bridgetest (raw reads), fails its JSON Schema (docs/schemas/): bridgetest
// checks every message it reads itself, and TestMain fails the run if any failed.
func checkServerText(t testing.TB, p []byte) {
	t.Helper()
	if err := schematest.Frame(schematest.FromServer, p); err != nil {
		schematest.Record(err)
		t.Error(err)
	}
}
