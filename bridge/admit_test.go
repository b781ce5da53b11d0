package bridge_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"go.uber.org/goleak"

	"github.com/kioskfeed/kioskfeed/bridge"
	"github.com/kioskfeed/kioskfeed/bridge/bridgetest"
)

// deployed sets the socket's admission limits to their defaults (the harness turns the
// failure limit off for the attack tests).
func deployed(c *bridge.Config) {
	c.WSFailBurst, c.WSFailEvery = bridge.DefaultWSFailBurst, bridge.DefaultWSFailEvery
	c.WSConnectBurst, c.WSConnectEvery = bridge.DefaultWSConnectBurst, bridge.DefaultWSConnectEvery
}

// garbageAuth is what the flood sends: an auth message no server can accept.
const garbageAuth = `{"type":"auth","token":"garbage","proof":"garbage","since":0}`

// rawAttempt opens one socket (with headers, e.g. X-Forwarded-For) and, when it is
// upgraded, sends garbage auth and returns the close code; when it is refused, the
// HTTP status, checked to be a JSON rate_limited answer with Retry-After for a 429.
func rawAttempt(t *testing.T, s *stack, headers map[string]string) (status, code int) {
	t.Helper()
	nc, r, status := rawOpen(t, s, headers)
	defer nc.Close()
	if status != http.StatusSwitchingProtocols {
		return status, 0
	}
	return status, sendGarbage(t, nc, r)
}

// rawOpen upgrades one socket by hand; a 429 is checked to be JSON rate_limited with a
// Retry-After of whole seconds.
func rawOpen(t *testing.T, s *stack, headers map[string]string) (net.Conn, *bufio.Reader, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(bg, wait)
	defer cancel()
	nc, r, status, err := bridgetest.RawUpgrade(ctx, s.Listener.Addr().String(), "/ws", s.origin, headers)
	if err != nil {
		t.Fatalf("upgrade: %v", err)
	}
	if status == http.StatusTooManyRequests {
		_ = nc.SetReadDeadline(time.Now().Add(wait))
		var body map[string]string
		if err := json.NewDecoder(r).Decode(&body); err != nil || body["error"] != "rate_limited" || body["message"] == "" {
			t.Fatalf("429 body = %v, %v; want JSON rate_limited with a message", body, err)
		}
	}
	return nc, r, status
}

// sendGarbage sends garbage auth on an upgraded socket and returns the close code.
func sendGarbage(t *testing.T, nc net.Conn, r *bufio.Reader) int {
	t.Helper()
	_ = nc.SetWriteDeadline(time.Now().Add(wait))
	if err := wsutil.WriteClientMessage(nc, ws.OpText, []byte(garbageAuth)); err != nil {
		t.Fatalf("send auth: %v", err)
	}
	code, err := bridgetest.ReadClose(r, wait)
	if err != nil {
		t.Fatalf("after garbage auth: %v, want a close frame", err)
	}
	return code
}

// TestGarbageAuthFloodIsLimited: 200 sockets from one address, one after another, each
// sending garbage auth. Past the failure burst (20) the rest are answered 429 with
// Retry-After before the upgrade. On the old code all 200 were upgraded and closed
// 4401.
func TestGarbageAuthFloodIsLimited(t *testing.T) {
	s := startStack(t, stackOpts{bridge: deployed})
	const sockets = 200
	start := time.Now()
	var refused, upgraded int
	for i := range sockets {
		status, code := rawAttempt(t, s, nil)
		switch {
		case status == http.StatusTooManyRequests:
			refused++
		case status == http.StatusSwitchingProtocols && (code == 4401 || code == 4429):
			upgraded++
		default:
			t.Fatalf("socket %d: HTTP %d, close %d; want 429, or 101 then 4401 or 4429", i, status, code)
		}
	}
	// A token comes back every 3 s: a slow run may upgrade a few more than the burst.
	allowed := bridge.DefaultWSFailBurst + int(time.Since(start)/bridge.DefaultWSFailEvery) + 1
	t.Logf("%d sockets: %d upgraded and refused, %d answered 429 (allowance %d)", sockets, upgraded, refused, allowed)
	if upgraded > allowed {
		t.Fatalf("%d of %d garbage-auth sockets were upgraded, want at most %d (the failure burst and its refill)", upgraded, sockets, allowed)
	}
	if refused != sockets-upgraded {
		t.Fatalf("%d answered 429, want the other %d", refused, sockets-upgraded)
	}
}

