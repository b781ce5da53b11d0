package bridge

import (
	"encoding/base64"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/kioskfeed/kioskfeed/broker"
	"github.com/kioskfeed/kioskfeed/internal/httpx"
)

// Admission limits of the socket, per client address (IPv6: per Config.IPv6Prefix),
// behind trusted proxies the address they saw. Two allowances, deliberately unequal:
//
//   - handshakes, loose (DefaultWSConnectBurst at once, then one per
//     DefaultWSConnectEvery): hundreds of tablets behind one NAT address reconnect
//     together after a restart, and nothing may throttle them;
//   - failed authentications, strict (DefaultWSFailBurst, then one per
//     DefaultWSFailEvery): a script sending garbage auth is the attack, a real tablet
//     fails rarely (its token is refreshed before it is used).
//
// Over either, a new socket is answered HTTP 429 rate_limited with Retry-After before
// the upgrade. A socket already open whose auth fails once the failures are used up is
// closed 4429 instead of its own code (docs/protocol.md §5: "too many attempts").
const (
	DefaultWSConnectBurst = 1000
	DefaultWSConnectEvery = 20 * time.Millisecond // 50 a second
	DefaultWSFailBurst    = 20
	DefaultWSFailEvery    = 3 * time.Second
)

// admission holds the two per-address allowances of the socket.
type admission struct {
	connects *broker.Limiter
	fails    *broker.Limiter
}

func newAdmission(cfg Config) *admission {
	return &admission{
		connects: broker.NewLimiter(broker.LimiterConfig{Every: cfg.WSConnectEvery, Burst: cfg.WSConnectBurst, IPv6Prefix: cfg.IPv6Prefix}),
		fails:    broker.NewLimiter(broker.LimiterConfig{Every: cfg.WSFailEvery, Burst: cfg.WSFailBurst, IPv6Prefix: cfg.IPv6Prefix}),
	}
}

// admit decides, before the upgrade, whether remote may open a socket now: nil, or the
// 429 to answer. An address whose failures are used up is refused without taking a
// handshake from its allowance.
func (br *Bridge) admit(remote string) error {
	if blocked, wait := br.admission.fails.Blocked(remote); blocked {
		e := broker.RateLimited(wait)
		e.Message = "too many failed authentications from this address; retry after " + strconv.Itoa(e.RetryAfter) + "s"
		return e
	}
	if ok, wait := br.admission.connects.Allow(remote); !ok {
		e := broker.RateLimited(wait)
		e.Message = "too many connections from this address; retry after " + strconv.Itoa(e.RetryAfter) + "s"
		return e
	}
	return nil
}

// authFailed counts a failed authentication from remote and reports whether its
// allowance was used up already: the socket is then closed 4429.
func (br *Bridge) authFailed(remote string) (over bool) {
	ok, _ := br.admission.fails.Allow(remote)
	return !ok
}

// closeVerdict is the hook of session.closeLocked: a socket that is closed before it
// authenticated, for what its client did (a refused or malformed auth, no auth in
// time, a protocol error), counts as a failed authentication of its address, and once
// the address has none left it is closed 4429 instead. Closes that are not the
// client's doing (1011, 1012, 4409, 4429) and those of authenticated sockets (revoked,
// re-auth refused) do not count.
func (br *Bridge) closeVerdict(s *session, r closeReason) closeReason {
	if s.authed.Load() || !isAuthFailure(r.code) {
		return r
	}
	if br.authFailed(s.remote) {
		return reasonTooManyFails
	}
	return r
}

// upgradedHook, when a test sets it (export_test.go), runs after a socket's upgrade and
// before it is registered: where a drain may begin. Production never sets it.
var upgradedHook atomic.Pointer[func()]

// checkUpgrade checks what ws.HTTPUpgrader would, so that a bad upgrade is answered in
// the JSON error format of docs/protocol.md §1 rather than the library's plain text: 400
// invalid_request, or 426 (isUpgradeRequired: answered with Sec-WebSocket-Version: 13)
// for another protocol version (RFC 6455 §4.4). It reads the first value of each
// header, as the library does.
func checkUpgrade(r *http.Request) error {
	bad := func(msg string) error { return httpx.Errorf(httpx.CodeInvalidRequest, msg) }
	first := func(name string) string {
		if v := r.Header[name]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	switch key := first("Sec-Websocket-Key"); {
	case r.ProtoMajor != 1 || r.ProtoMinor < 1:
		return bad("the feed socket is a WebSocket over HTTP/1.1")
	case r.Host == "":
		return bad("the upgrade request needs a Host header")
	case !strings.EqualFold(first("Upgrade"), "websocket"):
		return bad("this is the tablets' WebSocket: send an upgrade request (Upgrade: websocket)")
	case !hasToken(first("Connection"), "upgrade"):
		return bad("the upgrade request needs Connection: Upgrade")
	case len(key) != 24 || !validKey(key):
		return bad("the upgrade request needs a Sec-WebSocket-Key of 16 random bytes in base64")
	}
	switch v := first("Sec-Websocket-Version"); v {
	case "13":
		return nil
	case "":
		return bad("the upgrade request needs Sec-WebSocket-Version: 13")
	default:
		return &httpx.Error{Code: httpx.CodeInvalidRequest, HTTPStatus: http.StatusUpgradeRequired,
			Message: "only WebSocket version 13 is spoken here"}
	}
}

// isUpgradeRequired reports whether err is checkUpgrade's 426.
func isUpgradeRequired(err error) bool {
	var e *httpx.Error
	return errors.As(err, &e) && e.HTTPStatus == http.StatusUpgradeRequired
}

func validKey(k string) bool {
	b, err := base64.StdEncoding.DecodeString(k)
	return err == nil && len(b) == 16
}

// hasToken reports whether a comma-separated header value holds token, case-insensitively.
func hasToken(v, token string) bool {
	for part := range strings.SplitSeq(v, ",") {
		if strings.EqualFold(strings.TrimSpace(part), token) {
			return true
		}
	}
	return false
}

// refuse closes a socket the bridge does not take (draining: 1012; full: 4429), without
// making it a session: the 101 and the close frame in one write, FIN, and a short bounded wait
// for the tablet's reply, on the HTTP handler's own goroutine. It is not counted in
// br.wg, so a drain never waits for it.
func (br *Bridge) refuse(conn net.Conn, key string, r closeReason) {
	br.metrics.closes.WithLabelValues(r.label()).Inc()
	_ = conn.SetWriteDeadline(time.Now().Add(br.cfg.CloseGrace))
	if _, err := conn.Write(upgradeResponse(key, closeFrame(r.code, r.reason))); err != nil {
		_ = conn.Close()
		return
	}
	closeGracefully(conn, br.cfg.CloseGrace)
}
