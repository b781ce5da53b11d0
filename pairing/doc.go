// Package pairing owns device identity: everything that decides which tablet is which
// and what it may see. That is pairing PINs and the reverse (device-code) pairing flow
// with its pair requests, the device registry, the access-token issuer and its JWKS,
// the device-facing HTTP endpoints (/api/pair, /api/pair/requests and its polls, the
// pairing QR code, /api/token, /.well-known/jwks.json), and the authenticator the
// bridge asks on every WebSocket handshake.
//
// The administrators' side (their credentials, the admin API, the dashboard) is
// package admin, which acts on devices through a small Go API here: IssuePIN (and
// IssueTaggedPIN), RevokeDevice, UpdateDevice (a device's name and tags, or a move to
// another feed: tags.go), OpenPairRequests, LookupPairRequest, ApprovePairRequest (the
// compare-and-set on the request, then the device it registers) and DenyPairRequest,
// and Devices for the list. Those calls audit under the administrator's credential that
// admin puts in the context (broker.WithActor). pairing must not import admin.
//
// The credential model (docs/protocol.md §2): a tablet holds a non-extractable ECDSA
// P-256 key; an access token is a short-lived ES256 JWT bound to that key's RFC 7638
// thumbprint (cnf.jkt); every use of a token comes with a fresh DPoP proof (RFC 9449)
// signed by that key over a server nonce. The cryptographic pieces are:
//
//   - package [github.com/kioskfeed/kioskfeed/pairing/dpop]: proof checking
//     ([dpop.Verifier], which returns the key's thumbprint), stateless server nonces
//     ([dpop.NonceSource]), and the jti replay cache that accepts a proof once
//     cluster-wide ([dpop.KVReplayCache] on a JetStream KV bucket). pairing configures
//     them in [New] and maps their refusals to its HTTP answers and to the credential
//     errors the bridge gets.
//   - [TokenIssuer]: issues and verifies access tokens and publishes the public key set.
//
// Parsing is defensive throughout: sizes are capped before any decoding, the algorithm
// is fixed to ES256, keys come only from the proof's own jwk header or the server's own
// key set (jku, x5u and x5c are never followed, so nothing here touches the network),
// and error reasons are fixed phrases safe to log.
//
// pairing must not know about WebSockets: the bridge package asks it, through an
// interface the bridge declares, to check a token and a proof and gets back plain
// values. pairing and bridge never import each other.
package pairing
