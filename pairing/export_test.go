package pairing

import "github.com/kioskfeed/kioskfeed/pairing/dpop"

// Nonces is the Authority's nonce source, for tests that need a nonce this server
// accepts or must check one it sent; production code reads nonces from HTTP answers.
func (a *Authority) Nonces() *dpop.NonceSource { return a.nonces }
