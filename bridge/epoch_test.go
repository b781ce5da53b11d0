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

// TestEpochChangeReachesConnectedTablets: a tablet that stays connected while the
// event log is deleted and made anew (by another instance) must not go on taking the
// new log's seqs as the old log's. Its instance notices the new epoch within a lease
// upkeep interval, closes it 1012, and on its way back (with the old epoch) it gets a
// new epoch and a reset with the new log's state (docs/protocol.md §5 steps 3 and 4).
func TestEpochChangeReachesConnectedTablets(t *testing.T) {
	n := brokertest.StartNATS(t)
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	keys := []*ecdsa.PrivateKey{k}
	quickUpkeep := func(c *bridge.Config) { c.LeaseTTL = 3 * time.Second } // upkeep every 1 s
	old := startStack(t, stackOpts{broker: externalBroker(t, n), keys: keys, public: contractPublic, bridge: quickUpkeep})
	tab := old.pair(t, "lobby")
	publishAll(t, old, "lobby", 3)
	c, w := old.connect(t, tab, 0, "")
	_, _, synced, err := c.Collect(wait)
	if err != nil {
		t.Fatal(err)
	}
	oldEpoch, since := w.Str("epoch"), synced.Seq()

	deleteFeedsStream(t, n)
	b2 := externalBroker(t, n) // makes FEEDS anew
	if b2.Epoch() == oldEpoch {
		t.Fatalf("the new log has the old epoch %q", oldEpoch)
	}
	fresh := startStack(t, stackOpts{broker: b2, keys: keys, public: contractPublic})
	seqs := publishAll(t, fresh, "lobby", int(since)+2) // more than the old log had

	// The connected tablet is closed 1012 (not left on a hub of the old log).
	code, err := c.ExpectClose(30 * time.Second)
	if err != nil || code != int(bridge.CloseRestarting) {
		t.Fatalf("the connected tablet after the log was made anew: close %d, %v; want %d", code, err, bridge.CloseRestarting)
	}
	brokertest.Eventually(t, wait, "old lease gone", func() bool { on, _ := old.br.Presence(tab.DeviceID); return !on })
	if err := tab.Refresh(bg); err != nil {
		t.Fatal(err)
	}
	c2, w2 := old.connect(t, tab, since, oldEpoch)
	if got := w2.Str("epoch"); got != b2.Epoch() {
		t.Fatalf("welcome epoch %q, want the new log's %q (the old one was %q)", got, b2.Epoch(), oldEpoch)
	}
	events, reset, synced2, err := c2.Collect(wait)
	if err != nil {
		t.Fatal(err)
	}
	if !reset || fmt.Sprint(seqsOf(events)) != fmt.Sprint(seqs) || synced2.Seq() != seqs[len(seqs)-1] {
		t.Fatalf("back with the old epoch and since=%d: reset %v, events %v, synced %s; want a reset with %v", since, reset, seqsOf(events), synced2.Raw, seqs)
	}
}
