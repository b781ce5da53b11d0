package bridge_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kioskfeed/kioskfeed/broker"
	"github.com/kioskfeed/kioskfeed/broker/brokertest"
)

// TestTimelineDrainWritesOneRecord: over the real TIMELINE stream, a tablet's real
// close writes its offline, but a drain writes none for its sockets: one drain record
// for all. A tablet back (on another instance) within the gap stays online, its drop
// counted as a flap; one that stays away is drawn offline from the drain, by an
// instance started after it (which never saw the lease go). The kill is
// TestTimelineInstanceDies.
func TestTimelineDrainWritesOneRecord(t *testing.T) {
	n := brokertest.StartNATS(t)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	const public = "http://kioskfeed.test"
	gap := 200 * time.Millisecond
	a := timelineStack(t, n, key, public, gap)
	b := timelineStack(t, n, key, public, gap)
	back, away := a.pair(t, "lobby"), a.pair(t, "lobby")
	a.route(back)
	a.route(away)
	draws := func(s *stack, id string, want ...string) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for got := s.timelineOf(t, id).states(); !slices.Equal(got, want); got = s.timelineOf(t, id).states() {
			if time.Now().After(deadline) {
				t.Fatalf("the timeline of %s is %v after 30 s, want %v", id, got, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	c, _ := connectTablet(t, a, back)
	connectTablet(t, a, away)
	_ = c.Abort() // a real close: its offline is written
	draws(b, back.DeviceID, "unknown", "online", "offline")
	// Back only once its offline is longer than the gap, however late the loaded
	// machine wrote it: a shorter one is a flap, drawn inside the online around it.
	if wait := time.Until(b.timelineOf(t, back.DeviceID).Spans[2].From.Add(3 * gap)); wait > 0 {
		time.Sleep(wait)
	}
	connectTablet(t, a, back)
	draws(b, back.DeviceID, "unknown", "online", "offline", "online")
	draws(b, away.DeviceID, "unknown", "online")

	nc, err := nats.Connect(n.URL(), nats.Timeout(10*time.Second)) // 2 s fails on a loaded machine
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	stored := func() map[string]uint64 {
		t.Helper()
		ctx, cancel := context.WithTimeout(bg, 5*time.Second)
		defer cancel()
		st, err := js.Stream(ctx, broker.StreamTimeline)
		if err != nil {
			t.Fatal(err)
		}
		info, err := st.Info(ctx, jetstream.WithSubjectFilter("kioskfeed.timeline.>"))
		if err != nil {
			t.Fatal(err)
		}
		return info.State.Subjects
	}
	before := stored()

	ctx, cancel := context.WithTimeout(bg, 10*time.Second)
	defer cancel()
	if err := a.br.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	after := stored()
	for _, id := range []string{back.DeviceID, away.DeviceID} {
		subject := "kioskfeed.timeline." + id
		if after[subject] != before[subject] {
			t.Fatalf("the drain stored %d records for a tablet it closed, want none", after[subject]-before[subject])
		}
	}
	var drains []string
	for subject := range after {
		if strings.HasPrefix(subject, "kioskfeed.timeline.drain_") {
			drains = append(drains, subject)
		}
	}
	if len(drains) != 1 || after[drains[0]] != 1 {
		t.Fatalf("drain records: %v of %v, want one", drains, after)
	}
	// It names the instance that wrote the tablets' records.
	ctx2, cancel2 := context.WithTimeout(bg, 5*time.Second)
	defer cancel2()
	st, err := js.Stream(ctx2, broker.StreamTimeline)
	if err != nil {
		t.Fatal(err)
	}
	drainMsg, err := st.GetLastMsgForSubject(ctx2, drains[0])
	if err != nil {
		t.Fatal(err)
	}
	last, err := st.GetLastMsgForSubject(ctx2, "kioskfeed.timeline."+away.DeviceID)
	if err != nil {
		t.Fatal(err)
	}
	var drain, rec broker.TimelineRecord
	if json.Unmarshal(drainMsg.Data, &drain) != nil || json.Unmarshal(last.Data, &rec) != nil ||
		drain.State != "drain" || drain.By == "" || drain.By != rec.By || rec.State != "online" ||
		drains[0] != "kioskfeed.timeline.drain_"+drain.By {
		t.Fatalf("drain record %s on %s, the tablet's last %s", drainMsg.Data, drains[0], last.Data)
	}

	// One comes back to B at once: no offline is drawn for the drain, a flap is counted.
	b.route(back)
	connectTablet(t, b, back)
	brokertest.Eventually(t, 30*time.Second, "B draws the tablet back online, the drain's drop a flap", func() bool {
		tl := b.timelineOf(t, back.DeviceID)
		return slices.Equal(tl.states(), []string{"unknown", "online", "offline", "online"}) && tl.Spans[3].Flaps >= 1
	})
	// The other stays away: an instance started now (it never saw its lease) draws it
	// offline from the drain, once the gap has passed.
	c3 := timelineStack(t, n, key, public, gap)
	draws(c3, away.DeviceID, "unknown", "online", "offline")
	if got := c3.timelineOf(t, away.DeviceID).Spans[2].From; got.Unix() != drain.At.Unix() {
		t.Fatalf("offline from %v, want from the drain at %v", got, drain.At)
	}
	draws(c3, back.DeviceID, "unknown", "online", "offline", "online")
}
