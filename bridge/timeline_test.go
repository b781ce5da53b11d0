package bridge_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kioskfeed/kioskfeed/bridge"
	"github.com/kioskfeed/kioskfeed/bridge/bridgetest"
	"github.com/kioskfeed/kioskfeed/broker"
	"github.com/kioskfeed/kioskfeed/broker/brokertest"
	"github.com/kioskfeed/kioskfeed/pairing/pairingtest"
)

type timelineAnswer struct {
	DeviceID string    `json:"device_id"`
	From     time.Time `json:"from"`
	To       time.Time `json:"to"`
	Spans    []struct {
		State string    `json:"state"`
		From  time.Time `json:"from"`
		To    time.Time `json:"to"`
		Flaps int       `json:"flaps"`
	} `json:"spans"`
}

// timelineOf is GET /api/admin/devices/{id}/timeline on this instance.
func (s *stack) timelineOf(t testing.TB, id string) timelineAnswer {
	t.Helper()
	status, raw := s.call(t, "GET", "/api/admin/devices/"+id+"/timeline", "")
	if status != http.StatusOK {
		t.Fatalf("timeline of %s: %d %s", id, status, raw)
	}
	var a timelineAnswer
	if err := json.Unmarshal(raw, &a); err != nil {
		t.Fatalf("timeline of %s: %v in %s", id, err, raw)
	}
	return a
}

// states are the spans' states, in order.
func (a timelineAnswer) states() []string {
	var out []string
	for _, s := range a.Spans {
		out = append(out, s.State)
	}
	return out
}

// timelineStack is an instance on the shared NATS n, with timelines that record every
// change at once (a short gap and sweep) and a device behind after one event not shown.
func timelineStack(t *testing.T, n *brokertest.NATS, key *ecdsa.PrivateKey, public string, gap time.Duration) *stack {
	return startStack(t, stackOpts{broker: externalBroker(t, n), public: public, keys: []*ecdsa.PrivateKey{key}, bridge: func(c *bridge.Config) {
		c.Timeline.MinGap = gap
		c.Timeline.Sweep = 100 * time.Millisecond
		c.Shown.BehindEvents = 1
	}})
}

// connectTablet connects tab to s and waits for its synced.
func connectTablet(t *testing.T, s *stack, tab *pairingtest.Tablet) (*bridgetest.Conn, *pump) {
	t.Helper()
	c, _ := s.connect(t, tab, 0, "")
	p := startPump(c)
	p.expect(t, "synced")
	return c, p
}

// TestTimelineAcrossInstances: a tablet on instance A connects, falls behind, catches
// up, drops and comes back; instance B, on the same NATS, draws each change in the
// device's last hour as it happens, and instance C, started afterwards (an instance
// restarted), draws the same hour from the stream.
func TestTimelineAcrossInstances(t *testing.T) {
	n := brokertest.StartNATS(t)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	const public = "http://kioskfeed.test"
	gap := 200 * time.Millisecond
	a := timelineStack(t, n, key, public, gap)
	b := timelineStack(t, n, key, public, gap)
	tab := a.pair(t, "lobby")
	a.route(tab)

	brokertest.Eventually(t, 10*time.Second, "instance B knows the device paired on A", func() bool {
		status, _ := b.call(t, "GET", "/api/admin/devices/"+tab.DeviceID+"/timeline", "")
		return status == http.StatusOK
	})
	if got := b.timelineOf(t, tab.DeviceID).states(); !slices.Equal(got, []string{"unknown"}) {
		t.Fatalf("timeline before the first connection = %v, want [unknown]", got)
	}
	want := []string{"unknown"}
	until := func(state string) {
		t.Helper()
		want = append(want, state)
		brokertest.Eventually(t, 10*time.Second, "instance B draws "+strings.Join(want, ", "), func() bool {
			return slices.Equal(b.timelineOf(t, tab.DeviceID).states(), want)
		})
	}

	c, p := connectTablet(t, a, tab)
	until("online")
	var last uint64
	for i := range 3 { // not shown: lag 3, behind
		last = a.publish(t, "lobby", "item", fmt.Sprintf(`{"n":%d}`, i))
	}
	until("behind")
	for p.expect(t, "event").Seq() != last {
	}
	if err := c.Send(map[string]any{"type": "shown", "seq": last}); err != nil {
		t.Fatal(err)
	}
	until("online")
	_ = c.Abort() // the link drops
	until("offline")
	connectTablet(t, a, tab)
	until("online")

	got := b.timelineOf(t, tab.DeviceID)
	if !got.To.After(got.From) || got.To.Sub(got.From) != time.Hour {
		t.Fatalf("timeline covers %v to %v, want one hour", got.From, got.To)
	}
	for i, s := range got.Spans {
		if i > 0 && !s.From.Equal(got.Spans[i-1].To) || !s.To.After(s.From) && i < len(got.Spans)-1 {
			t.Fatalf("span %d (%s %v–%v) does not follow the one before: %+v", i, s.State, s.From, s.To, got.Spans)
		}
	}

	// A fresh instance reads the same hour from the stream.
	cStack := timelineStack(t, n, key, public, gap)
	brokertest.Eventually(t, 10*time.Second, "a new instance draws the same hour", func() bool {
		return slices.Equal(cStack.timelineOf(t, tab.DeviceID).states(), want)
	})

	// Many at once; unknown devices: 404 alone, left out of a batch.
	status, raw := b.call(t, "GET", "/api/admin/timelines?ids="+tab.DeviceID+",dev_00000000000000000000,nonsense", "")
	var batch struct {
		Timelines []timelineAnswer `json:"timelines"`
	}
	if status != http.StatusOK || json.Unmarshal(raw, &batch) != nil || len(batch.Timelines) != 1 || batch.Timelines[0].DeviceID != tab.DeviceID {
		t.Fatalf("batch: %d %s", status, raw)
	}
	for _, id := range []string{"dev_00000000000000000000", "nonsense"} {
		status, raw := b.call(t, "GET", "/api/admin/devices/"+id+"/timeline", "")
		var e struct{ Error, Message string }
		if status != http.StatusNotFound || json.Unmarshal(raw, &e) != nil || e.Error != "not_found" || e.Message == "" {
			t.Fatalf("timeline of %s: %d %s, want 404 not_found", id, status, raw)
		}
	}
	ids := strings.TrimSuffix(strings.Repeat(tab.DeviceID+",", 501), ",")
	if status, raw := b.call(t, "GET", "/api/admin/timelines?ids="+ids, ""); status != http.StatusBadRequest || !strings.Contains(string(raw), `"invalid_request"`) {
		t.Fatalf("501 ids: %d %s, want 400 invalid_request", status, raw)
	}
}

