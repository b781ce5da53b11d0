// Package bridge owns the tablets' WebSocket endpoint /ws on gobwas/ws: the auth
// handshake, one live connection per device through cluster-wide leases, per-feed
// fan-out of pre-encoded frames, replay and catch-up after reconnects, heartbeats,
// re-auth, revocation kicks and draining on shutdown (docs/protocol.md §5 and §7).
//
// An idle tablet costs no goroutine: on Linux one goroutine waits in epoll for every
// socket (poller_linux.go) and starts a short-lived reader when one has a frame to read;
// a writer goroutine exists only while a tablet's queue has frames. A tablet that stops
// answering the heartbeat's ping is found by the heartbeat's sweep, not by a blocked
// read. Elsewhere, and for conns the poller cannot watch, each socket has a reader
// goroutine of its own (the same code, session.readLoop).
//
// A socket is split by concern: conn.go (who reads it, with the poller), read.go
// (frames and control frames), write.go (the queue and its drain), close.go (closing
// and hanging up), session.go (the protocol), shown.go and shownview.go (proof of
// display: the tablets' shown messages, their records and the devices' states),
// override.go (the emergency overrides: live, after synced, and their acks),
// timeline.go (each tablet's state changes, written for its timeline). The
// Bridge itself (bridge.go: the upgrade, the sessions, heartbeats, Shutdown) is built
// from a Config (config.go); the hub (hub.go) fans one feed out, and lease.go keeps one
// live connection per device across instances. How far a socket is on its way to the
// end is one state type whose moves state.go draws, and why the server closes one is
// one table (closes.go). The bridge's own goroutines go through one owner (goSafe,
// owner.go) that refuses once Shutdown began, and a tablet's waits on the broker or the
// authenticator (handshake, re-auth, a hub's start) derive from a context that
// Shutdown cancels.
//
// It must not parse JWTs itself: it asks an Authenticator interface, declared here and
// satisfied by pairing. It reads feeds through the broker package. It must not import
// pairing or admin: cmd/kioskfeed wires them together.
package bridge
