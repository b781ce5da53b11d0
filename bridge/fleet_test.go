package bridge_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/kioskfeed/kioskfeed/bridge/bridgetest"
	"github.com/kioskfeed/kioskfeed/broker"
	"github.com/kioskfeed/kioskfeed/broker/brokertest"
	"github.com/kioskfeed/kioskfeed/pairing/pairingtest"
)

// bulk posts a bulk action to s's admin API (docs/protocol.md #bulk-actions).
func (s *stack) bulk(t testing.TB, body string) map[string]any {
	t.Helper()
	status, raw := s.call(t, "POST", "/api/admin/devices/bulk", body)
	var out map[string]any
	if status != http.StatusOK || json.Unmarshal(raw, &out) != nil {
		t.Fatalf("bulk %s: %d %s", body, status, raw)
	}
	return out
}

// TestBulkAcrossInstances: bulk actions taken through one instance reach sockets held
// by another: reload as a message, a move as a 4401 (and the device's next welcome
// names the new feed), a revoke as a 4403; the other tablets' sockets stay open.
func TestBulkAcrossInstances(t *testing.T) {
	b := brokertest.New(t)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	const public = "http://kioskfeed.test"
	s1 := startStack(t, stackOpts{broker: b, public: public, keys: []*ecdsa.PrivateKey{key}})
	s2 := startStack(t, stackOpts{broker: b, public: public, keys: []*ecdsa.PrivateKey{key}})
	names := []string{"reloaded", "moved", "revoked", "bystander"}
	tabs := map[string]*tabletOn{}
	for _, n := range names {
		tab := s1.pair(t, "lobby")
		s2.route(tab)
		c, _ := s2.connect(t, tab, 0, "")
		p := startPump(c)
		p.expect(t, "synced")
		tabs[n] = &tabletOn{id: tab.DeviceID, p: p, tab: tab}
	}
	// The instance taking the request must see the tablets online (their leases).
	brokertest.Eventually(t, 10*time.Second, "s1 to see the four tablets online", func() bool {
		status, raw := s1.call(t, "GET", "/api/admin/devices?feed=lobby&state=live", "")
		var l []map[string]any
		return status == 200 && json.Unmarshal(raw, &l) == nil && len(l) == 4
	})
	devices := func(n string) string { return `{"devices":["` + tabs[n].id + `"]}` }

	a := s1.bulk(t, `{"action":"reload","filter":`+devices("reloaded")+`}`)
	if a["done"] != float64(1) {
		t.Fatalf("bulk reload: %v", a)
	}
	tabs["reloaded"].p.expect(t, "reload")

	a = s1.bulk(t, `{"action":"move","filter":`+devices("moved")+`,"feed":"hall"}`)
	if a["done"] != float64(1) {
		t.Fatalf("bulk move: %v", a)
	}
	err := tabs["moved"].p.closedErr(t, 2*time.Second)
	if ce, ok := err.(*bridgetest.CloseError); !ok || ce.Code != 4401 || ce.Reason != "device moved to another feed" {
		t.Fatalf("moved tablet's socket on the other instance: %v; want 4401 device moved to another feed", err)
	}
	// Its old token is for lobby: refused; a new one is for hall, and so is the welcome.
	moved := tabs["moved"].tab
	c := s2.dial(t)
	if _, err := c.Handshake(moved, s2.wsURL, 0, "", wait); closeCode(err) != 4401 {
		t.Fatalf("handshake with the old feed's token: %v, want 4401", err)
	}
	if err := moved.Refresh(bg); err != nil || moved.Feed != "hall" {
		t.Fatalf("token after the move: feed %q, %v", moved.Feed, err)
	}
	_, w := s2.connect(t, moved, 0, "")
	if w.Str("feed") != "hall" {
		t.Fatalf("welcome after the move: %s, want feed hall", w.Raw)
	}

	a = s1.bulk(t, `{"action":"revoke","filter":`+devices("revoked")+`}`)
	if a["done"] != float64(1) {
		t.Fatalf("bulk revoke: %v", a)
	}
	if code := tabs["revoked"].p.closed(t, 2*time.Second); code != 4403 {
		t.Fatalf("revoked tablet's socket on the other instance: %d, want 4403", code)
	}

	// The bystander and the reloaded tablet are still connected: an event reaches both,
	// and neither heard a reload or a close meant for another.
	seq, err := b.Publish(bg, "lobby", brokerItem())
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"bystander", "reloaded"} {
		if m := tabs[n].p.expectNot(t, "event", "reload"); m.Seq() != seq.Seq {
			t.Fatalf("%s: event %s, want seq %d", n, m.Raw, seq.Seq)
		}
	}
}

type tabletOn struct {
	id  string
	p   *pump
	tab *pairingtest.Tablet
}

