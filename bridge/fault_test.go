package bridge_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	mrand "math/rand/v2"
	"testing"
	"time"

	"github.com/kioskfeed/kioskfeed/bridge"
	"github.com/kioskfeed/kioskfeed/bridge/bridgetest"
	"github.com/kioskfeed/kioskfeed/broker"
	"github.com/kioskfeed/kioskfeed/broker/brokertest"
	"github.com/kioskfeed/kioskfeed/pairing"
	"github.com/kioskfeed/kioskfeed/pairing/pairingtest"
)

// externalBroker connects a broker to a standalone NATS server the test can stop.
func externalBroker(t *testing.T, n *brokertest.NATS) *broker.Broker {
	t.Helper()
	b, err := broker.New(bg, broker.Config{URL: n.URL(), OpTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close(bg) })
	return b
}

// reconnect retries a handshake, as the PWA does, with full-jitter exponential backoff
// (here from 200 ms, capped at 3 s, to keep tests short), until it is welcomed or d
// passes, and returns the welcomed socket and the close codes met on the way.
func reconnect(t testing.TB, s *stack, tab *pairingtest.Tablet, since uint64, epoch string, d time.Duration) (*bridgetest.Conn, []int) {
	t.Helper()
	var codes []int
	deadline := time.Now().Add(d)
	backoff := 200 * time.Millisecond
	for time.Now().Before(deadline) {
		c, err := bridgetest.Dial(bg, s.wsURL, s.origin, s.Listener.Addr().String())
		if err == nil {
			if _, err = c.Handshake(tab, s.wsURL, since, epoch, wait); err == nil {
				t.Cleanup(func() { _ = c.Abort() })
				return c, codes
			}
			codes = append(codes, closeCode(err))
			_ = c.Abort()
		}
		time.Sleep(time.Duration(mrand.Int64N(int64(backoff))))
		backoff = min(2*backoff, 3*time.Second)
	}
	t.Fatalf("not welcomed within %v; close codes met: %v", d, codes)
	return nil, nil
}

// killedUnderATablet is two instances, A and B, on one NATS with lease TTL ttl, and a
// tablet synced on A when A dies without a clean close: its NATS connection and the
// tablet's socket drop at the same instant, so its lease stays behind. An event is
// published through B meanwhile; the tablet, refreshed through B, is ready to come back.
type killedUnderATablet struct {
	b      *stack
	bB     *broker.Broker
	tab    *pairingtest.Tablet
	since  uint64 // the tablet's last seq on A
	epoch  string
	missed uint64 // published while A was dead
	killed time.Time
}

func killUnderATablet(t *testing.T, ttl time.Duration) killedUnderATablet {
	t.Helper()
	n := brokertest.StartNATS(t)
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	keys := []*ecdsa.PrivateKey{k}
	withTTL := func(c *bridge.Config) { c.LeaseTTL = ttl }
	bA, bB := externalBroker(t, n), externalBroker(t, n)
	a := startStack(t, stackOpts{broker: bA, keys: keys, bridge: withTTL})
	b := startStack(t, stackOpts{broker: bB, keys: keys, bridge: withTTL})

	tab := a.pair(t, "lobby")
	a.publish(t, "lobby", "state", `{"title":"before"}`)
	c, w := a.connect(t, tab, 0, "")
	_, _, synced, err := c.Collect(wait)
	if err != nil {
		t.Fatal(err)
	}
	_ = bA.Close(bg) // the crash
	_ = c.Abort()
	k2 := killedUnderATablet{b: b, bB: bB, tab: tab, since: synced.Seq(), epoch: w.Str("epoch"), killed: time.Now()}
	k2.missed = b.publish(t, "lobby", "item", `{"text":"while A was dead"}`)

	tab.BaseURL = b.public
	b.route(tab)
	if err := tab.Refresh(bg); err != nil {
		t.Fatal(err)
	}
	return k2
}

