package pairing

import (
	"testing"
	"time"

	"github.com/kioskfeed/kioskfeed/pairing/dpop"
)

// Nonces is the Authority's nonce source, for tests that need a nonce this server
// accepts or must check one it sent; production code reads nonces from HTTP answers.
func (a *Authority) Nonces() *dpop.NonceSource { return a.nonces }

// HoldTokenRefill stops the allowance of POST /api/token from refilling in the
// Authorities the test creates after it: calls without pause then reach the 429 however
// slowly the machine answers them (on a loaded one each call took longer than the
// 20 ms refill, and 3,000 calls never emptied the burst). Not for parallel tests.
func HoldTokenRefill(tb testing.TB) {
	held := time.Now()
	tokenLimitClock = func(func() time.Time) func() time.Time { return func() time.Time { return held } }
	tb.Cleanup(func() { tokenLimitClock = func(now func() time.Time) func() time.Time { return now } })
}
