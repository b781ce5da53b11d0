package alerts_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kioskfeed/kioskfeed/alerts"
	"github.com/kioskfeed/kioskfeed/broker/brokertest"
)

// TestOfflineThenOnlineOnceAcrossInstances runs the offline rule on two instances
// sharing one NATS: a device that goes offline past the threshold gets exactly one
// device_offline, and one device_online naming it when it is back; a device never seen
// online gets none.
func TestOfflineThenOnlineOnceAcrossInstances(t *testing.T) {
	b := brokertest.New(t)
	seen := alerts.Device{ID: "dev_AAAAAAAAAAAAAAAAAAAA", Feed: "lobby"}
	never := alerts.Device{ID: "dev_BBBBBBBBBBBBBBBBBBBB", Feed: "lobby"}
	fl := newFleet(seen, never)
	fl.set(seen.ID, true)
	cfg := alerts.Config{OfflineAfter: time.Second, Every: 50 * time.Millisecond}
	startService(t, b, fl, cfg)
	startService(t, b, fl, cfg)

	// Both instances look at the device while it is online; then it goes.
	ctx := context.Background()
	kv := stateBucket(t, b)
	waitFor(t, 5*time.Second, "the device's state record", func() bool {
		_, err := kv.Get(ctx, seen.ID)
		return err == nil
	})
	went := time.Now()
	fl.set(seen.ID, false)
	waitFor(t, 10*time.Second, "device_offline", func() bool {
		return len(ofType(storedAlerts(t, b), alerts.TypeDeviceOffline, seen.ID)) > 0
	})
	if d := time.Since(went); d < time.Second {
		t.Errorf("device_offline came %s after the device went, before alert_offline_after (1s)", d)
	}
	// Several ticks of both instances pass while it stays offline; then it is back.
	time.Sleep(300 * time.Millisecond)
	fl.set(seen.ID, true)
	waitFor(t, 10*time.Second, "device_online", func() bool {
		return len(ofType(storedAlerts(t, b), alerts.TypeDeviceOnline, seen.ID)) > 0
	})

	all := storedAlerts(t, b)
	off, on := ofType(all, alerts.TypeDeviceOffline, seen.ID), ofType(all, alerts.TypeDeviceOnline, seen.ID)
	if len(off) != 1 || len(on) != 1 {
		t.Fatalf("got %d device_offline and %d device_online, want one each: %+v", len(off), len(on), all)
	}
	if on[0].Resolves != off[0].ID || off[0].Feed != "lobby" || off[0].Since == nil || on[0].ID == off[0].ID {
		t.Errorf("device_online %+v does not resolve device_offline %+v", on[0], off[0])
	}
	if len(all) != 2 {
		t.Errorf("got %d alerts, want only the two of the device seen online: %+v", len(all), all)
	}

	// Its state record is open again: a second outage raises a second alert.
	fl.set(seen.ID, false)
	deadline := time.Now().Add(10 * time.Second)
	for len(ofType(storedAlerts(t, b), alerts.TypeDeviceOffline, seen.ID)) != 2 {
		if time.Now().After(deadline) {
			e, err := kv.Get(ctx, seen.ID)
			var rec string
			if err == nil {
				rec = string(e.Value())
			}
			t.Fatalf("no second device_offline within 10s; alerts %+v; state record %s (%v)", storedAlerts(t, b), rec, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestBehindThenCaughtUp: a connected device behind for longer than BehindFor gets one
// device_behind, and one device_caught_up when it shows the feed live again; a device
// behind for a moment gets none.
func TestBehindThenCaughtUp(t *testing.T) {
	b := brokertest.New(t)
	slow := alerts.Device{ID: "dev_GGGGGGGGGGGGGGGGGGGG", Feed: "lobby"}
	blip := alerts.Device{ID: "dev_HHHHHHHHHHHHHHHHHHHH", Feed: "lobby"}
	fl := newFleet(slow, blip)
	for _, d := range []alerts.Device{slow, blip} {
		fl.set(d.ID, true)
		fl.show(d.ID, "live")
	}
	cfg := alerts.Config{OfflineAfter: time.Minute, Every: 50 * time.Millisecond, BehindFor: 700 * time.Millisecond}
	startService(t, b, fl, cfg)
	startService(t, b, fl, cfg)
	ctx := context.Background()
	kv := stateBucket(t, b)
	waitFor(t, 5*time.Second, "both state records", func() bool {
		_, e1 := kv.Get(ctx, slow.ID)
		_, e2 := kv.Get(ctx, blip.ID)
		return e1 == nil && e2 == nil
	})
	fl.show(slow.ID, "stale")
	fl.show(blip.ID, "behind")
	time.Sleep(200 * time.Millisecond) // a few ticks, well under BehindFor
	fl.show(blip.ID, "live")
	waitFor(t, 10*time.Second, "device_behind", func() bool {
		return len(ofType(storedAlerts(t, b), alerts.TypeDeviceBehind, slow.ID)) > 0
	})
	fl.show(slow.ID, "live")
	waitFor(t, 10*time.Second, "device_caught_up", func() bool {
		return len(ofType(storedAlerts(t, b), alerts.TypeDeviceCaughtUp, slow.ID)) > 0
	})
	all := storedAlerts(t, b)
	behind, caught := ofType(all, alerts.TypeDeviceBehind, slow.ID), ofType(all, alerts.TypeDeviceCaughtUp, slow.ID)
	if len(behind) != 1 || len(caught) != 1 || caught[0].Resolves != behind[0].ID {
		t.Fatalf("got %+v and %+v, want one device_behind and one device_caught_up resolving it", behind, caught)
	}
	if len(all) != 2 {
		t.Errorf("got %d alerts, want only the slow device's two: %+v", len(all), all)
	}
}

// TestStateOfAnUnpairedDeviceIsForgotten: the state record of a device the registry no
// longer lists is deleted once it is older than a minute (forgetAfter); the records of
// paired devices stay, and so does a recent one of an unlisted device (paired a moment
// ago on another instance, not yet in this one's registry). The tick that deletes the
// old one looks at the recent one in the same pass.
func TestStateOfAnUnpairedDeviceIsForgotten(t *testing.T) {
	b := brokertest.New(t)
	paired := alerts.Device{ID: "dev_AAAAAAAAAAAAAAAAAAAA", Feed: "lobby"}
	startService(t, b, newFleet(paired), alerts.Config{OfflineAfter: time.Hour, Every: 50 * time.Millisecond})
	ctx := context.Background()
	kv := stateBucket(t, b)
	const gone, recent = "dev_GGGGGGGGGGGGGGGGGGGG", "dev_RRRRRRRRRRRRRRRRRRRR"
	old := time.Now().Add(-2 * time.Minute)
	for id, seen := range map[string]time.Time{paired.ID: old, gone: old, recent: time.Now()} {
		val := fmt.Sprintf(`{"device_id":%q,"feed":"lobby","seen":%q}`, id, seen.UTC().Format(time.RFC3339Nano))
		if _, err := kv.Put(ctx, id, []byte(val)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, "the unpaired device's old state record deleted", func() bool {
		_, err := kv.Get(ctx, gone)
		return errors.Is(err, jetstream.ErrKeyNotFound)
	})
	for _, id := range []string{paired.ID, recent} {
		if _, err := kv.Get(ctx, id); err != nil {
			t.Errorf("state record of %s: %v, want it kept", id, err)
		}
	}
}
