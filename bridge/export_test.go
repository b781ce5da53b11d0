package bridge

import "testing"

// DisablePolling makes bridges created during the test read each socket with a
// goroutine of its own, as where epoll is missing, so that path is tested on Linux too.
func DisablePolling(tb testing.TB) {
	pollingDisabled = true
	tb.Cleanup(func() { pollingDisabled = false })
}
