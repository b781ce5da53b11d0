package bridge_test

import (
	"testing"
	"time"

	"github.com/kioskfeed/kioskfeed/bridge"
	"github.com/kioskfeed/kioskfeed/pairing"
)

// TestReauthWithTheOldTokenCloses4401 (issue 12 §6): a tablet that answers reauth with
// the token it already has (a stale client, or one that cannot fetch a new one) is
// closed 4401 at once, and is asked once. Accepting it used to schedule the next
// challenge in the past, so the server asked again at once: about 1,500 reauth cycles
// a second per socket, from the re-auth lead to the end of the grace.
func TestReauthWithTheOldTokenCloses4401(t *testing.T) {
	s := startStack(t, stackOpts{
		pair: func(c *pairing.Config) { c.TokenTTL = 7 * time.Second }, // reauth 5 s before expiry
		// A grace far past the test's wait: the 4401 must come from the stale answer.
		bridge: func(c *bridge.Config) { c.ReauthGrace = time.Minute },
	})
	tab := s.pair(t, "lobby")
	c, _ := s.connect(t, tab, 0, "")
	if _, _, _, err := c.Collect(wait); err != nil {
		t.Fatal(err)
	}
	asked := 0
	for end := time.Now().Add(20 * time.Second); ; {
		m, err := c.Next(time.Until(end))
		if err != nil {
			if code := closeCode(err); code != 4401 {
				t.Fatalf("after %d reauth requests: %v, want close 4401", asked, err)
			}
			break
		}
		if m.Type != "reauth" {
			continue
		}
		asked++
		if asked > 1 {
			t.Fatalf("reauth asked %d times, want once: the old token must not be taken as an answer", asked)
		}
		if err := c.Reauth(tab, s.wsURL, m); err != nil { // tab.Token: the old token
			t.Fatal(err)
		}
	}
	if asked != 1 {
		t.Fatalf("reauth asked %d times before the close, want 1", asked)
	}
}

// TestReauthChallengesAtMostOncePerLead: even a tablet that answers every reauth with
// a fresh token (here its tokens live 3 s, less than the 5 s re-auth lead, so each new
// one is already due for renewal) is challenged at most once per lead. Re-arming from
// the new expiry alone asked again at once, as fast as the tablet could fetch tokens.
func TestReauthChallengesAtMostOncePerLead(t *testing.T) {
	s := startStack(t, stackOpts{pair: func(c *pairing.Config) { c.TokenTTL = 3 * time.Second }})
	tab := s.pair(t, "lobby")
	c, _ := s.connect(t, tab, 0, "")
	if _, _, _, err := c.Collect(wait); err != nil {
		t.Fatal(err)
	}
	first, err := c.Expect("reauth", wait)
	if err != nil {
		t.Fatal(err)
	}
	asked := 1
	m := first
	const watch = 4 * time.Second // less than one 5 s lead
	for end := time.Now().Add(watch); time.Now().Before(end); {
		if m.Type == "reauth" {
			if err := tab.Refresh(bg); err != nil {
				t.Fatalf("after %d reauth requests: a fresh token: %v", asked, err)
			}
			if err := c.Reauth(tab, s.wsURL, m); err != nil {
				t.Fatal(err)
			}
		}
		m, err = c.Next(time.Until(end))
		if err != nil {
			if closeCode(err) != -1 {
				t.Fatalf("after %d reauth requests answered with fresh tokens: %v", asked, err)
			}
			break // the watch is over
		}
		if m.Type == "reauth" {
			asked++
		}
	}
	if asked > 1 {
		t.Fatalf("reauth asked %d times within %v, want once per 5 s lead", asked, watch)
	}
	// The next challenge does come, a lead after the first: the tablet is still served.
	if _, err := c.Expect("reauth", 10*time.Second); err != nil {
		t.Fatalf("no second reauth a lead later: %v", err)
	}
}