// TestFailedAuthPastTheAllowanceCloses4429: sockets opened together, before any has
// failed, then all sending garbage auth: the failures past the burst close 4429 (too
// many attempts), not 4401.
func TestFailedAuthPastTheAllowanceCloses4429(t *testing.T) {
	s := startStack(t, stackOpts{bridge: deployed})
	const sockets = 40
	type conn struct {
		nc net.Conn
		r  *bufio.Reader
	}
	conns := make([]conn, sockets)
	for i := range conns {
		nc, r, status := rawOpen(t, s, nil)
		t.Cleanup(func() { nc.Close() })
		if status != http.StatusSwitchingProtocols {
			t.Fatalf("socket %d: HTTP %d before any failure, want 101", i, status)
		}
		conns[i] = conn{nc, r}
	}
	codes := map[int]int{}
	for _, c := range conns {
		codes[sendGarbage(t, c.nc, c.r)]++
	}
	t.Logf("close codes: %v", codes)
	if codes[4401]+codes[4429] != sockets || codes[4429] < sockets-bridge.DefaultWSFailBurst-2 {
		t.Fatalf("close codes %v; want 4401 for the failure burst (%d) and 4429 for the rest", codes, bridge.DefaultWSFailBurst)
	}
}

// TestIPv6SocketsShareTheirPrefix: through a trusted proxy, 40 addresses of one /64
// share one allowance of failed auths, and of handshakes; another /64 has its own. On
// the old code none of the 40 saw a 429.
func TestIPv6SocketsShareTheirPrefix(t *testing.T) {
	proxied := func(burst int) func(*bridge.Config) {
		return func(c *bridge.Config) {
			deployed(c)
			c.TrustedProxies = []string{"127.0.0.1"}
			if burst > 0 {
				c.WSConnectBurst, c.WSConnectEvery = burst, time.Hour
			}
		}
	}
	xff := func(addr string) map[string]string { return map[string]string{"X-Forwarded-For": addr} }
	t.Run("failed auths", func(t *testing.T) {
		s := startStack(t, stackOpts{bridge: proxied(0)})
		first429 := -1
		for i := range 40 {
			if status, _ := rawAttempt(t, s, xff("2001:db8:1:2::"+strconv.FormatInt(int64(i+1), 16))); status == http.StatusTooManyRequests {
				first429 = i
				break
			}
		}
		if first429 < 0 {
			t.Fatal("40 addresses of one /64 sending garbage auth: no 429; want one allowance for the /64")
		}
		if status, code := rawAttempt(t, s, xff("2001:db8:1:3::1")); status != http.StatusSwitchingProtocols || code != 4401 {
			t.Fatalf("another /64: HTTP %d, close %d; want 101 and 4401 (an allowance of its own)", status, code)
		}
	})
	t.Run("handshakes", func(t *testing.T) {
		const burst = 10
		s := startStack(t, stackOpts{bridge: proxied(burst)})
		first429 := -1
		for i := range 40 {
			nc, _, status := rawOpen(t, s, xff(fmt.Sprintf("2001:db8:1:2:%x::1", i)))
			nc.Close()
			if status == http.StatusTooManyRequests {
				first429 = i
				break
			}
		}
		if first429 != burst {
			t.Fatalf("first 429 at handshake %d, want %d (ws_connect_burst for the whole /64)", first429, burst)
		}
	})
}