// comeBack reconnects the tablet through B, retrying for up to d: only 4409s may be
// met on the way, and the tablet gets exactly the event it missed.
func (k killedUnderATablet) comeBack(t *testing.T, d time.Duration) (codes []int) {
	t.Helper()
	c, codes := reconnect(t, k.b, k.tab, k.since, k.epoch, d)
	for _, code := range codes {
		if code != 4409 {
			t.Fatalf("refusals while A's lease stood: %v, want only 4409", codes)
		}
	}
	if got := eventsUntil(t, c, k.missed); fmt.Sprint(got) != fmt.Sprint([]uint64{k.missed}) {
		t.Fatalf("after the move: %v, want exactly [%d]", got, k.missed)
	}
	return codes
}

// TestKilledInstanceFreesItsLeasesWithinTTL: instance A dies without a clean close.
// The tablet's reconnect through instance B is refused (4409) while A might be alive,
// and welcomed once A's liveness key has expired, with exactly the missed events.
func TestKilledInstanceFreesItsLeasesWithinTTL(t *testing.T) {
	const ttl = 2 * time.Second
	k := killUnderATablet(t, ttl)
	codes := k.comeBack(t, 5*ttl)
	took := time.Since(k.killed)
	if took > 3*ttl {
		t.Fatalf("back after %v, want within a few lease TTLs (%v)", took, ttl)
	}
	t.Logf("welcomed on B %v after A died (lease TTL %v, %d refusals first)", took.Round(10*time.Millisecond), ttl, len(codes))
}

// TestNATSRestartMidConnection: NATS goes away under a connected tablet and comes back.
// The instance, unable to prove its lease, closes the socket (1011); the tablet retries
// and, once NATS is back, resyncs with nothing missed, without a restart of kioskfeed.
func TestNATSRestartMidConnection(t *testing.T) {
	n := brokertest.StartNATS(t)
	b := externalBroker(t, n)
	s := startStack(t, stackOpts{broker: b, bridge: func(c *bridge.Config) { c.LeaseTTL = 2 * time.Second }})
	tab := s.pair(t, "lobby")
	first := s.publish(t, "lobby", "state", `{"title":"before the outage"}`)
	c, w := s.connect(t, tab, 0, "")
	p := startPump(c)
	p.expect(t, "synced")

	n.Stop()
	if code := p.closed(t, 10*time.Second); code != 1011 {
		t.Fatalf("socket closed with %d while NATS was down, want 1011", code)
	}
	n.Start()
	var after []uint64
	brokertest.Eventually(t, 15*time.Second, "publishing works again", func() bool {
		res, err := b.Publish(bg, "lobby", broker.EventInput{ID: "after-restart", Kind: "item", Data: []byte(`{"text":"after"}`)})
		if err == nil {
			after = append(after, res.Seq)
		}
		return err == nil
	})
	c2, _ := reconnect(t, s, tab, first, w.Str("epoch"), 20*time.Second)
	if got := eventsUntil(t, c2, after[0]); fmt.Sprint(got) != fmt.Sprint(after) {
		t.Fatalf("after the outage: %v, want exactly %v", got, after)
	}
	live := s.publish(t, "lobby", "item", `{"text":"live again"}`)
	if got := eventsUntil(t, c2, live); fmt.Sprint(got) != fmt.Sprint([]uint64{live}) {
		t.Fatalf("live after the outage: %v, want [%d]", got, live)
	}
}

