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
	// authFail: closing a socket not yet authenticated for this reason is its client's
	// doing (a refused or malformed auth, no auth in time, a protocol error), and counts
	// as a failed authentication of its address (closeVerdict, admit.go). It goes by the
	// code, so that a tablet's own close with such a code counts too (isAuthFailure):
	// every reason of one code says the same (TestCloseReasons).
	authFail bool
}

// The server's close reasons. Two texts for one code are two entries: each text is on
// the wire today.
var (
	// Frames and messages that break the protocol (read.go, session.go).
	reasonProtocolError  = closeReason{ws.StatusProtocolError, "protocol error", "", true}
	reasonBinary         = closeReason{CloseUnsupported, "binary frames are not accepted", "", true}
	reasonInvalidUTF8    = closeReason{ws.StatusInvalidFramePayloadData, "invalid UTF-8", "", true}
	reasonTooBig         = closeReason{CloseTooBig, "frame larger than 16 KiB", "", true}
	reasonMalformed      = closeReason{CloseMalformed, "malformed message", "", true}
	reasonUnexpectedAuth = closeReason{CloseMalformed, "unexpected auth", "", true}

	// Authentication and re-authentication (session.go, bridge.go, admit.go).
	reasonBadCredential    = closeReason{CloseUnauthorized, "token or proof invalid", broker.AuditAuthFail, true}
	reasonTokenExpired     = closeReason{CloseUnauthorized, "token expired", "", true}
	reasonStaleReauth      = closeReason{CloseUnauthorized, "re-auth needs a new token", broker.AuditAuthFail, true}
	reasonRevokedOrUnknown = closeReason{CloseRevoked, "device revoked or unknown", broker.AuditAuthFail, true}
	reasonRevoked          = closeReason{CloseRevoked, "device revoked", "", true}                    // the revocation kick of a live socket
	reasonMoved            = closeReason{CloseUnauthorized, "device moved to another feed", "", true} // fleet.go: refresh, come back on the new feed
	reasonNoAuthInTime     = closeReason{CloseAuthTimeout, "no auth in time", "", true}
	reasonDuplicate        = closeReason{CloseDuplicate, "device already connected", broker.AuditDuplicateRefused, false}
	reasonTooManyFails     = closeReason{CloseTooMany, "too many failed attempts", "", false} // closeVerdict
	reasonTooManyConns     = closeReason{CloseTooMany, "too many connections", "", false}     // MaxConns, before the session starts

	// The server's side: restarts, slow tablets, the broker and leases.
	reasonRestarting   = closeReason{CloseRestarting, "server restarting", "", false}
	reasonLogRenewed   = closeReason{CloseRestarting, "the event log was made anew", "", false}
	reasonTooSlow      = closeReason{CloseTooSlow, "too slow", "", false}
	reasonBrokerDown   = closeReason{CloseBrokerDown, "broker unreachable", "", false}
	reasonLeaseLost    = closeReason{CloseBrokerDown, "lease lost", "", false}
	reasonNoPingAnswer = closeReason{CloseBrokerDown, "no answer to ping", "", false} // a lease probe's holder
)

// closeReasons is every reason above: what isAuthFailure reads by code.
var closeReasons = [...]closeReason{
	reasonProtocolError, reasonBinary, reasonInvalidUTF8, reasonTooBig, reasonMalformed,
	reasonUnexpectedAuth, reasonBadCredential, reasonTokenExpired, reasonStaleReauth,
	reasonRevokedOrUnknown, reasonRevoked, reasonMoved, reasonNoAuthInTime, reasonDuplicate,
	reasonTooManyFails, reasonTooManyConns, reasonRestarting, reasonLogRenewed,
	reasonTooSlow, reasonBrokerDown, reasonLeaseLost, reasonNoPingAnswer,
}

// isAuthFailure reports whether closing an unauthenticated socket with code is its
// client's doing (the authFail column, by code): the server's reasons and the codes a
// tablet's own close is echoed with alike.
func isAuthFailure(code ws.StatusCode) bool {
	for _, r := range closeReasons {
		if r.code == code {
			return r.authFail
		}
	}
	return false
}

// echoReason answers a tablet's close frame with code (closeReply): no text.
func echoReason(code ws.StatusCode) closeReason { return closeReason{code: code} }

// label is the value of kioskfeed_ws_closes_total{code}: the code as text (metrics are
// part of the contract).
func (r closeReason) label() string { return strconv.Itoa(int(r.code)) }