func brokerItem() broker.EventInput {
	return broker.EventInput{Kind: "item", Data: json.RawMessage(`{"n":1}`)}
}

// closedErr waits for the socket to end and returns why (a *bridgetest.CloseError for
// a close frame).
func (p *pump) closedErr(t testing.TB, d time.Duration) error {
	t.Helper()
	deadline := time.After(d)
	for {
		select {
		case <-p.msgs:
		case err := <-p.done:
			return err
		case <-deadline:
			t.Fatalf("no close within %v", d)
		}
	}
}

// expectNot waits for a message of type typ, failing on one of type not before it.
func (p *pump) expectNot(t testing.TB, typ, not string) bridgetest.Msg {
	t.Helper()
	deadline := time.After(wait)
	for {
		select {
		case m := <-p.msgs:
			switch m.Type {
			case typ:
				return m
			case not:
				t.Fatalf("got %s before a %s", m.Raw, typ)
			}
		case err := <-p.done:
			t.Fatalf("socket ended waiting for %s: %v", typ, err)
		case <-deadline:
			t.Fatalf("no %s within %v", typ, wait)
		}
	}
}

// TestMovedTabletWithoutFeedIsReset: a client that does not send its feed with auth
// (bridgetest's does not) and comes back from a move with a since of the old feed gets
// a reset and the new feed's state, not a catch-up of the new feed from that seq.
func TestMovedTabletWithoutFeedIsReset(t *testing.T) {
	s := startStack(t, stackOpts{})
	tab := s.pair(t, "lobby")
	hall, err := s.b.Publish(bg, "hall", broker.EventInput{Kind: "state", Data: json.RawMessage(`{"feed":"hall"}`)})
	if err != nil {
		t.Fatal(err)
	}
	lobby, err := s.b.Publish(bg, "lobby", broker.EventInput{Kind: "state", Data: json.RawMessage(`{"feed":"lobby"}`)})
	if err != nil {
		t.Fatal(err)
	}
	c, w := s.connect(t, tab, 0, "")
	epoch := w.Str("epoch")
	events, reset, _, err := c.Collect(wait)
	if err != nil || !reset || len(events) != 1 || events[0].Seq() != lobby.Seq {
		t.Fatalf("first catch-up: %v reset %v, %v; want the lobby state", seqsOf(events), reset, err)
	}
	p := startPump(c)
	if a := s.bulk(t, `{"action":"move","filter":{"devices":["`+tab.DeviceID+`"]},"feed":"hall"}`); a["done"] != float64(1) {
		t.Fatalf("bulk move: %v", a)
	}
	if code := p.closed(t, 2*time.Second); code != 4401 {
		t.Fatalf("moved socket: %d, want 4401", code)
	}
	if err := tab.Refresh(bg); err != nil {
		t.Fatal(err)
	}
	// Catching up on hall from the lobby seq would send nothing (hall's state is older).
	c, w = s.connect(t, tab, lobby.Seq, epoch)
	if w.Str("feed") != "hall" || w.Str("epoch") != epoch {
		t.Fatalf("welcome after the move: %s", w.Raw)
	}
	events, reset, _, err = c.Collect(wait)
	if err != nil || !reset || len(events) != 1 || events[0].Seq() != hall.Seq {
		t.Fatalf("catch-up after the move: %v reset %v, %v; want a reset and hall's state %d", seqsOf(events), reset, err, hall.Seq)
	}
	// Until it has an event of hall newer than the move, each reconnect is a reset (the
	// cost of not saying its feed); a since past the move is hall's: a catch-up, as ever.
	next, err := s.b.Publish(bg, "hall", brokerItem())
	if err != nil {
		t.Fatal(err)
	}
	reconnect := func(since uint64) ([]bridgetest.Msg, bool) {
		t.Helper()
		_ = c.Abort()
		brokertest.Eventually(t, 10*time.Second, "the lease to be free", func() bool { on, _ := s.br.Presence(tab.DeviceID); return !on })
		c, _ = s.connect(t, tab, since, epoch)
		events, reset, _, err := c.Collect(wait)
		if err != nil {
			t.Fatal(err)
		}
		return events, reset
	}
	if events, reset := reconnect(hall.Seq); !reset || len(events) != 2 || events[1].Seq() != next.Seq {
		t.Fatalf("reconnect from hall's state (older than the move): %v reset %v; want a reset with hall's state and item", seqsOf(events), reset)
	}
	after, err := s.b.Publish(bg, "hall", brokerItem())
	if err != nil {
		t.Fatal(err)
	}
	if events, reset := reconnect(next.Seq); reset || len(events) != 1 || events[0].Seq() != after.Seq {
		t.Fatalf("reconnect from hall's item (newer than the move): %v reset %v; want just %d", seqsOf(events), reset, after.Seq)
	}
}