// TestClockSkewedInstance: an instance whose clock is 5 minutes fast still serves the
// tablets of a cluster. Its tokens, nonces and PIN expiries use the cluster's clock (its
// measured offset to NATS), so its peers accept them; proofs keep their own skew window.
func TestClockSkewedInstance(t *testing.T) {
	n := brokertest.StartNATS(t)
	skewed, err := broker.New(bg, broker.Config{URL: n.URL(), OpTimeout: time.Second, Now: func() time.Time { return time.Now().Add(5 * time.Minute) }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = skewed.Close(bg) })
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	keys := []*ecdsa.PrivateKey{k}
	const public = "http://kiosk.test" // one cluster, one public URL
	a := startStack(t, stackOpts{broker: skewed, keys: keys, public: public})
	b := startStack(t, stackOpts{broker: externalBroker(t, n), keys: keys, public: public})

	// A PIN issued on the correct instance (4 minutes) is redeemed on the skewed one:
	// its expiry must not look past.
	pin := b.issuePIN(t, "lobby", "4m")
	tab := a.tablet(t)
	if err := tab.Pair(bg, "lobby", pin, ""); err != nil {
		t.Fatalf("PIN from the correct instance refused by the skewed one: %v", err)
	}
	// The token the skewed instance minted is used, as it is, on the correct one.
	c := b.dial(t)
	if _, err := c.Handshake(tab, b.wsURL, 0, "", wait); err != nil {
		t.Fatalf("token minted on the skewed instance refused by its peer: %v", err)
	}
	_ = c.Close()
	brokertest.Eventually(t, wait, "lease released", func() bool { on, _ := b.br.Presence(tab.DeviceID); return !on })
	// And a token from the correct instance works on the skewed one.
	b.route(tab)
	if err := tab.Refresh(bg); err != nil {
		t.Fatal(err)
	}
	c = a.dial(t)
	if _, err := c.Handshake(tab, a.wsURL, 0, "", wait); err != nil {
		t.Fatalf("token from the correct instance refused by the skewed one: %v", err)
	}
}

// TestMachineClockAheadOfClusterClock: on a machine whose clock is 5 minutes fast,
// broker.Now (the cluster's time) is 5 minutes behind the machine's. Socket deadlines
// are compared with the machine's clock, so they must not be computed from the cluster's
// or every read would time out at once (a 4408 before the tablet could speak).
func TestMachineClockAheadOfClusterClock(t *testing.T) {
	behind := func() time.Time { return time.Now().Add(-5 * time.Minute) }
	s := startStack(t, stackOpts{
		pair:   func(c *pairing.Config) { c.Now = behind },
		bridge: func(c *bridge.Config) { c.Now = behind; c.Heartbeat = time.Second },
	})
	tab := s.pair(t, "lobby")
	c, _ := s.connect(t, tab, 0, "")
	p := startPump(c)
	p.expect(t, "synced")
	for range 3 { // it stays: heartbeats keep coming and are answered
		p.expect(t, "heartbeat")
	}
}

// TestQuickNATSRestartKeepsSocketsAndLeases: the lease buckets are in memory storage, so
// a NATS restart loses them. A restart shorter than the lease TTL must not cost the
// tablets their sockets: the instance sets the buckets up again and takes its sockets'
// leases again, so a second connection of the device is still refused 4409.
func TestQuickNATSRestartKeepsSocketsAndLeases(t *testing.T) {
	n := brokertest.StartNATS(t)
	b := externalBroker(t, n)
	s := startStack(t, stackOpts{broker: b, bridge: func(c *bridge.Config) { c.LeaseTTL = 6 * time.Second }})
	tab := s.pair(t, "lobby")
	c, _ := s.connect(t, tab, 0, "")
	p := startPump(c)
	p.expect(t, "synced")

	n.Stop()
	n.Start()
	var after uint64
	brokertest.Eventually(t, 15*time.Second, "publishing works again", func() bool {
		res, err := b.Publish(bg, "lobby", broker.EventInput{ID: "after-quick-restart", Kind: "item", Data: []byte(`{"text":"after"}`)})
		after = res.Seq
		return err == nil
	})
	if ev := p.expectWithin(t, "event", 15*time.Second); ev.Seq() != after {
		t.Fatalf("after the restart the socket got %s, want seq %d", ev.Raw, after)
	}
	// The lease is ours again once the upkeep has restored the buckets; then a
	// duplicate is refused.
	brokertest.Eventually(t, 15*time.Second, "the device's lease taken again", func() bool {
		kv, err := b.JetStream().KeyValue(bg, bridge.BucketLeases)
		if err != nil {
			return false
		}
		_, err = kv.Get(bg, tab.DeviceID)
		return err == nil
	})
	dup := s.dial(t)
	if _, err := dup.Handshake(tab, s.wsURL, 0, "", wait); closeCode(err) != 4409 {
		t.Fatalf("duplicate after the restart: %v, want close 4409", err)
	}
	select {
	case err := <-p.done:
		t.Fatalf("the first socket ended: %v", err)
	default:
	}
}
