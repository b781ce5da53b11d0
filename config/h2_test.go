package config_test

import (
	"strings"
	"testing"
	"time"
)

// The socket admission limits and the IPv6 prefix every per-address limit keys on:
// their defaults, and each refusal naming its source and what would be right.
func TestLimitKeys(t *testing.T) {
	c, _ := mustLoad(t, input{})
	if c.WSConnectBurst != 1000 || c.WSConnectEvery != 20*time.Millisecond || c.WSFailBurst != 20 || c.WSFailEvery != 3*time.Second || c.IPv6Prefix != 64 {
		t.Fatalf("defaults: ws_connect %d/%v, ws_fail %d/%v, ipv6_prefix %d; want 1000/20ms, 20/3s, 64",
			c.WSConnectBurst, c.WSConnectEvery, c.WSFailBurst, c.WSFailEvery, c.IPv6Prefix)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("defaults: Validate() = %v", err)
	}
	for _, tc := range []struct {
		name string
		in   input
		want string // empty: valid
	}{
		{"ipv6_prefix 48", input{env: mapOf("KIOSKFEED_IPV6_PREFIX", "48")}, ""},
		{"ipv6_prefix 128", input{args: []string{"--ipv6-prefix=128"}}, ""},
		{"ipv6_prefix 32", input{env: mapOf("KIOSKFEED_IPV6_PREFIX", "32")}, "KIOSKFEED_IPV6_PREFIX"},
		{"ipv6_prefix 129", input{args: []string{"--ipv6-prefix=129"}}, "--ipv6-prefix"},
		{"ws_connect_burst 0", input{env: mapOf("KIOSKFEED_WS_CONNECT_BURST", "0")}, "KIOSKFEED_WS_CONNECT_BURST"},
		{"ws_fail_burst 0", input{env: mapOf("KIOSKFEED_WS_FAIL_BURST", "0")}, "KIOSKFEED_WS_FAIL_BURST"},
		{"ws_fail_every 0", input{env: mapOf("KIOSKFEED_WS_FAIL_EVERY", "0s")}, "KIOSKFEED_WS_FAIL_EVERY"},
		{"ws_connect_every 2h", input{env: mapOf("KIOSKFEED_WS_CONNECT_EVERY", "2h")}, "KIOSKFEED_WS_CONNECT_EVERY"},
		{"a load run's loose limits", input{env: mapOf("KIOSKFEED_WS_CONNECT_BURST", "100000", "KIOSKFEED_WS_CONNECT_EVERY", "1ms")}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := mustLoad(t, tc.in)
			err := c.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("Validate() = %v, want an error naming %s", err, tc.want)
			}
		})
	}
}
