package alerts_test

import (
	"context"
	"testing"
	"time"

	"github.com/kioskfeed/kioskfeed/alerts"
	"github.com/kioskfeed/kioskfeed/broker"
	"github.com/kioskfeed/kioskfeed/broker/brokertest"
	"github.com/kioskfeed/kioskfeed/schedule"
)

// quietFleet is the test fleet whose feeds keep the quiet hours of real schedules,
// stored in the broker and evaluated as the bridge does (broker.Schedules.Asleep).
type quietFleet struct {
	*fleet
	s *broker.Schedules
}

func (q quietFleet) Asleep(feed string) bool { return q.s.Asleep(feed, time.Now()) }

// TestQuietHours: a device of a feed scheduled asleep raises no device_offline however
// long it is gone, while one of an awake feed that went at the same time does (so the
// rule ran); at the wake its offline time starts again, so its device_offline comes
// alert_offline_after after the wake, with that as its since; back, it is resolved.
func TestQuietHours(t *testing.T) {
	b := brokertest.New(t)
	ctx := context.Background()
	scheds, err := broker.NewSchedules(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(scheds.Stop)
	asleep := schedule.Spec{TimeZone: "UTC", Week: map[string][]string{}} // asleep all week
	if _, err := scheds.Put(ctx, "lobby", asleep, "test"); err != nil {
		t.Fatal(err)
	}
	sleeper := alerts.Device{ID: "dev_AAAAAAAAAAAAAAAAAAAA", Feed: "lobby"}
	control := alerts.Device{ID: "dev_BBBBBBBBBBBBBBBBBBBB", Feed: "hall"}
	fl := quietFleet{newFleet(sleeper, control), scheds}
	fl.set(sleeper.ID, true)
	fl.set(control.ID, true)
	const after = time.Second
	startService(t, b, fl, alerts.Config{OfflineAfter: after, Every: 50 * time.Millisecond})

	kv := stateBucket(t, b)
	waitFor(t, 5*time.Second, "both devices' state records", func() bool {
		_, err1 := kv.Get(ctx, sleeper.ID)
		_, err2 := kv.Get(ctx, control.ID)
		return err1 == nil && err2 == nil
	})
	fl.set(sleeper.ID, false)
	fl.set(control.ID, false)
	waitFor(t, 10*time.Second, "the awake feed's device_offline", func() bool {
		return len(ofType(storedAlerts(t, b), alerts.TypeDeviceOffline, control.ID)) == 1
	})
	// Twice the threshold past the control's alert, the sleeper still has none.
	waitFor(t, 10*time.Second, "two thresholds more", func() bool {
		off := ofType(storedAlerts(t, b), alerts.TypeDeviceOffline, control.ID)
		return off[0].Since != nil && time.Since(*off[0].Since) > 3*after
	})
	if got := ofType(storedAlerts(t, b), alerts.TypeDeviceOffline, sleeper.ID); len(got) != 0 {
		t.Fatalf("device_offline for a device whose feed is asleep: %+v", got)
	}

	// The wake: the schedule is deleted (awake from now on). The wake cannot come before
	// the call begins, and the rule may see it before the call returns: the time taken
	// before it is the bound to measure the alert's delay from.
	woke := time.Now()
	if ok, err := scheds.Delete(ctx, "lobby"); !ok || err != nil {
		t.Fatalf("delete the schedule: %v, %v", ok, err)
	}
	waitFor(t, 10*time.Second, "the sleeper's device_offline after the wake", func() bool {
		return len(ofType(storedAlerts(t, b), alerts.TypeDeviceOffline, sleeper.ID)) == 1
	})
	if d := time.Since(woke); d < after {
		t.Errorf("device_offline came %s after the wake, before alert_offline_after (%s)", d, after)
	}
	off := ofType(storedAlerts(t, b), alerts.TypeDeviceOffline, sleeper.ID)[0]
	if off.Since == nil || off.Since.Before(woke.Add(-time.Second).Truncate(time.Second)) {
		t.Errorf("device_offline since %v; want the wake (%s), not when the device went", off.Since, woke.Format(time.RFC3339))
	}
	fl.set(sleeper.ID, true)
	waitFor(t, 10*time.Second, "device_online", func() bool {
		on := ofType(storedAlerts(t, b), alerts.TypeDeviceOnline, sleeper.ID)
		return len(on) == 1 && on[0].Resolves == off.ID
	})
}
