package broker_test

import (
	"slices"
	"testing"
	"time"

	"github.com/kioskfeed/kioskfeed/broker"
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
