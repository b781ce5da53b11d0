package bridge_test

import (
	"testing"
	"time"

	"github.com/kioskfeed/kioskfeed/bridge"
)

// TestKilledInstanceLosesItsLeasesBeforeTheTTL: instance A dies without a clean close
// (its NATS connection and the tablet's socket drop at once). Its liveness key lives on
// for the bucket's TTL, a long one here, but nobody answers A's probes any more and the
// key misses its renewal: B takes the tablet's lease over then, while A's key still
// stands, instead of refusing the tablet (4409) for the whole TTL.
func TestKilledInstanceLosesItsLeasesBeforeTheTTL(t *testing.T) {
	const ttl = 45 * time.Second // a renewal every 15 s; missed once after 17 s
	k := killUnderATablet(t, ttl)
	live, err := k.bB.JetStream().KeyValue(bg, bridge.BucketInstances)
	if err != nil {
		t.Fatal(err)
	}
	if keys, err := live.Keys(bg); err != nil || len(keys) != 2 {
		t.Fatalf("liveness keys after the kill: %v, %v; want A's still there and B's", keys, err)
	}
	codes := k.comeBack(t, ttl)
	// Welcomed while A's liveness key still stands: the takeover did not wait for it.
	if keys, err := live.Keys(bg); err != nil || len(keys) != 2 {
		t.Fatalf("liveness keys when B welcomed the tablet: %v, %v; want A's still there", keys, err)
	}
	t.Logf("welcomed on B after %d refusals, A's liveness key still standing", len(codes))
}
