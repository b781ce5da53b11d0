package bridge

import "testing"

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
