package bridge_test

import (
	"testing"
	"time"

	"github.com/kioskfeed/kioskfeed/bridge"
	"github.com/kioskfeed/kioskfeed/pairing"
)

// TestReauthKeepsTheSocketAndItsAbsenceCloses4401: before the token expires the server
// asks for re-auth; a tablet that answers (fresh token, proof over the new nonce) stays,
// one that does not is closed 4401 at expiry + grace.
func TestReauthKeepsTheSocketAndItsAbsenceCloses4401(t *testing.T) {
	s := startStack(t, stackOpts{
		pair:   func(c *pairing.Config) { c.TokenTTL = 7 * time.Second },
		bridge: func(c *bridge.Config) { c.ReauthGrace = 500 * time.Millisecond; c.Heartbeat = time.Second },
	})
	good, lazy := s.pair(t, "lobby"), s.pair(t, "lobby")

	c, w := s.connect(t, good, 0, "")
	exp, err := time.Parse(time.RFC3339, w.Str("token_exp"))
	if err != nil || time.Until(exp) > 8*time.Second {
		t.Fatalf("welcome token_exp %q: %v, want the token's expiry", w.Str("token_exp"), err)
	}
	m, err := c.Expect("reauth", 10*time.Second)
	if err != nil || m.Str("nonce") == "" {
		t.Fatalf("no reauth request before expiry: %s, %v", m.Raw, err)
	}
	if time.Now().After(exp) {
		t.Fatalf("reauth asked at %v, after the token expired at %v", time.Now(), exp)
	}
	if err := good.Refresh(bg); err != nil {
		t.Fatal(err)
	}
	if err := c.Reauth(good, s.wsURL, m); err != nil {
		t.Fatal(err)
	}
	cp := startPump(c) // from here it answers pings while the test watches the other

	l, _ := s.connect(t, lazy, 0, "")
	lp := startPump(l) // reads (answers pings) but never re-authenticates
	start := time.Now()
	if code := lp.closed(t, 15*time.Second); code != 4401 {
		t.Fatalf("tablet that did not re-authenticate: closed %d, want 4401", code)
	}
	t.Logf("unanswered reauth closed 4401 after %v", time.Since(start).Round(100*time.Millisecond))

	// The tablet that answered is still served after its first token's expiry.
	if wait := time.Until(exp.Add(time.Second)); wait > 0 {
		time.Sleep(wait) // past the first token's expiry + grace, on purpose
	}
	seq := s.publish(t, "lobby", "item", `{"text":"after the first token expired"}`)
	for {
		ev := cp.expect(t, "event")
		if ev.Seq() == seq {
			break
		}
	}
}

// TestHeartbeats: a live tablet hears a heartbeat every heartbeat_s.
func TestHeartbeats(t *testing.T) {
	s := startStack(t, stackOpts{bridge: func(c *bridge.Config) { c.Heartbeat = time.Second }})
	tab := s.pair(t, "lobby")
	c, w := s.connect(t, tab, 0, "")
	if w.Int("heartbeat_s") != 1 {
		t.Fatalf("heartbeat_s = %d, want 1", w.Int("heartbeat_s"))
	}
	for range 3 {
		hb, err := c.Expect("heartbeat", 3*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := time.Parse(time.RFC3339, hb.Str("time")); err != nil {
			t.Fatalf("heartbeat time %q: %v", hb.Str("time"), err)
		}
	}
}

// TestReauthNeverBeforeTheCatchUp: a tablet that connects with a token already inside
// the re-auth lead gets its welcome and catch-up first, then the reauth request.
func TestReauthNeverBeforeTheCatchUp(t *testing.T) {
	s := startStack(t, stackOpts{pair: func(c *pairing.Config) { c.TokenTTL = 3 * time.Second }})
	tab := s.pair(t, "lobby") // its token is inside the 5 s re-auth lead from the start
	s.publish(t, "lobby", "state", `{"title":"x"}`)
	c := s.dial(t)
	if _, err := c.Handshake(tab, s.wsURL, 0, "", wait); err != nil {
		t.Fatalf("handshake: %v (a reauth before the welcome?)", err)
	}
	if _, _, _, err := c.Collect(wait); err != nil {
		t.Fatalf("catch-up: %v (a reauth before synced?)", err)
	}
	if m, err := c.Expect("reauth", wait); err != nil || m.Str("nonce") == "" {
		t.Fatalf("no reauth after the catch-up: %s, %v", m.Raw, err)
	}
}
