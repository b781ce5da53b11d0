package main

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestUpgradeAnswersThroughTheLane: the main listener reads the tablets' upgrade
// requests itself (httpx.Lane); each refusal of docs/protocol.md §5 and §9 must still be
// answered as before, in the JSON error format with nosniff, and a good upgrade gets its
// 101 and the challenge. The 429 is the one the lane asks about twice (its own check,
// then net/http's): the address over its allowance is refused once and counted once.
// The upgrades themselves must not have gone through net/http.
func TestUpgradeAnswersThroughTheLane(t *testing.T) {
	const public = "http://kiosk.example.com"
	s := startServe(t, t.TempDir(), "--public-url", public, "--ws-connect-burst", "2", "--ws-connect-every", "1h")
	addr := strings.TrimPrefix(s.base, "http://")
	req := func(mod func(h map[string]string)) string {
		h := map[string]string{"Host": "kiosk.example.com", "Upgrade": "websocket", "Connection": "Upgrade",
			"Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Origin": public}
		if mod != nil {
			mod(h)
		}
		var b strings.Builder
		b.WriteString("GET /ws HTTP/1.1\r\n")
		for k, v := range h {
			if v != "" {
				b.WriteString(k + ": " + v + "\r\n")
			}
		}
		return b.String() + "\r\n"
	}
	type want struct {
		status int
		code   string
	}
	cases := []struct {
		name string
		raw  string
		want want
	}{
		{"a foreign host", req(func(h map[string]string) { h["Host"] = "evil.example" }), want{421, "misdirected_request"}},
		{"a foreign origin", req(func(h map[string]string) { h["Origin"] = "http://evil.example" }), want{403, "forbidden"}},
		{"no origin", req(func(h map[string]string) { h["Origin"] = "" }), want{403, "forbidden"}},
		{"not an upgrade", req(func(h map[string]string) { h["Upgrade"] = "" }), want{400, "invalid_request"}},
		{"a bad key", req(func(h map[string]string) { h["Sec-WebSocket-Key"] = "short" }), want{400, "invalid_request"}},
		{"version 8", req(func(h map[string]string) { h["Sec-WebSocket-Version"] = "8" }), want{426, "invalid_request"}},
		{"the first of two allowed", req(nil), want{101, ""}},
		{"the second", req(nil), want{101, ""}},
		{"over the allowance", req(nil), want{429, "rate_limited"}},
	}
	for _, c := range cases {
		resp, body := upgradeOnce(t, addr, c.raw)
		if resp.StatusCode != c.want.status {
			t.Fatalf("%s: %d %q, want %d", c.name, resp.StatusCode, body, c.want.status)
		}
		if c.want.status == 101 {
			if !strings.Contains(body, `"type":"challenge"`) {
				t.Fatalf("%s: after the 101 %q, want the challenge", c.name, body)
			}
			continue
		}
		var e struct{ Error, Message string }
		if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error != c.want.code || e.Message == "" {
			t.Fatalf("%s: body %q (%v), want the JSON error %q with a message", c.name, body, err, c.want.code)
		}
		if resp.Header.Get("X-Content-Type-Options") != "nosniff" || resp.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("%s: headers %v, want nosniff and application/json", c.name, resp.Header)
		}
		if c.want.status == 426 && resp.Header.Get("Sec-WebSocket-Version") != "13" {
			t.Fatalf("%s: 426 without Sec-WebSocket-Version: 13 (%v)", c.name, resp.Header)
		}
		if c.want.status == 429 && resp.Header.Get("Retry-After") == "" {
			t.Fatalf("%s: 429 without Retry-After (%v)", c.name, resp.Header)
		}
	}
	samples, _, _ := scrape(t, s.base)
	for series, want := range map[string]float64{
		`kioskfeed_ws_handshakes_total{outcome="rate_limited"}`: 1,
		`kioskfeed_ws_handshakes_total{outcome="bad_origin"}`:   2,
		`kioskfeed_ws_handshakes_total{outcome="bad_upgrade"}`:  3,
		// net/http answered the refusals; the upgrades were the lane's, which net/http
		// never saw (through it, a hijacked upgrade is an answer 200 of route GET /ws).
		`kioskfeed_http_request_duration_seconds_count{code="403",route="GET /ws"}`: 2,
		`kioskfeed_http_request_duration_seconds_count{code="200",route="GET /ws"}`: 0,
	} {
		if got := samples[series]; got != want {
			t.Errorf("/metrics: %s = %g, want %g", series, got, want)
		}
	}
}

// upgradeOnce sends one raw request on a new connection and reads its answer: the
// status and headers, and the body (a JSON error) or, after a 101, the first frame's
// payload.
func upgradeOnce(t *testing.T, addr, raw string) (*http.Response, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("reading the answer to %.60q: %v", raw, err)
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		hdr := make([]byte, 2)
		if _, err := io.ReadFull(br, hdr); err != nil {
			t.Fatal(err)
		}
		payload := make([]byte, hdr[1]&0x7f) // the challenge is short: a 7-bit length
		if _, err := io.ReadFull(br, payload); err != nil {
			t.Fatal(err)
		}
		return resp, string(payload)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}