// TestTimelineFlappingIsBounded: a tablet that drops and reconnects as fast as it can
// for 3 s makes dozens of changes but costs at most one record per gap (here 1 s), and
// its timeline still ends in the state it is in.
func TestTimelineFlappingIsBounded(t *testing.T) {
	n := brokertest.StartNATS(t)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	const public = "http://kioskfeed.test"
	gap := time.Second
	a := timelineStack(t, n, key, public, gap)
	tab := a.pair(t, "lobby")
	a.route(tab)

	start := time.Now()
	flaps := 0
	// 3 s of flapping, and on a loaded machine (where a refused handshake may wait out a
	// probe of the aborted socket) on until 20 connections, for at most 20 s: the bound
	// below grows with the time taken.
	for (time.Since(start) < 3*time.Second || flaps < 20) && time.Since(start) < 20*time.Second && flaps < 500 {
		c := a.dial(t)
		if _, err := c.Handshake(tab, a.wsURL, 0, "", wait); err != nil {
			_ = c.Abort()
			if code := closeCode(err); code != 4409 { // the last socket's lease not yet released
				t.Fatalf("handshake %d: %v", flaps, err)
			}
			continue
		}
		flaps++
		_ = c.Abort()
	}
	elapsed := time.Since(start)
	if flaps < 10 {
		t.Fatalf("only %d connections in %v: the test did not flap", flaps, elapsed)
	}
	_, _ = connectTablet(t, a, tab) // it settles, online

	nc, err := nats.Connect(n.URL(), nats.Timeout(10*time.Second)) // 2 s fails on a loaded machine
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	subject := "kioskfeed.timeline." + tab.DeviceID
	stored := func() uint64 {
		ctx, cancel := context.WithTimeout(bg, 2*time.Second)
		defer cancel()
		st, err := js.Stream(ctx, broker.StreamTimeline)
		if err != nil {
			t.Fatal(err)
		}
		info, err := st.Info(ctx, jetstream.WithSubjectFilter(subject))
		if err != nil {
			t.Fatal(err)
		}
		return info.State.Subjects[subject]
	}
	// What was folded is counted: the hour ends online, and says the link flapped.
	folded := 0
	brokertest.Eventually(t, 10*time.Second, "the timeline ends online and counts the short changes", func() bool {
		tl := a.timelineOf(t, tab.DeviceID)
		folded = 0
		for _, s := range tl.Spans {
			folded += s.Flaps
		}
		s := tl.states()
		// Each connection's drop and return is either written (two records at most) or
		// counted (one flap).
		return len(s) > 0 && s[len(s)-1] == "online" && folded >= flaps-a.br.TimelineWrites()-1
	})
	// Every record is written by now, the last (the count) at most a gap late.
	bound := int(time.Since(start)/gap) + 3 // one per gap, the first at once, the settled online
	writes, kept := a.br.TimelineWrites(), stored()
	t.Logf("%d connections in %v: %d records written, %d stored, %d short changes counted", flaps, elapsed.Round(time.Millisecond), writes, kept, folded)
	if writes > bound || kept > uint64(bound) {
		t.Fatalf("%d connections in %v made %d records (%d stored); want at most %d, one per %v", flaps, elapsed, writes, kept, bound, gap)
	}
	if writes >= 2*flaps {
		t.Fatalf("%d records for %d connections: nothing was folded", writes, flaps)
	}
}

