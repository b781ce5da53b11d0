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

func (c *tickCounter) AppendDevices(dst []alerts.Device) []alerts.Device {
	c.ticks.Add(1)
	return c.fleet.AppendDevices(dst)
}

// boundedProgress polls done() until it reaches n, failing if it ever exceeds perTick
// for each tick the rule has begun after its first from, or if it has not reached n
// within d. done is read before the ticks, so everything it counts came from a tick
// counted.
func boundedProgress(t *testing.T, d time.Duration, what string, n, perTick int, from int64, fl *tickCounter, done func() int) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		got := done()
		ticks := int(fl.ticks.Load() - from)
		if got > perTick*ticks {
			t.Fatalf("%d %s within %d ticks, want at most %d a tick", got, what, ticks, perTick)
		}
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d %s after %d ticks", got, n, what, ticks)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// lobbyDevices is n devices of the feed "lobby".
func lobbyDevices(n int) []alerts.Device {
	devs := make([]alerts.Device, n)
	for i := range devs {
		devs[i] = alerts.Device{ID: fmt.Sprintf("dev_%020d", i), Feed: "lobby"}
	}
	return devs
}

// TestUnrecordedOfflineDevicesAreRecordedWithinTheBound: 600 devices that went offline
// before any tick recorded them (a killed instance's tablets, say) are recorded from the
// bridge's last-seen time, at most 256 a tick, as first-seen records are: one tick used
// to write all of them at once. All 600 are recorded in the end.
func TestUnrecordedOfflineDevicesAreRecordedWithinTheBound(t *testing.T) {
	const n, perTick = 600, 256
	b := brokertest.New(t)
	devs := lobbyDevices(n)
	fl := &tickCounter{fleet: newFleet(devs...)}
	gone := time.Now().Add(-time.Second)
	fl.mu.Lock()
	for _, d := range devs {
		fl.lastSeen[d.ID] = gone
	}
	fl.mu.Unlock()
	startService(t, b, fl, alerts.Config{OfflineAfter: time.Minute, Every: 50 * time.Millisecond})

	ctx := context.Background()
	kv := stateBucket(t, b)
	boundedProgress(t, 20*time.Second, "offline devices recorded", n, perTick, 0, fl, func() int { // every tick since the start
		keys, _ := kv.Keys(ctx)
		return len(keys)
	})
}

// TestAlertEdgesPerTickAreBounded: 2,500 recorded devices go offline at once, long past
// the threshold (a killed instance's tablets). One tick raises at most 1,024 of them and
// the next ticks the rest; one tick used to try them all, and on a busy cluster run past
// its deadline with one "alert state unreadable" line per device after it. Every device
// gets its device_offline once, with the since it went, deferred or not.
func TestAlertEdgesPerTickAreBounded(t *testing.T) {
	const n, perTick = 2500, 1024
	b := brokertest.New(t)
	devs := lobbyDevices(n)
	fl := &tickCounter{fleet: newFleet(devs...)}
	for _, d := range devs {
		fl.set(d.ID, true)
	}
	startService(t, b, fl, alerts.Config{OfflineAfter: time.Minute, Every: 50 * time.Millisecond})

	ctx := context.Background()
	kv := stateBucket(t, b)
	waitFor(t, 30*time.Second, "every device's first-seen record", func() bool {
		keys, _ := kv.Keys(ctx)
		return len(keys) == n
	})

	gone := time.Now().Add(-5 * time.Minute)
	fl.mu.Lock()
	for _, d := range devs {
		fl.online[d.ID], fl.lastSeen[d.ID] = false, gone
	}
	fl.mu.Unlock()
	before := fl.ticks.Load() // the tick counted last may be under way and see some of them
	st, err := b.JetStream().Stream(ctx, alerts.StreamAlerts)
	if err != nil {
		t.Fatal(err)
	}
	boundedProgress(t, 60*time.Second, "offline devices raised", n, perTick, before-1, fl, func() int {
		info, err := st.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return int(info.State.Msgs)
	})
	as := storedAlerts(t, b)
	since := gone.UTC().Truncate(time.Second)
	per := map[string]int{}
	for _, a := range ofType(as, alerts.TypeDeviceOffline, "") {
		per[a.DeviceID]++
		if a.Since == nil || !a.Since.Equal(since) {
			t.Errorf("%s: since %v, want %v (when it went, however late the edge)", a.DeviceID, a.Since, since)
		}
	}
	if len(as) != n || len(per) != n {
		t.Fatalf("%d alerts for %d devices, want one device_offline for each of %d", len(as), len(per), n)
	}
}