// TestUpgradeErrorsAreJSON: a bad upgrade request is answered in the JSON error format
// (400 invalid_request, 426 for another WebSocket version, with Sec-WebSocket-Version),
// not gobwas/ws's plain text as on the old code.
func TestUpgradeErrorsAreJSON(t *testing.T) {
	s := startStack(t, stackOpts{})
	for _, tc := range []struct {
		name    string
		headers map[string]string
		want    int
	}{
		{"no Upgrade header", map[string]string{"Upgrade": ""}, 400},
		{"Upgrade to another protocol", map[string]string{"Upgrade": "h2c"}, 400},
		{"no Connection: Upgrade", map[string]string{"Connection": "keep-alive"}, 400},
		{"short key", map[string]string{"Sec-Websocket-Key": "abc"}, 400},
		{"key not base64", map[string]string{"Sec-Websocket-Key": "########################"}, 400},
		{"no version", map[string]string{"Sec-Websocket-Version": ""}, 400},
		{"version 8", map[string]string{"Sec-Websocket-Version": "8"}, 426},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest("GET", s.URL+"/ws", nil)
			if err != nil {
				t.Fatal(err)
			}
			// Through net/http for the whole answer (headers and body); the upgrade
			// headers written by hand as RawUpgrade does.
			req.Header.Set("Origin", s.origin)
			req.Header.Set("Upgrade", "websocket")
			req.Header.Set("Connection", "Upgrade")
			req.Header.Set("Sec-Websocket-Version", "13")
			req.Header.Set("Sec-Websocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
			for k, v := range tc.headers {
				if v == "" {
					req.Header.Del(k)
				} else {
					req.Header.Set(k, v)
				}
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.want)
			}
			var body map[string]string
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Fatalf("Content-Type %q, want application/json", ct)
			}
			if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || body["error"] != "invalid_request" || body["message"] == "" {
				t.Fatalf("body %v, %v; want JSON invalid_request with a message", body, err)
			}
			if tc.want == 426 && resp.Header.Get("Sec-WebSocket-Version") != "13" {
				t.Fatalf("426 without Sec-WebSocket-Version: 13")
			}
		})
	}
}

// TestSocketUpgradedAsTheDrainBeginsGets1012: a socket upgraded just as Shutdown
// begins is refused as draining, 1012 (reconnect elsewhere soon), and not left for
// Shutdown to wait on. On the old code it was counted in the bridge's WaitGroup and
// closed 4429 "too many connections". Nothing it started is left once the drain is
// over: the goroutines then are those there were before the dial (the broker's and the
// HTTP server's), none of the socket's or the bridge's.
func TestSocketUpgradedAsTheDrainBeginsGets1012(t *testing.T) {
	s := startStack(t, stackOpts{})
	var once sync.Once
	shut := make(chan error, 1)
	bridge.OnUpgraded(t, func() {
		once.Do(func() {
			go func() { shut <- s.br.Shutdown(bg) }()
			for end := time.Now().Add(wait); !s.br.Draining() && time.Now().Before(end); {
				time.Sleep(time.Millisecond)
			}
		})
	})
	before := goleak.IgnoreCurrent()
	// The HTTP server's: its listener (the lane) starts its accept loop on the server's
	// first Accept, which may come after the line above.
	listener := goleak.IgnoreAnyFunction("github.com/kioskfeed/kioskfeed/internal/httpx.(*Lane).acceptLoop")
	c := s.dial(t)
	if code, err := c.ExpectClose(wait); err != nil || code != 1012 {
		t.Fatalf("socket upgraded as the drain began: %d, %v; want 1012", code, err)
	}
	select {
	case err := <-shut:
		if err != nil {
			t.Fatalf("shutdown: %v", err)
		}
	case <-time.After(wait):
		t.Fatal("shutdown did not end")
	}
	_ = c.Close()
	if err := goleak.Find(before, listener); err != nil {
		t.Fatalf("goroutines left after the drain: %v", err)
	}
}
