// Package pairingtest is a tablet for tests: a device key and a Tablet that pairs and
// refreshes as the PWA does. Both are thin wrappers of the public client (client.Key,
// client.Device), so server tests send the very bytes a Go display sends, which are
// the bytes the PWA sends with WebCrypto (ES256 with the raw r‖s signature, header
// typ/alg/jwk with only kty, crv, x and y).
//
// What it adds is for tests only: constructors that take a testing.TB (MustDeviceKey,
// MustProof), proofs with a chosen jti or date (ProofParams), signing any header and
// claims for malformed proofs (Sign), and exported fields (Tablet.DeviceID, Token...)
// that a test may read or overwrite to play a thief or a stranger.
//
// It imports only client of ours (which imports nothing of ours), so any package's
// tests can use it, pairing's own included. Being a test helper, it must never be linked
// into the binary (cmd/kioskfeed/deps_test.go checks that).
package pairingtest
