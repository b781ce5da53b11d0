package pairing

import (
	"fmt"
	"net/http/httptest"
	"testing"
	"time"
)

func TestClientAddr(t *testing.T) {
	tests := []struct {
		name    string
		trusted []string
		remote  string
		xff     []string // X-Forwarded-For header lines, in order
		want    string
	}{
		{name: "no trusted proxies: the peer, XFF ignored", remote: "203.0.113.7:5555", xff: []string{"198.51.100.1"}, want: "203.0.113.7"},
		{name: "no trusted proxies, no XFF", remote: "203.0.113.7:5555", want: "203.0.113.7"},
		{name: "untrusted peer: its XFF is ignored", trusted: []string{"10.0.0.1"}, remote: "203.0.113.7:5555", xff: []string{"198.51.100.1"}, want: "203.0.113.7"},
		{name: "untrusted peer claiming to be the proxy", trusted: []string{"10.0.0.1"}, remote: "203.0.113.7:5555", xff: []string{"10.0.0.1"}, want: "203.0.113.7"},
		{name: "trusted proxy: the address it saw", trusted: []string{"10.0.0.1"}, remote: "10.0.0.1:443", xff: []string{"198.51.100.1"}, want: "198.51.100.1"},
		{name: "trusted proxy: spoofed leftmost entries ignored", trusted: []string{"10.0.0.1"}, remote: "10.0.0.1:443", xff: []string{"1.1.1.1, 10.0.0.9, 198.51.100.1"}, want: "198.51.100.1"},
		{name: "trusted proxy without XFF: the proxy", trusted: []string{"10.0.0.1"}, remote: "10.0.0.1:443", want: "10.0.0.1"},
		{name: "chain of trusted proxies", trusted: []string{"10.0.0.0/8"}, remote: "10.0.0.3:443", xff: []string{"6.6.6.6, 198.51.100.1, 10.0.0.1, 10.0.0.2"}, want: "198.51.100.1"},
		{name: "chain given as single addresses", trusted: []string{"10.0.0.3", "192.0.2.10"}, remote: "10.0.0.3:443", xff: []string{"198.51.100.1, 192.0.2.10"}, want: "198.51.100.1"},
		{name: "every hop trusted: the leftmost proxy", trusted: []string{"10.0.0.0/8"}, remote: "10.0.0.3:443", xff: []string{"10.0.0.1, 10.0.0.2"}, want: "10.0.0.1"},
		{name: "CIDR written with host bits", trusted: []string{"10.9.9.9/8"}, remote: "10.200.0.1:443", xff: []string{"198.51.100.1"}, want: "198.51.100.1"},
		{name: "multiple XFF lines are one list", trusted: []string{"10.0.0.1"}, remote: "10.0.0.1:443", xff: []string{"6.6.6.6", "198.51.100.1"}, want: "198.51.100.1"},
		{name: "multiple XFF lines through a chain", trusted: []string{"10.0.0.0/8"}, remote: "10.0.0.3:443", xff: []string{"6.6.6.6, 198.51.100.1", "10.0.0.2"}, want: "198.51.100.1"},
		{name: "spaces around entries", trusted: []string{"10.0.0.1"}, remote: "10.0.0.1:443", xff: []string{"6.6.6.6 ,\t198.51.100.1 "}, want: "198.51.100.1"},
		{name: "garbage XFF: the proxy", trusted: []string{"10.0.0.1"}, remote: "10.0.0.1:443", xff: []string{"<script>alert(1)</script>"}, want: "10.0.0.1"},
		{name: "empty XFF: the proxy", trusted: []string{"10.0.0.1"}, remote: "10.0.0.1:443", xff: []string{""}, want: "10.0.0.1"},
		{name: "garbage left of the client is not read", trusted: []string{"10.0.0.1"}, remote: "10.0.0.1:443", xff: []string{"not-an-ip, 198.51.100.1"}, want: "198.51.100.1"},
		{name: "garbage among trusted hops stops at the last trusted one", trusted: []string{"10.0.0.0/8"}, remote: "10.0.0.3:443", xff: []string{"198.51.100.1, junk, 10.0.0.2"}, want: "10.0.0.2"},
		{name: "address with a port is not an address", trusted: []string{"10.0.0.1"}, remote: "10.0.0.1:443", xff: []string{"198.51.100.1:5555"}, want: "10.0.0.1"},
		{name: "IPv6 peer", remote: "[2001:db8::1]:443", want: "2001:db8::1"},
		{name: "IPv6 client behind an IPv6 proxy", trusted: []string{"2001:db8:ffff::/48"}, remote: "[2001:db8:ffff::1]:443", xff: []string{"2001:db8:1::5"}, want: "2001:db8:1::5"},
		{name: "IPv6 client in long form comes out canonical", trusted: []string{"10.0.0.1"}, remote: "10.0.0.1:443", xff: []string{"2001:DB8:1:0:0:0:0:5"}, want: "2001:db8:1::5"},
		{name: "IPv4-mapped peer is its IPv4 address", remote: "[::ffff:203.0.113.7]:443", want: "203.0.113.7"},
		{name: "IPv4-mapped peer matches an IPv4 trusted proxy", trusted: []string{"10.0.0.0/8"}, remote: "[::ffff:10.0.0.1]:443", xff: []string{"198.51.100.1"}, want: "198.51.100.1"},
		{name: "IPv4-mapped client comes out as IPv4", trusted: []string{"10.0.0.1"}, remote: "10.0.0.1:443", xff: []string{"::ffff:198.51.100.1"}, want: "198.51.100.1"},
		{name: "IPv4-mapped hop matches an IPv4 trusted proxy", trusted: []string{"10.0.0.0/8"}, remote: "10.0.0.2:443", xff: []string{"198.51.100.1, ::ffff:10.0.0.1"}, want: "198.51.100.1"},
		{name: "trusted proxy configured in IPv4-mapped form", trusted: []string{"::ffff:10.0.0.1"}, remote: "10.0.0.1:443", xff: []string{"198.51.100.1"}, want: "198.51.100.1"},
		{name: "trusted range configured in IPv4-mapped form", trusted: []string{"::ffff:10.0.0.0/104"}, remote: "[::ffff:10.0.0.1]:443", xff: []string{"198.51.100.1"}, want: "198.51.100.1"},
		{name: "RemoteAddr without a port", remote: "203.0.113.7", want: "203.0.113.7"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := newClientAddr(tt.trusted)
			if err != nil {
				t.Fatalf("newClientAddr(%q): %v", tt.trusted, err)
			}
			r := httptest.NewRequest("POST", "/api/pair", nil)
			r.RemoteAddr = tt.remote
			for _, v := range tt.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			if got := c.of(r); got != tt.want {
				t.Fatalf("client address = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestClientAddrConfig(t *testing.T) {
	for _, bad := range []string{"proxy.example", "10.0.0.0/33", "10.0.0.1/", "", "2001:db8::/129"} {
		if _, err := newClientAddr([]string{bad}); err == nil {
			t.Errorf("newClientAddr(%q): got no error, want one", bad)
		}
	}
}

func TestLimiter(t *testing.T) {
	const every, burst = 10 * time.Second, 3
	clk := newTestClock(time.Unix(1_800_000_000, 0))
	l := newLimiter(every, burst, clk.Now)
	allow := func(addr string) bool {
		t.Helper()
		ok, wait := l.allow(addr)
		if ok != (wait == 0) {
			t.Fatalf("allow(%q) = %v, wait %v: want a wait exactly when refused", addr, ok, wait)
		}
		return ok
	}

	// The burst, then refusal with a positive wait no longer than one interval.
	for i := range burst {
		if !allow("a") {
			t.Fatalf("attempt %d of the burst refused", i+1)
		}
	}
	ok, wait := l.allow("a")
	if ok || wait <= 0 || wait > every {
		t.Fatalf("past the burst: allowed %v, wait %v; want a refusal with a wait in (0, %v]", ok, wait, every)
	}
	// Refused attempts take nothing: hammering does not push the wait out.
	for range 50 {
		if _, w := l.allow("a"); w > wait {
			t.Fatalf("wait grew from %v to %v with refused attempts", wait, w)
		}
	}

	// Another address has its own bucket.
	for i := range burst {
		if !allow("b") {
			t.Fatalf("address b, attempt %d: refused while only a is over its limit", i+1)
		}
	}

	// Not before the wait, then exactly one.
	clk.Add(wait / 2)
	if allow("a") {
		t.Fatal("allowed before the wait was over")
	}
	clk.Add(wait - wait/2)
	if !allow("a") {
		t.Fatal("refused after waiting as told")
	}
	if allow("a") {
		t.Fatal("a second attempt allowed after one interval")
	}

	// A full refill after burst intervals, and no more.
	clk.Add(10 * every)
	for i := range burst {
		if !allow("a") {
			t.Fatalf("after the refill, attempt %d refused", i+1)
		}
	}
	if allow("a") {
		t.Fatal("refill went past the burst")
	}
}

// TestLimiterForgetsIdleAddresses: a scan from many addresses leaves nothing behind once
// their buckets are full again, while a bucket still in use is kept.
func TestLimiterForgetsIdleAddresses(t *testing.T) {
	clk := newTestClock(time.Unix(1_800_000_000, 0))
	l := newLimiter(time.Minute, 2, clk.Now)
	for i := range 1000 {
		l.allow(fmt.Sprintf("198.51.%d.%d", i/256, i%256))
	}
	clk.Add(30 * time.Second)
	l.allow("busy")
	l.allow("busy") // empty now; a minute and a half later it holds 1.5 of 2
	clk.Add(90 * time.Second)
	if ok, _ := l.allow("203.0.113.1"); !ok {
		t.Fatal("new address refused")
	}
	l.mu.Lock()
	n := len(l.buckets)
	_, busy := l.buckets["busy"]
	l.mu.Unlock()
	if n != 2 || !busy {
		t.Fatalf("%d buckets kept (busy kept: %v), want 2: the busy one and the new one", n, busy)
	}
	// The busy address was not given a fresh bucket by the sweep.
	l.allow("busy")
	if ok, _ := l.allow("busy"); ok {
		t.Fatal("busy address got more than its refill")
	}
}