// TestTimelineInstanceDies: the instance holding a tablet loses NATS and the socket at
// once, so it can write no offline record; both other instances notice the dead holder,
// write the offline alike, and the stream keeps one.
func TestTimelineInstanceDies(t *testing.T) {
	n := brokertest.StartNATS(t)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	const public = "http://kioskfeed.test"
	bA := externalBroker(t, n)
	a := startStack(t, stackOpts{broker: bA, public: public, keys: []*ecdsa.PrivateKey{key}, bridge: func(c *bridge.Config) {
		c.Timeline.MinGap = 200 * time.Millisecond
		c.LeaseTTL = time.Second
	}})
	b := timelineStack(t, n, key, public, 200*time.Millisecond)
	c := timelineStack(t, n, key, public, 200*time.Millisecond)
	tab := a.pair(t, "lobby")
	a.route(tab)
	conn, _ := connectTablet(t, a, tab)
	brokertest.Eventually(t, 10*time.Second, "instance B draws the tablet online", func() bool {
		return slices.Equal(b.timelineOf(t, tab.DeviceID).states(), []string{"unknown", "online"})
	})

	_ = bA.Close(bg) // the crash: A loses NATS and the socket at the same instant
	_ = conn.Abort()
	for _, s := range []*stack{b, c} {
		brokertest.Eventually(t, 15*time.Second, "the other instances draw the tablet offline once its holder is gone", func() bool {
			return slices.Equal(s.timelineOf(t, tab.DeviceID).states(), []string{"unknown", "online", "offline"})
		})
	}

	// B and C each wrote the offline, with the same Nats-Msg-Id: the stream keeps one.
	nc, err := nats.Connect(n.URL(), nats.Timeout(10*time.Second)) // 2 s fails on a loaded machine
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	st, err := js.Stream(bg, broker.StreamTimeline)
	if err != nil {
		t.Fatal(err)
	}
	subject := "kioskfeed.timeline." + tab.DeviceID
	info, err := st.Info(bg, jetstream.WithSubjectFilter(subject))
	if err != nil {
		t.Fatal(err)
	}
	if got := info.State.Subjects[subject]; got != 2 {
		t.Fatalf("%d records stored for the tablet, want 2 (its online, one offline)", got)
	}
}

// TestTimelineAsleep: where a feed's screen schedule says asleep, its tablet's hour is
// asleep (from the schedule's own change, to the minute), and the instance holding the
// tablet writes the asleep it sees; a tablet of another feed stays online.
func TestTimelineAsleep(t *testing.T) {
	n := brokertest.StartNATS(t)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	const public = "http://kioskfeed.test"
	a := timelineStack(t, n, key, public, 200*time.Millisecond)
	night, day := a.pair(t, "night-desk"), a.pair(t, "lobby")
	for _, tab := range []*pairingtest.Tablet{night, day} {
		a.route(tab)
		connectTablet(t, a, tab)
	}
	brokertest.Eventually(t, 10*time.Second, "both tablets online", func() bool {
		return slices.Equal(a.timelineOf(t, night.DeviceID).states(), []string{"unknown", "online"}) &&
			slices.Equal(a.timelineOf(t, day.DeviceID).states(), []string{"unknown", "online"})
	})

	// Awake every day for three hours up to 20 minutes ago (UTC): asleep since then.
	sleptAt := a.b.Now().UTC().Add(-20 * time.Minute).Truncate(time.Minute)
	rng := fmt.Sprintf(`"%s-%s"`, sleptAt.Add(-3*time.Hour).Format("15:04"), sleptAt.Format("15:04"))
	week := `{"mon":[R],"tue":[R],"wed":[R],"thu":[R],"fri":[R],"sat":[R],"sun":[R]}`
	body := `{"time_zone":"UTC","week":` + strings.ReplaceAll(week, "R", rng) + `}`
	if status, raw := a.call(t, "PUT", "/api/admin/feeds/night-desk/schedule", body); status != http.StatusOK && status != http.StatusCreated {
		t.Fatalf("put schedule: %d %s", status, raw)
	}
	brokertest.Eventually(t, 10*time.Second, "the night desk's hour is asleep from the schedule's change", func() bool {
		got := a.timelineOf(t, night.DeviceID)
		return slices.Equal(got.states(), []string{"unknown", "asleep"}) && got.Spans[1].From.Equal(sleptAt)
	})
	if got := a.timelineOf(t, day.DeviceID).states(); !slices.Equal(got, []string{"unknown", "online"}) {
		t.Fatalf("the lobby tablet's hour = %v, want it online", got)
	}

	// The bridge saw the connected tablet asleep and wrote it.
	nc, err := nats.Connect(n.URL(), nats.Timeout(10*time.Second)) // 2 s fails on a loaded machine
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	st, err := js.Stream(bg, broker.StreamTimeline)
	if err != nil {
		t.Fatal(err)
	}
	brokertest.Eventually(t, 10*time.Second, "an asleep record is stored", func() bool {
		m, err := st.GetLastMsgForSubject(bg, "kioskfeed.timeline."+night.DeviceID)
		var rec broker.TimelineRecord
		return err == nil && json.Unmarshal(m.Data, &rec) == nil && rec.State == broker.TimelineAsleep
	})
}
