package bridge

// This file owns why the server closes a socket: every close it sends is one of the
// values below (or echoReason, the answer to a tablet's own close), so a newcomer
// finds each code, the text its close frame carries and its audit type in one table
// (the metric label is the code). Codes are those of docs/protocol.md §5 (protocol.go).

import (
	"strconv"

	"github.com/gobwas/ws"
	"github.com/kioskfeed/kioskfeed/broker"
)

// closeReason is one reason to close a socket, as centrifuge's Disconnect is.
type closeReason struct {
	code ws.StatusCode
	// reason is the close frame's text, on the wire as it is (tests check some).
	reason string
	// audit is the audit type recorded with this close ("" for none). The record is
	// written where the close is decided, with its own detail, not by closeWith.
	audit broker.AuditType
}

// The server's close reasons. Two texts for one code are two entries: each text is on
// the wire today.
var (
	// Frames and messages that break the protocol (read.go, session.go).
	reasonProtocolError  = closeReason{ws.StatusProtocolError, "protocol error", ""}
	reasonBinary         = closeReason{CloseUnsupported, "binary frames are not accepted", ""}
	reasonInvalidUTF8    = closeReason{ws.StatusInvalidFramePayloadData, "invalid UTF-8", ""}
	reasonTooBig         = closeReason{CloseTooBig, "frame larger than 16 KiB", ""}
	reasonMalformed      = closeReason{CloseMalformed, "malformed message", ""}
	reasonUnexpectedAuth = closeReason{CloseMalformed, "unexpected auth", ""}

	// Authentication and re-authentication (session.go, bridge.go, admit.go).
	reasonBadCredential    = closeReason{CloseUnauthorized, "token or proof invalid", broker.AuditAuthFail}
	reasonTokenExpired     = closeReason{CloseUnauthorized, "token expired", ""}
	reasonStaleReauth      = closeReason{CloseUnauthorized, "re-auth needs a new token", broker.AuditAuthFail}
	reasonRevokedOrUnknown = closeReason{CloseRevoked, "device revoked or unknown", broker.AuditAuthFail}
	reasonRevoked          = closeReason{CloseRevoked, "device revoked", ""} // the revocation kick of a live socket
	reasonNoAuthInTime     = closeReason{CloseAuthTimeout, "no auth in time", ""}
	reasonDuplicate        = closeReason{CloseDuplicate, "device already connected", broker.AuditDuplicateRefused}
	reasonTooManyFails     = closeReason{CloseTooMany, "too many failed attempts", ""} // closeVerdict
	reasonTooManyConns     = closeReason{CloseTooMany, "too many connections", ""}     // MaxConns, before the session starts

	// The server's side: restarts, slow tablets, the broker and leases.
	reasonRestarting   = closeReason{CloseRestarting, "server restarting", ""}
	reasonLogRenewed   = closeReason{CloseRestarting, "the event log was made anew", ""}
	reasonTooSlow      = closeReason{CloseTooSlow, "too slow", ""}
	reasonBrokerDown   = closeReason{CloseBrokerDown, "broker unreachable", ""}
	reasonLeaseLost    = closeReason{CloseBrokerDown, "lease lost", ""}
	reasonNoPingAnswer = closeReason{CloseBrokerDown, "no answer to ping", ""} // a lease probe's holder
)

// echoReason answers a tablet's close frame with code (closeReply): no text.
func echoReason(code ws.StatusCode) closeReason { return closeReason{code: code} }

// label is the value of kioskfeed_ws_closes_total{code}: the code as text (metrics are
// part of the contract).
func (r closeReason) label() string { return strconv.Itoa(int(r.code)) }
