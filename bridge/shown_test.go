package bridge_test

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kioskfeed/kioskfeed/bridge"
	"github.com/kioskfeed/kioskfeed/pairing/pairingtest"
)

// Proof of display (docs/protocol.md §5 #ws-shown): real sockets, a real NATS.

func shownSeq(seq uint64) json.RawMessage {
	return json.RawMessage(fmt.Sprintf(`{"type":"shown","seq":%d}`, seq))
}

// waitShown polls br's view of device until its shown seq is want.
func waitShown(t *testing.T, br *bridge.Bridge, device, feed string, want uint64, d time.Duration) (lag int, state string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		seq, at, lag, state := br.DeviceShown(device, feed)
		if seq == want {
			if at.IsZero() {
				t.Fatalf("shown seq %d without a time", seq)
			}
			return lag, state
		}
		if time.Now().After(deadline) {
			t.Fatalf("device %s: shown seq %d after %v, want %d", device, seq, d, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func fastShown(c *bridge.Config) { c.Shown.FlushEvery = 100 * time.Millisecond }

// TestShownRecorded: a shown of the event just received is the device's record, with lag
// 0 and state live; before any shown the device has no record; the socket stays open.
func TestShownRecorded(t *testing.T) {
	s := startStack(t, stackOpts{bridge: fastShown})
	tab := s.pair(t, "lobby")
	c, _ := s.connect(t, tab, 0, "")
	p := startPump(c)
	p.expect(t, "synced")
	if seq, at, _, st := s.br.DeviceShown(tab.DeviceID, "lobby"); seq != 0 || !at.IsZero() || st != bridge.StateLive {
		t.Fatalf("before any shown: seq %d at %v state %s, want 0, zero, live", seq, at, st)
	}
	seq := s.publish(t, "lobby", "item", `{"n":1}`)
	if got := p.expect(t, "event").Seq(); got != seq {
		t.Fatalf("event seq %d, want %d", got, seq)
	}
	// Before the shown, the device is one event behind.
	if _, _, lag, _ := s.br.DeviceShown(tab.DeviceID, "lobby"); lag != 1 {
		t.Errorf("lag before the shown = %d, want 1", lag)
	}
	if err := c.Send(shownSeq(seq)); err != nil {
		t.Fatal(err)
	}
	if lag, st := waitShown(t, s.br, tab.DeviceID, "lobby", seq, wait); lag != 0 || st != bridge.StateLive {
		t.Errorf("after the shown: lag %d state %s, want 0 live", lag, st)
	}
	// Still open: the next event arrives.
	seq2 := s.publish(t, "lobby", "item", `{"n":2}`)
	if got := p.expect(t, "event").Seq(); got != seq2 {
		t.Fatalf("event seq %d, want %d", got, seq2)
	}
}

// TestShownOfSyncedSeq: after a JetStream or memory catch-up the synced seq may be
// acknowledged, and one past it closes 4400: a tablet cannot claim what it was not sent.
func TestShownBeyondSentCloses(t *testing.T) {
	s := startStack(t, stackOpts{bridge: fastShown})
	tab := s.pair(t, "lobby")
	seq := s.publish(t, "lobby", "state", `{"n":1}`)
	c, _ := s.connect(t, tab, 0, "")
	_, _, synced, err := c.Collect(wait)
	if err != nil {
		t.Fatal(err)
	}
	if synced.Seq() != seq {
		t.Fatalf("synced %d, want %d", synced.Seq(), seq)
	}
	if err := c.Send(shownSeq(seq)); err != nil {
		t.Fatal(err)
	}
	waitShown(t, s.br, tab.DeviceID, "lobby", seq, wait)
	if err := c.Send(shownSeq(seq + 1)); err != nil {
		t.Fatal(err)
	}
	if code, err := c.ExpectClose(wait); err != nil || code != 4400 {
		t.Fatalf("shown beyond the newest seq sent: close %d (%v), want 4400", code, err)
	}
	if got, _, _, _ := s.br.DeviceShown(tab.DeviceID, "lobby"); got != seq {
		t.Errorf("record %d after the refused shown, want %d kept", got, seq)
	}
}

// TestShownMalformed: each malformed shown closes 4400; the well-formed one before it
// on the same socket was accepted (the record is its seq), so the close is the shape's
// doing. A tablet each, so no socket waits for the last one's lease to go.
func TestShownMalformed(t *testing.T) {
	s := startStack(t, stackOpts{bridge: fastShown})
	seq := s.publish(t, "lobby", "state", `{"n":1}`)
	for _, bad := range []string{
		`{"type":"shown"}`,
		`{"type":"shown","seq":0}`,
		`{"type":"shown","seq":-1}`,
		`{"type":"shown","seq":"1"}`,
		`{"type":"shown","seq":1.5}`,
		`{"type":"shown","seq":1e0}`,
		`{"type":"shown","seq":null}`,
		`{"type":"shown","seq":18446744073709551616}`,
		`{"type":"shown","seq":1,"override":"ovr_a"}`,
		`{"type":"shown","override":""}`,
		`{"type":"shown","override":5}`,
		`{"type":"shown","override":"bad id!"}`,
		`{"type":"shown","override":"` + string(make65()) + `"}`,
		`{"type":"shown","seq":1,"since":"x"}`,
	} {
		t.Run(bad, func(t *testing.T) {
			tab := s.pair(t, "lobby")
			c, _ := s.connect(t, tab, 0, "")
			if _, _, _, err := c.Collect(wait); err != nil {
				t.Fatal(err)
			}
			if err := c.Send(shownSeq(seq)); err != nil {
				t.Fatal(err)
			}
			if err := c.SendUnchecked(json.RawMessage(bad)); err != nil { // malformed on purpose
				t.Fatal(err)
			}
			if code, err := c.ExpectClose(wait); err != nil || code != 4400 {
				t.Fatalf("close %d (%v), want 4400", code, err)
			}
			if got, _, _, _ := s.br.DeviceShown(tab.DeviceID, "lobby"); got != seq {
				t.Errorf("record %d, want %d: the good shown before it counted", got, seq)
			}
		})
	}
}

func make65() []byte {
	b := make([]byte, 65)
	for i := range b {
		b[i] = 'a'
	}
	return b
}

// TestShownUnknownTypesIgnored: other message types are still ignored (the socket keeps
// getting events), a shown before the welcome too (the handshake after it succeeds),
// and an override's acknowledgement reaches the hook with the device's id.
func TestShownUnknownTypesAndOverride(t *testing.T) {
	acks := make(chan [2]string, 4)
	s := startStack(t, stackOpts{bridge: func(c *bridge.Config) {
		fastShown(c)
		c.Shown.OnOverride = func(device, id string) { acks <- [2]string{device, id} }
	}})
	tab := s.pair(t, "lobby")
	c := s.dial(t)
	// Before the welcome (even before the auth): ignored, as any message but auth.
	if err := c.Send(shownSeq(1)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Handshake(tab, s.wsURL, 0, "", wait); err != nil {
		t.Fatalf("handshake after an early shown: %v", err)
	}
	p := startPump(c)
	p.expect(t, "synced")
	if seq, _, _, _ := s.br.DeviceShown(tab.DeviceID, "lobby"); seq != 0 {
		t.Errorf("the shown before the welcome counted: record %d", seq)
	}
	for _, m := range []string{`{"type":"hello"}`, `{"type":"shown_later","seq":"x"}`, `{"type":"event","seq":99}`} {
		if err := c.SendUnchecked(json.RawMessage(m)); err != nil { // types the protocol lacks
			t.Fatal(err)
		}
	}
	if err := c.Send(json.RawMessage(`{"type":"shown","override":"ovr_Abc-1.2_x"}`)); err != nil {
		t.Fatal(err)
	}
	select {
	case a := <-acks:
		if a != [2]string{tab.DeviceID, "ovr_Abc-1.2_x"} {
			t.Errorf("hook got %v, want [%s ovr_Abc-1.2_x]", a, tab.DeviceID)
		}
	case <-time.After(wait):
		t.Fatal("the override's shown did not reach the hook")
	}
	seq := s.publish(t, "lobby", "item", `{"n":1}`)
	if got := p.expect(t, "event").Seq(); got != seq {
		t.Fatalf("event seq %d, want %d", got, seq)
	}
}

// TestShownAcrossInstances: a shown on instance A is in instance B's view within a
// deadline (A's flush, B's watcher), with B's lag and state computed from the log.
func TestShownAcrossInstances(t *testing.T) {
	a := startStack(t, stackOpts{bridge: fastShown})
	b := startStack(t, stackOpts{broker: a.b, bridge: fastShown})
	tab := a.pair(t, "lobby")
	seq := a.publish(t, "lobby", "state", `{"n":1}`)
	c, _ := a.connect(t, tab, 0, "")
	if _, _, _, err := c.Collect(wait); err != nil {
		t.Fatal(err)
	}
	if got, _, _, _ := b.br.DeviceShown(tab.DeviceID, "lobby"); got != 0 {
		t.Fatalf("B knows a shown %d before any was sent", got)
	}
	if err := c.Send(shownSeq(seq)); err != nil {
		t.Fatal(err)
	}
	if lag, st := waitShown(t, b.br, tab.DeviceID, "lobby", seq, wait); lag != 0 || st != bridge.StateLive {
		t.Errorf("B's view: lag %d state %s, want 0 live", lag, st)
	}
}

// TestShownWritesAreBatched: 20 tablets ack each of 50 events (1,000 acks); the shown
// bucket's stream gets at most 16 writes per flush (its chunks) and flush, far fewer
// than the acks, and every tablet's last ack is in the view.
func TestShownWritesAreBatched(t *testing.T) {
	const tablets, events = 20, 50
	every := 500 * time.Millisecond
	s := startStack(t, stackOpts{bridge: func(c *bridge.Config) { c.Shown.FlushEvery = every }})
	js, err := jetstream.New(s.b.Conn())
	if err != nil {
		t.Fatal(err)
	}
	streamSeq := func() uint64 {
		st, err := js.Stream(bg, "KV_"+bridge.BucketShown)
		if err != nil {
			t.Fatal(err)
		}
		info, err := st.Info(bg)
		if err != nil {
			t.Fatal(err)
		}
		return info.State.LastSeq
	}
	tabs := make([]*pairingtest.Tablet, tablets)
	pumps := make([]*pump, tablets)
	for i := range tabs {
		tabs[i] = s.pair(t, "lobby")
		c, _ := s.connect(t, tabs[i], 0, "")
		pumps[i] = startPump(c)
		pumps[i].expect(t, "synced")
	}
	before, start := streamSeq(), time.Now()
	var last uint64
	acks := 0
	for range events {
		last = s.publish(t, "lobby", "item", `{"n":1}`)
		for i, p := range pumps {
			if got := p.expect(t, "event").Seq(); got != last {
				t.Fatalf("tablet %d: event %d, want %d", i, got, last)
			}
			if err := p.c.Send(shownSeq(last)); err != nil {
				t.Fatal(err)
			}
			acks++
		}
	}
	for _, tab := range tabs {
		waitShown(t, s.br, tab.DeviceID, "lobby", last, wait)
	}
	// One more flush interval, so the last acks are written too.
	deadline := time.Now().Add(wait)
	for streamSeq() == before && time.Now().Before(deadline) {
		time.Sleep(every / 3)
	}
	time.Sleep(2 * every)
	writes := int(streamSeq() - before)
	flushes := int(time.Since(start)/every) + 1
	t.Logf("%d acks, %d KV writes in %d flush intervals", acks, writes, flushes)
	if writes == 0 {
		t.Fatal("no KV write at all: the acks were not persisted")
	}
	if writes > 16*flushes || writes >= acks/2 {
		t.Errorf("%d KV writes for %d acks in %d flush intervals: want at most 16 per flush, far fewer than acks", writes, acks, flushes)
	}
}
