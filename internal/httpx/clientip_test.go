package httpx_test

import (
	"net/http/httptest"
	"testing"

	"github.com/kioskfeed/kioskfeed/internal/httpx"
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
			c, err := httpx.NewClientAddr(tt.trusted)
			if err != nil {
				t.Fatalf("httpx.NewClientAddr(%q): %v", tt.trusted, err)
			}
			r := httptest.NewRequest("POST", "/api/pair", nil)
			r.RemoteAddr = tt.remote
			for _, v := range tt.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			if got := c.Of(r); got != tt.want {
				t.Fatalf("client address = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestClientAddrConfig(t *testing.T) {
	for _, bad := range []string{"proxy.example", "10.0.0.0/33", "10.0.0.1/", "", "2001:db8::/129"} {
		if _, err := httpx.NewClientAddr([]string{bad}); err == nil {
			t.Errorf("httpx.NewClientAddr(%q): got no error, want one", bad)
		}
	}
}
