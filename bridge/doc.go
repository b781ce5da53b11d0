// Package bridge will own the tablets' WebSocket endpoint /ws on gobwas/ws: the auth
// handshake, one live connection per device through cluster-wide leases, per-feed
// fan-out of pre-encoded frames, replay and catch-up after reconnects, heartbeats,
// re-auth, revocation kicks and draining on shutdown (PROTOCOL.md §5 and §7).
//
// It must not parse JWTs itself: it asks an Authenticator interface, declared here and
// satisfied by pairing. It reads feeds through the broker package.
package bridge
