package schematest_test

import (
	"testing"

	"github.com/kioskfeed/kioskfeed/internal/schematest"
)

// BenchmarkFrame is what checking one frame costs a test (the welcome, the largest
// handshake frame, and an event); Frame itself is off while benchmarks run, so this
// measures the check it makes otherwise.
func BenchmarkFrame(b *testing.B) {
	for _, tc := range valid[1:2:2] {
		welcome := []byte(tc.frame)
		event := []byte(valid[5].frame)
		b.Run("welcome", func(b *testing.B) {
			for b.Loop() {
				if err := schematest.CheckFrame(schematest.FromServer, welcome); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("event", func(b *testing.B) {
			for b.Loop() {
				if err := schematest.CheckFrame(schematest.FromServer, event); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
