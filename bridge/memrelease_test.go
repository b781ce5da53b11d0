package bridge_test

import (
	"testing"

	"github.com/kioskfeed/kioskfeed/bridge"
	"github.com/kioskfeed/kioskfeed/broker/brokertest"
)

// TestMemoryReleasedOnceAfterAStorm: a storm of handshakes (three here) is followed,
// once it has calmed, by one release of memory; the seconds after it, and a handshake
// too few to be a storm, release nothing more, although the loop keeps looking.
func TestMemoryReleasedOnceAfterAStorm(t *testing.T) {
	bridge.SetStorm(t, 3, 1) // three handshakes make a storm; a second without one ends it
	s := startStack(t, stackOpts{})
	for range 3 {
		c, _ := s.connect(t, s.pair(t, "lobby"), 0, "")
		if _, _, _, err := c.Collect(wait); err != nil {
			t.Fatal(err)
		}
	}
	brokertest.Eventually(t, wait, "a release after the storm", func() bool {
		n, _ := s.br.MemReleases()
		return n == 1
	})
	c, _ := s.connect(t, s.pair(t, "lobby"), 0, "") // one more: not a storm
	if _, _, _, err := c.Collect(wait); err != nil {
		t.Fatal(err)
	}
	_, ticks := s.br.MemReleases()
	brokertest.Eventually(t, wait, "three more looks", func() bool {
		_, now := s.br.MemReleases()
		return now >= ticks+3
	})
	if n, _ := s.br.MemReleases(); n != 1 {
		t.Fatalf("releases = %d after one storm and one handshake, want 1", n)
	}
}
