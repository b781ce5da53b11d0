package bridge

import (
	"testing"

	"github.com/gobwas/ws"
)

// TestCloseReasons checks the table of closes.go: each text fits a close frame (RFC
// 6455 §5.5: 125 bytes, two of them the code), and no two entries are the same close.
// (The metric label is the code by construction; TestMetricsSeriesOnARealServer reads
// it off /metrics.)
func TestCloseReasons(t *testing.T) {
	reasons := map[string]closeReason{
		"protocol error": reasonProtocolError, "binary": reasonBinary, "invalid UTF-8": reasonInvalidUTF8,
		"too big": reasonTooBig, "malformed": reasonMalformed, "unexpected auth": reasonUnexpectedAuth,
		"bad credential": reasonBadCredential, "token expired": reasonTokenExpired,
		"stale re-auth": reasonStaleReauth, "revoked or unknown": reasonRevokedOrUnknown,
		"revoked": reasonRevoked, "no auth in time": reasonNoAuthInTime, "duplicate": reasonDuplicate,
		"too many fails": reasonTooManyFails, "too many conns": reasonTooManyConns,
		"restarting": reasonRestarting, "log renewed": reasonLogRenewed, "too slow": reasonTooSlow,
		"broker down": reasonBrokerDown, "lease lost": reasonLeaseLost, "no ping answer": reasonNoPingAnswer,
		"echo": echoReason(4000),
	}
	seen := map[closeReason]string{}
	for name, r := range reasons {
		if len(r.reason) > 123 {
			t.Errorf("%s: reason of %d bytes, want at most 123", name, len(r.reason))
		}
		if other, dup := seen[r]; dup {
			t.Errorf("%s and %s are the same close", name, other)
		}
		seen[r] = name
	}
}

// TestAuthFailureColumn checks the authFail column: closeReasons holds every reason of
// the table, the reasons of one code agree, and the codes that count as a failed
// authentication are those docs/protocol.md §10 names: the client's doing before auth
// (malformed, unauthorized, revoked, no auth in time, protocol errors), never the
// server's side (1011, 1012, 1013, 4409, 4429).
func TestAuthFailureColumn(t *testing.T) {
	if len(closeReasons) != 22 {
		t.Errorf("closeReasons has %d reasons, want the table's 22", len(closeReasons))
	}
	byCode := map[ws.StatusCode]bool{}
	for _, r := range closeReasons {
		if was, ok := byCode[r.code]; ok && was != r.authFail {
			t.Errorf("code %d: reasons disagree on authFail (%q says %v)", r.code, r.reason, r.authFail)
		}
		byCode[r.code] = r.authFail
	}
	want := map[ws.StatusCode]bool{
		CloseMalformed: true, CloseUnauthorized: true, CloseRevoked: true, CloseAuthTimeout: true,
		ws.StatusProtocolError: true, CloseUnsupported: true, ws.StatusInvalidFramePayloadData: true, CloseTooBig: true,
	}
	for _, code := range []ws.StatusCode{closeNormal, 1001, ws.StatusProtocolError, CloseUnsupported,
		ws.StatusInvalidFramePayloadData, CloseTooBig, CloseBrokerDown, CloseRestarting, CloseTooSlow,
		CloseMalformed, CloseUnauthorized, CloseRevoked, CloseAuthTimeout, CloseDuplicate, CloseTooMany, 4000} {
		if got := isAuthFailure(code); got != want[code] {
			t.Errorf("isAuthFailure(%d) = %v, want %v", code, got, want[code])
		}
	}
}
