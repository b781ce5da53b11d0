package bridge_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/kioskfeed/kioskfeed/bridge"
	"github.com/kioskfeed/kioskfeed/bridge/bridgetest"
	"github.com/kioskfeed/kioskfeed/broker/brokertest"
	"github.com/kioskfeed/kioskfeed/pairing/pairingtest"
)

// TestThreeHundredTabletsBehindOneAddressComeBackAfterARestart: a building's tablets
// share one NAT address. 300 of them connect together from 127.0.0.1, the instance
// restarts (drained: 1012 to every socket, a new bridge on the same NATS store and
// keys), and all 300 reconnect together: every one gets its welcome and synced, none
// a 429 or 4429. The socket limits run as deployed (their defaults).
func TestThreeHundredTabletsBehindOneAddressComeBackAfterARestart(t *testing.T) {
	const tablets = 300
	b := brokertest.New(t)
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	keys := []*ecdsa.PrivateKey{k}
	// The sockets are not read between the storms, and a loaded machine is slow: the
	// deployed heartbeat and lease TTL, so that neither a silent-tablet sweep nor a
	// late lease renewal ends a socket the test waits on.
	asDeployed := func(c *bridge.Config) {
		deployed(c)
		c.Heartbeat, c.LeaseTTL = 20*time.Second, 15*time.Second
	}
	before := startStack(t, stackOpts{broker: b, keys: keys, bridge: asDeployed})
	tabs := make([]*pairingtest.Tablet, tablets)
	for i := range tabs {
		tabs[i] = before.pair(t, "lobby")
	}
	before.publish(t, "lobby", "state", `{"title":"before the restart"}`)

	conns := connectAll(t, before, tabs)
	if err := before.br.Shutdown(bg); err != nil {
		t.Fatalf("drain: %v", err)
	}
	var wg sync.WaitGroup
	codes := make([]int, tablets)
	errs := make([]error, tablets)
	for i, c := range conns {
		wg.Go(func() { codes[i], errs[i] = c.ExpectClose(wait) })
	}
	wg.Wait()
	for i, code := range codes {
		if code != 1012 {
			t.Fatalf("tablet %d at the drain: close %d (%v), want 1012", i, code, errs[i])
		}
	}

	// The same public URL (the tablets' tokens and proofs name it), a new listener.
	after := startStack(t, stackOpts{broker: b, keys: keys, public: before.public, bridge: asDeployed})
	connectAll(t, after, tabs)
}

// connectAll connects every tablet at once and waits for each one's welcome and
// synced; any refusal (HTTP 429, a close such as 4429) fails the test. It returns the
// open sockets.
func connectAll(t *testing.T, s *stack, tabs []*pairingtest.Tablet) []*bridgetest.Conn {
	t.Helper()
	conns := make([]*bridgetest.Conn, len(tabs))
	errs := make([]error, len(tabs))
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i, tab := range tabs {
		wg.Go(func() {
			<-start
			c, err := bridgetest.Dial(bg, s.wsURL, s.origin, s.Listener.Addr().String())
			if err != nil {
				errs[i] = err
				return
			}
			conns[i] = c
			if _, err := c.Handshake(tab, s.wsURL, 0, "", 30*time.Second); err != nil {
				errs[i] = fmt.Errorf("handshake: %w", err)
				return
			}
			if _, _, _, err := c.Collect(30 * time.Second); err != nil {
				errs[i] = fmt.Errorf("catch-up: %w", err)
			}
		})
	}
	close(start)
	wg.Wait()
	t.Cleanup(func() {
		for _, c := range conns {
			if c != nil {
				_ = c.Abort()
			}
		}
	})
	failed := 0
	var first error
	for _, err := range errs {
		if err != nil {
			if first == nil {
				first = err
			}
			failed++
		}
	}
	if failed > 0 {
		t.Fatalf("%d of %d tablets from one address did not come back (first: %v)", failed, len(tabs), first)
	}
	return conns
}
