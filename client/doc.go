// Package client is a kioskfeed display written in Go: what a Raspberry Pi signage
// player, a status-LED driver or a terminal wallboard needs to pair with a kioskfeed
// server and show a feed, with no credential on the device but its own key.
//
// It owns the tablet's side of the wire protocol, and speaks only what docs/protocol.md
// says (§2–§5): a P-256 device key, kept in a 0600 file or supplied by the caller
// (Key); DPoP proofs (Key.Proof); pairing by an administrator's PIN and by a code the
// administrator approves, with RFC 8628 polling and slow_down; token refresh (Device);
// one authenticated socket with its challenge, auth, welcome, catch-up, live events,
// re-auth, pings and heartbeat watchdog (Connect, Conn); and the PWA's reconnect policy
// with its close-code reactions and a replay position that survives a restart of the
// process (Client.Run, StateStore, FileState).
//
// It must not import any other package of this module (bridge, pairing, broker,
// internal/...): it is written against the protocol document alone, so a test that
// passes with it shows the server follows the contract, and a display built on it needs
// nothing of the server. Its own tests do start a real server from those packages.
//
// Every HTTP call, handshake and write has a deadline, every server message a size
// bound (1 MiB), and an idle Conn keeps no goroutine and no read buffer, so one process
// can hold thousands (the load tool does).
package client
