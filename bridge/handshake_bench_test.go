package bridge_test

import (
	"testing"

	"github.com/kioskfeed/kioskfeed/bridge/bridgetest"
	"github.com/kioskfeed/kioskfeed/pairing/pairingtest"
)

// BenchmarkHandshake is one tablet's whole WebSocket handshake over a real loopback
// socket (issue 15): the HTTP upgrade, the challenge, the auth with a real token and
// DPoP proof (two ES256 verifications), the lease, the welcome and the empty catch-up
// up to synced. The tablets are paired before the clock starts; the client's work (its
// proof's ES256 signature, its reads) is in the figure too, as both share this process.
func BenchmarkHandshake(b *testing.B) {
	s := benchStack(b)
	tabs := make([]*pairingtest.Tablet, b.N)
	for i := range tabs {
		tabs[i] = s.pair(b, "lobby")
	}
	conns := make([]*bridgetest.Conn, 0, b.N)
	b.Cleanup(func() {
		for _, c := range conns {
			_ = c.Abort()
		}
	})
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		c, err := bridgetest.Dial(bg, s.wsURL, s.origin, "")
		if err != nil {
			b.Fatal(err)
		}
		conns = append(conns, c)
		if _, err := c.Handshake(tabs[i], s.wsURL, 0, "", wait); err != nil {
			b.Fatal(err)
		}
		if _, _, _, err := c.Collect(wait); err != nil {
			b.Fatal(err)
		}
	}
}
