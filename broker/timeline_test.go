package broker_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kioskfeed/kioskfeed/broker"
	"github.com/kioskfeed/kioskfeed/broker/brokertest"
)

func TestTimelineSpans(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 14, 0, 0, 0, time.UTC)
	from, to := t0, t0.Add(time.Hour)
	at := func(min int, state string) broker.TimelineRecord {
		return broker.TimelineRecord{State: state, At: t0.Add(time.Duration(min) * time.Minute)}
	}
	flapped := func(r broker.TimelineRecord, n int) broker.TimelineRecord { r.Flaps = n; return r }
	type span struct {
		state    string
		from, to int // minutes after from
		flaps    int
	}
	for _, tc := range []struct {
		name string
		recs []broker.TimelineRecord
		want []span
	}{
		{"no records", nil, []span{{"unknown", 0, 60, 0}}},
		{"the first record in the hour", []broker.TimelineRecord{at(20, "online")}, []span{{"unknown", 0, 20, 0}, {"online", 20, 60, 0}}},
		{"an older record says how the hour began", []broker.TimelineRecord{at(-30, "online"), at(10, "offline"), at(15, "online")},
			[]span{{"online", 0, 10, 0}, {"offline", 10, 15, 0}, {"online", 15, 60, 0}}},
		{"a record at the hour's start", []broker.TimelineRecord{at(0, "behind"), at(30, "online")}, []span{{"behind", 0, 30, 0}, {"online", 30, 60, 0}}},
		{"repeats (refreshes) start no span", []broker.TimelineRecord{at(-50, "online"), at(-25, "online"), at(5, "online"), at(40, "asleep")},
			[]span{{"online", 0, 40, 0}, {"asleep", 40, 60, 0}}},
		{"records after the end are left out", []broker.TimelineRecord{at(-5, "offline"), at(70, "online")}, []span{{"offline", 0, 60, 0}}},
		{"flaps count in the span they happened in", []broker.TimelineRecord{flapped(at(-10, "online"), 9), flapped(at(10, "offline"), 3), flapped(at(15, "offline"), 2), at(30, "online"), flapped(at(50, "online"), 4)},
			[]span{{"online", 0, 10, 3}, {"offline", 10, 30, 2}, {"online", 30, 60, 4}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var want []broker.TimelineSpan
			for _, s := range tc.want {
				want = append(want, broker.TimelineSpan{State: s.state, From: t0.Add(time.Duration(s.from) * time.Minute), To: t0.Add(time.Duration(s.to) * time.Minute), Flaps: s.flaps})
			}
			if got := broker.TimelineSpans(tc.recs, from, to); !slices.Equal(got, want) {
				t.Fatalf("spans = %+v\nwant %+v", got, want)
			}
		})
	}
}

// TestTimelineBoundPerDevice: a device's records beyond TimelineMaxPerDevice push its
// oldest out, in the stream and in every instance's index, and records written out of
// order (a change that waited for its gap) are read back in time order.
func TestTimelineBoundPerDevice(t *testing.T) {
	b := brokertest.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	w, err := broker.NewTimeline(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	const dev, other = "dev_0000000000000000000A", "dev_0000000000000000000B"
	base := b.Now().Add(-30 * time.Minute)
	var notes []broker.TimelineNote
	const n = broker.TimelineMaxPerDevice + 44
	for i := range n {
		state := broker.TimelineOnline
		if i%2 == 1 {
			state = broker.TimelineOffline
		}
		notes = append(notes, broker.TimelineNote{Device: dev, TimelineRecord: broker.TimelineRecord{State: state, At: base.Add(time.Duration(i) * time.Second)}})
	}
	notes = append(notes,
		broker.TimelineNote{Device: other, TimelineRecord: broker.TimelineRecord{State: broker.TimelineBehind, At: base.Add(time.Minute), Flaps: 7}},
		broker.TimelineNote{Device: other, TimelineRecord: broker.TimelineRecord{State: broker.TimelineOnline, At: base}},
		broker.TimelineNote{Device: "not-a-device", TimelineRecord: broker.TimelineRecord{State: broker.TimelineOnline, At: base}},
	)
	if failed := w.Write(ctx, notes); len(failed) != 0 {
		t.Fatalf("%d writes failed", len(failed))
	}
	st, err := b.JetStream().Stream(ctx, broker.StreamTimeline)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter("kioskfeed.timeline.>"))
	if err != nil {
		t.Fatal(err)
	}
	if got := info.State.Subjects["kioskfeed.timeline."+dev]; got != broker.TimelineMaxPerDevice {
		t.Fatalf("the stream keeps %d records of %d written, want %d", got, n, broker.TimelineMaxPerDevice)
	}
	if len(info.State.Subjects) != 2 {
		t.Fatalf("subjects %v, want the two devices' only", info.State.Subjects)
	}
	r, err := broker.NewTimeline(ctx, b) // another instance's reader, started afterwards
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Follow(ctx); err != nil {
		t.Fatal(err)
	}
	defer r.Stop()
	brokertest.Eventually(t, 10*time.Second, "the reader has the records", func() bool { return len(r.Records(other)) == 2 })
	got := r.Records(dev)
	if len(got) != broker.TimelineMaxPerDevice {
		t.Fatalf("%d records kept of %d written, want %d", len(got), n, broker.TimelineMaxPerDevice)
	}
	if first := base.Add((n - broker.TimelineMaxPerDevice) * time.Second); !got[0].At.Equal(first) {
		t.Fatalf("oldest kept record at %v, want %v (the oldest dropped first)", got[0].At, first)
	}
	if o := r.Records(other); o[0].State != broker.TimelineOnline || o[1].State != broker.TimelineBehind || o[1].Flaps != 7 {
		t.Fatalf("records of %s = %+v, want online then behind (time order)", other, o)
	}
}

