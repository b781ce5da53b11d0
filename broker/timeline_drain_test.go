package broker_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/kioskfeed/kioskfeed/broker"
	"github.com/kioskfeed/kioskfeed/broker/brokertest"
)

// TestTimelineDrains: a drain writes no offline per tablet; it is drawn into the
// records of the devices whose newest record before it is its instance's and not
// offline: a flap when the device is back within TimelineDrainGap, else offline from
// the drain.
func TestTimelineDrains(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 14, 0, 0, 0, time.UTC)
	sec := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	rec := func(s int, state, by string) broker.TimelineRecord {
		return broker.TimelineRecord{State: state, At: sec(s), By: by}
	}
	drainA := []broker.TimelineRecord{{State: broker.TimelineDrain, At: sec(100), By: "iA"}}
	gap := int(broker.TimelineDrainGap / time.Second)
	flapped := func(r broker.TimelineRecord) broker.TimelineRecord { r.Flaps++; return r }
	for _, tc := range []struct {
		name string
		recs []broker.TimelineRecord
		now  int
		want []broker.TimelineRecord
	}{
		{"back within the gap: a flap", []broker.TimelineRecord{rec(10, "online", "iA"), rec(100+gap, "online", "iB")}, 300,
			[]broker.TimelineRecord{rec(10, "online", "iA"), flapped(rec(100+gap, "online", "iB"))}},
		{"back later: offline from the drain", []broker.TimelineRecord{rec(10, "behind", "iA"), rec(101+gap, "online", "iB")}, 300,
			[]broker.TimelineRecord{rec(10, "behind", "iA"), rec(100, "offline", "iA"), rec(101+gap, "online", "iB")}},
		{"not back, the gap over: offline from the drain", []broker.TimelineRecord{rec(10, "online", "iA")}, 101 + gap,
			[]broker.TimelineRecord{rec(10, "online", "iA"), rec(100, "offline", "iA")}},
		{"not back yet, within the gap", []broker.TimelineRecord{rec(10, "online", "iA")}, 100 + gap,
			[]broker.TimelineRecord{rec(10, "online", "iA")}},
		{"on another instance", []broker.TimelineRecord{rec(10, "online", "iB")}, 300, []broker.TimelineRecord{rec(10, "online", "iB")}},
		{"offline already", []broker.TimelineRecord{rec(10, "online", "iA"), rec(50, "offline", "iA")}, 300,
			[]broker.TimelineRecord{rec(10, "online", "iA"), rec(50, "offline", "iA")}},
		{"a record of an older version (no by)", []broker.TimelineRecord{rec(10, "online", "")}, 300, []broker.TimelineRecord{rec(10, "online", "")}},
		{"no record before the drain", []broker.TimelineRecord{rec(150, "online", "iA")}, 300, []broker.TimelineRecord{rec(150, "online", "iA")}},
		{"a record at the drain counts as before it", []broker.TimelineRecord{rec(100, "online", "iA")}, 300,
			[]broker.TimelineRecord{rec(100, "online", "iA"), rec(100, "offline", "iA")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := broker.TimelineDrains(slices.Clone(tc.recs), drainA, sec(tc.now))
			if !slices.Equal(got, tc.want) {
				t.Fatalf("records = %+v\nwant %+v", got, tc.want)
			}
		})
	}

	// Two drains in a row (A, then the instance that took the device over).
	drains := []broker.TimelineRecord{{State: broker.TimelineDrain, At: sec(100), By: "iA"}, {State: broker.TimelineDrain, At: sec(200), By: "iB"}}
	got := broker.TimelineDrains([]broker.TimelineRecord{rec(10, "online", "iA"), rec(105, "online", "iB")}, drains, sec(400))
	want := []broker.TimelineRecord{rec(10, "online", "iA"), flapped(rec(105, "online", "iB")), rec(200, "offline", "iB")}
	if !slices.Equal(got, want) {
		t.Fatalf("two drains: %+v\nwant %+v", got, want)
	}
}

// TestTimelineRecordsWaitForTheFirstRead: Follow returns without reading the stream (a
// start-up does not wait for it), yet a timeline asked for at once is whole: Records
// waits for the records stored before Follow. Many devices, so that the read is not
// done by the time Follow returns.
func TestTimelineRecordsWaitForTheFirstRead(t *testing.T) {
	b := brokertest.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	w, err := broker.NewTimeline(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	base := b.Now().Add(-10 * time.Minute)
	var notes []broker.TimelineNote
	const devices = 3000
	for i := range devices {
		notes = append(notes, broker.TimelineNote{Device: fmt.Sprintf("dev_%020d", i), TimelineRecord: broker.TimelineRecord{State: broker.TimelineOnline, At: base, By: "iA"}})
	}
	last := fmt.Sprintf("dev_%020d", devices-1)
	notes = append(notes, broker.TimelineNote{Device: last, TimelineRecord: broker.TimelineRecord{State: broker.TimelineOffline, At: base.Add(time.Minute), By: "iA"}})
	if failed := w.Write(ctx, notes); len(failed) != 0 {
		t.Fatalf("%d writes failed", len(failed))
	}
	r, err := broker.NewTimeline(ctx, b) // a restarted instance's reader
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Follow(ctx); err != nil {
		t.Fatal(err)
	}
	defer r.Stop()
	got := r.Records(last) // the last device written: the read's very end
	if len(got) != 2 || got[0].State != broker.TimelineOnline || got[1].State != broker.TimelineOffline || got[1].By != "iA" {
		t.Fatalf("records of the last device right after Follow: %+v, want its online and offline", got)
	}
}
