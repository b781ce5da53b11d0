package bridge

// This file owns why the server closes a socket: every close it sends is one of the
// values below (or echoReason, the answer to a tablet's own close), so a newcomer
// finds each code, the text its close frame carries, its metric label and its audit
// type in one table. Codes are those of docs/protocol.md §5 (protocol.go).

import (
	"strconv"

	"github.com/gobwas/ws"
)

// closeReason is one reason to close a socket, as centrifuge's Disconnect is.
type closeReason struct {
	code ws.StatusCode
	// reason is the close frame's text, on the wire as it is (tests check some).
	reason string
	// label is the value of kioskfeed_ws_closes_total{code}: the code as text. Metrics
	// are part of the contract: it must stay the code as text.
	label string
	// audit is the audit type recorded with this close ("" for none). The record is
	// written where the close is decided, with its own detail, not by closeWith.
	audit string
}

// The server's close reasons. Two texts for one code are two entries: each text is on
// the wire today.
var (
	// Frames and messages that break the protocol (read.go, session.go).
	reasonProtocolError  = closeReason{ws.StatusProtocolError, "protocol error", "1002", ""}
	reasonBinary         = closeReason{CloseUnsupported, "binary frames are not accepted", "1003", ""}
	reasonInvalidUTF8    = closeReason{ws.StatusInvalidFramePayloadData, "invalid UTF-8", "1007", ""}
	reasonTooBig         = closeReason{CloseTooBig, "frame larger than 16 KiB", "1009", ""}
	reasonMalformed      = closeReason{CloseMalformed, "malformed message", "4400", ""}
	reasonUnexpectedAuth = closeReason{CloseMalformed, "unexpected auth", "4400", ""}

	// Authentication and re-authentication (session.go, bridge.go, admit.go).
	reasonBadCredential    = closeReason{CloseUnauthorized, "token or proof invalid", "4401", "auth_fail"}
	reasonTokenExpired     = closeReason{CloseUnauthorized, "token expired", "4401", ""}
	reasonStaleReauth      = closeReason{CloseUnauthorized, "re-auth needs a new token", "4401", "auth_fail"}
	reasonRevokedOrUnknown = closeReason{CloseRevoked, "device revoked or unknown", "4403", "auth_fail"}
	reasonRevoked          = closeReason{CloseRevoked, "device revoked", "4403", ""} // the revocation kick of a live socket
	reasonNoAuthInTime     = closeReason{CloseAuthTimeout, "no auth in time", "4408", ""}
	reasonDuplicate        = closeReason{CloseDuplicate, "device already connected", "4409", "duplicate_refused"}
	reasonTooManyFails     = closeReason{CloseTooMany, "too many failed attempts", "4429", ""} // closeVerdict
	reasonTooManyConns     = closeReason{CloseTooMany, "too many connections", "4429", ""}     // MaxConns, before the session starts

	// The server's side: restarts, slow tablets, the broker and leases.
	reasonRestarting   = closeReason{CloseRestarting, "server restarting", "1012", ""}
	reasonLogRenewed   = closeReason{CloseRestarting, "the event log was made anew", "1012", ""}
	reasonTooSlow      = closeReason{CloseTooSlow, "too slow", "1013", ""}
	reasonBrokerDown   = closeReason{CloseBrokerDown, "broker unreachable", "1011", ""}
	reasonLeaseLost    = closeReason{CloseBrokerDown, "lease lost", "1011", ""}
	reasonNoPingAnswer = closeReason{CloseBrokerDown, "no answer to ping", "1011", ""} // a lease probe's holder
)

// echoReason answers a tablet's close frame with code (closeReply): no text, and the
// code as its label, as for every close.
func echoReason(code ws.StatusCode) closeReason {
	return closeReason{code: code, label: strconv.Itoa(int(code))}
}
