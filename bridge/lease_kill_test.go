package bridge_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"testing"
	"time"

	"github.com/kioskfeed/kioskfeed/bridge"
	"github.com/kioskfeed/kioskfeed/broker/brokertest"
)

// TestKilledInstanceLosesItsLeasesBeforeTheTTL: instance A dies without a clean close
// (its NATS connection and the tablet's socket drop at once). Its liveness key lives on
// for the bucket's TTL, a long one here, but nobody answers A's probes any more and the
// key misses its renewal: B takes the tablet's lease over then, while A's key still
// stands, instead of refusing the tablet (4409) for the whole TTL.
func TestKilledInstanceLosesItsLeasesBeforeTheTTL(t *testing.T) {
	n := brokertest.StartNATS(t)
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	keys := []*ecdsa.PrivateKey{k}
	const ttl = 45 * time.Second // a renewal every 15 s; missed once after 17 s
	long := func(c *bridge.Config) { c.LeaseTTL = ttl }
	bA, bB := externalBroker(t, n), externalBroker(t, n)
	a := startStack(t, stackOpts{broker: bA, keys: keys, bridge: long})
	b := startStack(t, stackOpts{broker: bB, keys: keys, bridge: long})
	live, err := bB.JetStream().KeyValue(bg, bridge.BucketInstances)
	if err != nil {
		t.Fatal(err)
	}
	before, err := live.Keys(bg)
	if err != nil || len(before) != 2 {
		t.Fatalf("liveness keys before the kill: %v, %v; want A's and B's", before, err)
	}

	tab := a.pair(t, "lobby")
	a.publish(t, "lobby", "state", `{"title":"before"}`)
	c, w := a.connect(t, tab, 0, "")
	_, _, synced, err := c.Collect(wait)
	if err != nil {
		t.Fatal(err)
	}
	_ = bA.Close(bg) // the crash: A loses NATS and the socket at the same instant
	_ = c.Abort()
	missed := b.publish(t, "lobby", "item", `{"text":"while A was dead"}`)

	tab.BaseURL = b.public
	b.route(tab)
	if err := tab.Refresh(bg); err != nil {
		t.Fatal(err)
	}
	c2, codes := reconnect(t, b, tab, synced.Seq(), w.Str("epoch"), ttl)
	for _, code := range codes {
		if code != 4409 {
			t.Fatalf("refusals while A's lease stood: %v, want only 4409", codes)
		}
	}
	// Welcomed while A's liveness key still stands: the takeover did not wait for it.
	after, err := live.Keys(bg)
	if err != nil || len(after) != 2 {
		t.Fatalf("liveness keys when B welcomed the tablet: %v, %v; want A's still there", after, err)
	}
	if got := eventsUntil(t, c2, missed); fmt.Sprint(got) != fmt.Sprint([]uint64{missed}) {
		t.Fatalf("after the move: %v, want exactly [%d]", got, missed)
	}
	t.Logf("welcomed on B after %d refusals, A's liveness key still standing", len(codes))
}
