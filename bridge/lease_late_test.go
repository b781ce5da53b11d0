package bridge_test

import (
	"testing"
	"time"

	"github.com/kioskfeed/kioskfeed/bridge"
)

// TestLateAppliedRenewalKeepsTheSockets: on a slow JetStream a liveness renewal can time
// out here and be applied all the same, so the next renewal names a revision the key no
// longer has. The instance must take the key's revision (only it writes its key) and go
// on, not close every socket. The test makes that late write itself, then waits for the
// instance's own next renewal past it. On the old code the conflict made it re-create
// the key, which failed on the key that stands, and every socket was closed ("lease
// lost").
func TestLateAppliedRenewalKeepsTheSockets(t *testing.T) {
	s := startStack(t, stackOpts{})
	c, _ := s.connect(t, s.pair(t, "lobby"), 0, "")
	live, err := s.b.JetStream().KeyValue(bg, bridge.BucketInstances)
	if err != nil {
		t.Fatal(err)
	}
	id := s.br.InstanceID()
	late, err := live.Put(bg, id, []byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	for end := time.Now().Add(wait); ; time.Sleep(20 * time.Millisecond) {
		e, err := live.Get(bg, id)
		if err == nil && e.Revision() > late {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("the instance did not renew its liveness after the late write (rev %d): %v, %v", late, e, err)
		}
	}
	if _, err := c.Expect("heartbeat", wait); err != nil {
		t.Fatalf("after the late renewal the tablet's socket: %v; want it open, heartbeats going on", err)
	}
}
