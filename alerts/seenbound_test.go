package alerts_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kioskfeed/kioskfeed/alerts"
	"github.com/kioskfeed/kioskfeed/broker/brokertest"
)

// tickCounter counts the offline rule's ticks: each begins with one Devices call.
type tickCounter struct {
	*fleet
	ticks atomic.Int64
}

func (c *tickCounter) Devices() []alerts.Device {
	c.ticks.Add(1)
	return c.fleet.Devices()
}

// TestUnrecordedOfflineDevicesAreRecordedWithinTheBound: 600 devices that went offline
// before any tick recorded them (a killed instance's tablets, say) are recorded from the
// bridge's last-seen time, at most 256 a tick, as first-seen records are: one tick used
// to write all of them at once. All 600 are recorded in the end.
func TestUnrecordedOfflineDevicesAreRecordedWithinTheBound(t *testing.T) {
	const n, perTick = 600, 256
	b := brokertest.New(t)
	devs := make([]alerts.Device, n)
	for i := range devs {
		devs[i] = alerts.Device{ID: fmt.Sprintf("dev_%020d", i), Feed: "lobby"}
	}
	fl := &tickCounter{fleet: newFleet(devs...)}
	gone := time.Now().Add(-time.Second)
	fl.mu.Lock()
	for _, d := range devs {
		fl.lastSeen[d.ID] = gone
	}
	fl.mu.Unlock()
	startService(t, b, fl, alerts.Config{OfflineAfter: time.Minute, Every: 50 * time.Millisecond})

	ctx := context.Background()
	kv, err := b.JetStream().KeyValue(ctx, alerts.BucketState)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		keys, _ := kv.Keys(ctx)
		ticks := fl.ticks.Load() // after the count: every record read was written by one of these ticks
		if len(keys) > perTick*int(ticks) {
			t.Fatalf("%d state records after %d ticks, want at most %d a tick", len(keys), ticks, perTick)
		}
		if len(keys) == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d offline devices recorded after %d ticks", len(keys), n, ticks)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
