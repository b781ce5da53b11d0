package bridge

// After a storm of handshakes (a restart, a building's Wi-Fi back) the process holds the
// storm's garbage: Go's runtime hands freed memory back to the OS slowly, keeping what
// the heap grew to at the storm's peak. At 10,000 tablets that was about 2 KB per
// tablet more than the idle fleet needs (BENCHMARKS.md). So once a storm of at least
// stormHandshakes ends (a second with fewer than calmHandshakes), the bridge returns it
// at once: one debug.FreeOSMemory, a full collection and a scavenge (some tens of
// milliseconds of CPU at 10,000 tablets), once per storm. Nothing else calls it.

import (
	"runtime/debug"
	"time"
)

var (
	stormHandshakes uint64 = 1000 // handshakes since the last release that make a storm
	calmHandshakes  uint64 = 10   // fewer than this in a second: the storm is over
)

// releaseAfterStorms is the loop that returns a storm's memory (goSafe, ends with
// Shutdown).
func (br *Bridge) releaseAfterStorms() {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var last, since uint64
	for {
		select {
		case <-br.stop:
			return
		case <-t.C:
			n := br.handshakesOK.Load()
			d := n - last
			last, since = n, since+d
			if since >= stormHandshakes && d < calmHandshakes {
				debug.FreeOSMemory()
				br.memReleases.Add(1)
				since = 0
			}
			br.releaseTicks.Add(1)
		}
	}
}
