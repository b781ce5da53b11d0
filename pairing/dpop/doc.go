// Package dpop owns the proof-of-possession half of the tablet credential:
// DPoP proof checking as RFC 9449 and docs/protocol.md §2 profile it,
// stateless server nonces, and the cluster-wide jti replay cache. It is one
// concern, kept apart so it can be reused, tested and fuzzed alone.
//
//   - [NonceSource]: HMAC-derived nonces any instance with the same key can
//     check without shared state. (The WebSocket's one-time challenges are
//     the bridge's own random values: they need no key.)
//   - [Verifier]: checks a proof and returns its key's RFC 7638 thumbprint
//     ([Thumbprint]); a jti is accepted once cluster-wide through a
//     [ReplayCache] ([KVReplayCache] on a JetStream KV bucket made with
//     [ReplayBucketConfig]).
//
// Parsing is defensive throughout: sizes are capped before any decoding, the
// algorithm is fixed to ES256, the key comes only from the proof's own jwk
// header (jku, x5u and x5c are never followed, so nothing here touches the
// network), and refusals are [ProofError] values whose reasons are fixed
// phrases safe to log.
//
// dpop must not know about devices, pairing or the admin side, nor look
// inside an access token beyond hashing it for ath; it serves no HTTP and
// writes no HTTP answers (the caller maps [ErrUseNonce] and
// [ErrInvalidProof] to its own). Of kioskfeed it imports only the leaf
// helpers internal/jsonx and internal/kvx: pairing imports it, never the reverse.
package dpop