func TestTimelineOverlay(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 14, 0, 0, 0, time.UTC)
	sp := func(state string, from, to int) broker.TimelineSpan {
		return broker.TimelineSpan{State: state, From: t0.Add(time.Duration(from) * time.Minute), To: t0.Add(time.Duration(to) * time.Minute)}
	}
	spans := []broker.TimelineSpan{sp("online", 0, 20), sp("offline", 20, 40), sp("online", 40, 60)}
	for _, tc := range []struct {
		name string
		over []broker.TimelineSpan
		want []broker.TimelineSpan
	}{
		{"none", nil, spans},
		{"across a change", []broker.TimelineSpan{sp("", 10, 30)}, []broker.TimelineSpan{sp("online", 0, 10), sp("asleep", 10, 30), sp("offline", 30, 40), sp("online", 40, 60)}},
		{"two, one past the end", []broker.TimelineSpan{sp("", -30, 5), sp("", 50, 90)},
			[]broker.TimelineSpan{sp("asleep", 0, 5), sp("online", 5, 20), sp("offline", 20, 40), sp("online", 40, 50), sp("asleep", 50, 60)}},
		{"the whole hour", []broker.TimelineSpan{sp("", -60, 120)}, []broker.TimelineSpan{sp("asleep", 0, 60)}},
		{"exactly a span", []broker.TimelineSpan{sp("", 20, 40)}, []broker.TimelineSpan{sp("online", 0, 20), sp("asleep", 20, 40), sp("online", 40, 60)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := broker.TimelineOverlay(spans, broker.TimelineAsleep, tc.over); !slices.Equal(got, tc.want) {
				t.Fatalf("overlay = %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

// On one server the TIMELINE stream is written without an fsync per record (async
// persist), and a stream an older version made with the default mode is kept as it is,
// records and all: JetStream cannot change a stream's persist mode.
func TestTimelinePersistMode(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	mode := func(b *broker.Broker) jetstream.PersistModeType {
		t.Helper()
		st, err := b.JetStream().Stream(ctx, broker.StreamTimeline)
		if err != nil {
			t.Fatal(err)
		}
		return st.CachedInfo().Config.PersistMode
	}

	b := brokertest.New(t)
	if _, err := broker.NewTimeline(ctx, b); err != nil {
		t.Fatal(err)
	}
	if m := mode(b); m != jetstream.AsyncPersistMode {
		t.Fatalf("a new TIMELINE stream on one server has persist mode %v, want async", m)
	}

	old := brokertest.New(t)
	if _, err := old.JetStream().CreateStream(ctx, jetstream.StreamConfig{
		Name: broker.StreamTimeline, Subjects: []string{"kioskfeed.timeline.*"}, Storage: jetstream.FileStorage,
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := old.JetStream().Publish(ctx, "kioskfeed.timeline.dev_old", []byte(`{"state":"online","at":"2026-12-01T10:00:00Z"}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := broker.NewTimeline(ctx, old); err != nil {
		t.Fatalf("NewTimeline over an older version's stream: %v", err)
	}
	if m := mode(old); m != jetstream.DefaultPersistMode {
		t.Fatalf("an older stream's persist mode became %v, want it kept (default)", m)
	}
	st, err := old.JetStream().Stream(ctx, broker.StreamTimeline)
	if err != nil {
		t.Fatal(err)
	}
	if info, err := st.Info(ctx); err != nil || info.State.Msgs != 1 || info.Config.MaxMsgsPerSubject != broker.TimelineMaxPerDevice {
		t.Fatalf("older stream after set-up: %+v, %v; want its record kept and the new limits", info, err)
	}
}
