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
