package bridge

import "testing"

// OnUpgraded makes fn run after each socket's upgrade and before it is registered (the
// window in which a drain may begin), for the rest of the test.
func OnUpgraded(tb testing.TB, fn func()) {
	upgradedHook.Store(&fn)
	tb.Cleanup(func() { upgradedHook.Store(nil) })
}

// Draining reports whether Shutdown has begun.
func (br *Bridge) Draining() bool { return br.isDraining() }
