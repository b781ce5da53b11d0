// Package bridgetest is the raw side of the tablets' WebSocket (docs/protocol.md §5), for
// the bridge's tests and the fault tests: a socket a test reads message by message and
// writes frame by frame, malformed ones included (SendFrame, RawUpgrade,
// WriteFrameHeader, NetConn), with the protocol steps on top (Handshake, Reauth,
// Collect). A well-behaved display is the public client (package client): the device
// key, its proofs, pairing and tokens come from there through pairingtest.Tablet, the
// auth message is the client's (client.Device.AuthMessage), and the close frame is a
// client.CloseError.
//
// It is written from the protocol text, not from the bridge's code, so a test that passes
// with it shows the bridge follows the contract. It is deliberately small: no goroutine
// and no buffer is kept per connection (tests hold thousands), and every read
// and write is bounded by a deadline on the connection, so a silent server fails a test
// instead of hanging it. A Conn is read (Next and everything built on it, and Close) by
// one goroutine at a time; writes are serialized with the pongs and close answers Next
// makes, so another goroutine may Send, SendFrame or Abort while one reads.
//
// Every message either side sends through it is checked against the JSON Schemas of
// docs/schemas/ (internal/schematest): what the server sends always (Next fails on a
// message its schema refuses), and what the test sends with Send and the protocol
// steps; SendUnchecked and SendFrame send malformed messages on purpose.
//
// It imports client, pairingtest and internal/schematest (with docs) of ours, never
// bridge: a test helper, it must not be linked into the binary
// (cmd/kioskfeed/deps_test.go checks that).
package bridgetest
