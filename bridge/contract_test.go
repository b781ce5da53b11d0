package bridge_test

// Contract tests: promises of docs/protocol.md §5 (with the README's "Status" differences)
// that no other test checked, each asserted on the wire through a real stack.

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kioskfeed/kioskfeed/bridge"
	"github.com/kioskfeed/kioskfeed/bridge/bridgetest"
	"github.com/kioskfeed/kioskfeed/broker"
	"github.com/kioskfeed/kioskfeed/broker/brokertest"
	"github.com/kioskfeed/kioskfeed/pairing"
	"github.com/kioskfeed/kioskfeed/pairing/pairingtest"
)

// contractPublic is the public URL of the tests whose instances must accept each other's
// tokens: one public URL, as behind one load balancer.
const contractPublic = "http://kiosk.test"

// publishAll publishes one state event and then n items to feed, and returns their seqs
// in order (the state's first).
func publishAll(t *testing.T, s *stack, feed string, n int) []uint64 {
	t.Helper()
	seqs := []uint64{s.publish(t, feed, "state", `{"title":"the state"}`)}
	for i := range n {
		seqs = append(seqs, s.publish(t, feed, "item", fmt.Sprintf(`{"n":%d}`, i+1)))
	}
	return seqs
}

// observe keeps feed's hub on s warm: a tablet of the feed stays connected (and
// answers pings) until the test ends, so the hub sees every event live and keeps its
// window and state in memory.
func observe(t *testing.T, s *stack, feed string) *pump {
	t.Helper()
	c, _ := s.connect(t, s.pair(t, feed), 0, "")
	p := startPump(c)
	p.expect(t, "synced")
	return p
}

// TestContractEvictedSinceGetsReset: a tablet whose since points at events the stream no
// longer keeps (feed_max_msgs pushed them out) gets a reset and the feed's state, not the
// events that happen to be left (docs/protocol.md §5 step 4) — whether or not this instance's
// hub for the feed was running while the events came and went.
func TestContractEvictedSinceGetsReset(t *testing.T) {
	const keep = 5 // feed_max_msgs: events kept per feed and kind
	for _, warm := range []bool{false, true} {
		name := map[bool]string{false: "hub started by the reconnect", true: "hub running throughout"}[warm]
		t.Run(name, func(t *testing.T) {
			// A valid configuration: feed_max_msgs at least replay_limit (config/validate.go).
			b := brokertest.New(t, func(c *broker.Config) { c.FeedMaxMsgs, c.ReplayLimit = keep, keep })
			s := startStack(t, stackOpts{broker: b, bridge: func(c *bridge.Config) { c.ReplayLimit = keep }})
			tab := s.pair(t, "lobby")
			var epoch string
			var obs *pump
			if warm {
				obs = observe(t, s, "lobby")
				// The tablet was here before, so it knows the epoch it resumes in.
				c, w := s.connect(t, tab, 0, "")
				if _, _, _, err := c.Collect(wait); err != nil {
					t.Fatal(err)
				}
				epoch = w.Str("epoch")
				_ = c.Close()
				brokertest.Eventually(t, wait, "lease released", func() bool { on, _ := s.br.Presence(tab.DeviceID); return !on })
			}
			seqs := publishAll(t, s, "lobby", keep+3) // items 1..3 are evicted
			// The warm hub has followed them all live (its consumer may lag the acks).
			if warm {
				for ev := obs.expect(t, "event"); ev.Seq() != seqs[len(seqs)-1]; ev = obs.expect(t, "event") {
				}
			}
			since := seqs[1] // the first item: 2 and 3 after it are gone
			want := append([]uint64{seqs[0]}, seqs[len(seqs)-keep:]...)

			c, _ := s.connect(t, tab, since, epoch)
			events, reset, synced, err := c.Collect(wait)
			if err != nil {
				t.Fatal(err)
			}
			if !reset {
				t.Fatalf("since=%d with events %v evicted: got %v without a reset; want a reset and the state %v",
					since, seqs[2:4], seqsOf(events), want)
			}
			if fmt.Sprint(seqsOf(events)) != fmt.Sprint(want) || synced.Seq() != seqs[len(seqs)-1] {
				t.Fatalf("reset carried %v, synced %s; want the state %v and synced %d", seqsOf(events), synced.Raw, want, seqs[len(seqs)-1])
			}
			if st := s.stateSeqs(t, "lobby"); fmt.Sprint(st) != fmt.Sprint(want) {
				t.Fatalf("GET /api/feeds/lobby/state = %v; want what the reset showed, %v (docs/protocol.md §8)", st, want)
			}
		})
	}
}

// TestContractResetStateCappedAtReplayLimit: a reset's state is the newest state event
// and at most replay_limit items after it, the newest ones, in order — from a hub that
// loads the state at its start and from one that followed the events live.
func TestContractResetStateCappedAtReplayLimit(t *testing.T) {
	const limit = 3
	for _, warm := range []bool{false, true} {
		name := map[bool]string{false: "state read at hub start", true: "state kept live"}[warm]
		t.Run(name, func(t *testing.T) {
			b := brokertest.New(t, func(c *broker.Config) { c.ReplayLimit = limit })
			s := startStack(t, stackOpts{broker: b, bridge: func(c *bridge.Config) { c.ReplayLimit = limit }})
			tab := s.pair(t, "lobby")
			s.publish(t, "lobby", "item", `{"text":"before the state"}`)
			var obs *pump
			if warm {
				obs = observe(t, s, "lobby")
			}
			seqs := publishAll(t, s, "lobby", 2*limit+1)
			if warm { // the hub has followed them all live (its consumer may lag the acks)
				for ev := obs.expect(t, "event"); ev.Seq() != seqs[len(seqs)-1]; ev = obs.expect(t, "event") {
				}
			}
			want := append([]uint64{seqs[0]}, seqs[len(seqs)-limit:]...)
			for _, since := range []uint64{0, seqs[len(seqs)-1] + 100} { // no since; a since from another life
				c, _ := s.connect(t, tab, since, "")
				events, reset, synced, err := c.Collect(wait)
				if err != nil || !reset {
					t.Fatalf("since=%d: reset %v, err %v; want a reset", since, reset, err)
				}
				if fmt.Sprint(seqsOf(events)) != fmt.Sprint(want) || synced.Seq() != seqs[len(seqs)-1] {
					t.Fatalf("since=%d: reset carried %v (synced %s); want the state event and the newest %d items: %v", since, seqsOf(events), synced.Raw, limit, want)
				}
				if st := s.stateSeqs(t, "lobby"); fmt.Sprint(st) != fmt.Sprint(want) {
					t.Fatalf("GET /api/feeds/lobby/state = %v; want what the reset showed, %v (docs/protocol.md §8)", st, want)
				}
				if events[0].Str("kind") != "state" {
					t.Fatalf("first event of the state is %s, want the state event", events[0].Raw)
				}
				_ = c.Close()
				brokertest.Eventually(t, wait, "lease released", func() bool { on, _ := s.br.Presence(tab.DeviceID); return !on })
			}
		})
	}
}

// deleteFeedsStream deletes the FEEDS stream through the JetStream API of NATS n, as an
// operator wiping the event log does.
func deleteFeedsStream(t *testing.T, n *brokertest.NATS) {
	t.Helper()
	nc, err := nats.Connect(n.URL(), nats.Timeout(10*time.Second)) // 2 s fails on a loaded machine
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if err := js.DeleteStream(bg, broker.StreamFeeds); err != nil {
		t.Fatalf("delete %s: %v", broker.StreamFeeds, err)
	}
}

// TestContractEpochChangesWhenTheStreamIsRecreated: the FEEDS stream is deleted and made
// again. The welcome then names another epoch, and a tablet that comes back with the old
// epoch and a since that the new log also has (so a replay is possible) gets a reset and
// the new log's state, never the new log's events as if they followed its old ones.
// Checked on an instance started after the recreation, and on one that ran through it
// (another instance of the cluster recreated the stream at its start).
func TestContractEpochChangesWhenTheStreamIsRecreated(t *testing.T) {
	for _, lived := range []bool{false, true} {
		name := map[bool]string{false: "instance started after it", true: "instance that ran through it"}[lived]
		t.Run(name, func(t *testing.T) {
			n := brokertest.StartNATS(t)
			k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			keys := []*ecdsa.PrivateKey{k}
			// The hub of a feed without tablets stops at once, so the reconnect below
			// starts a fresh one on whatever stream there is then.
			linger := func(c *bridge.Config) { c.HubLinger = time.Millisecond }
			b1 := externalBroker(t, n)
			old := startStack(t, stackOpts{broker: b1, keys: keys, public: contractPublic, bridge: linger})
			tab := old.pair(t, "lobby")
			publishAll(t, old, "lobby", 3)
			c, w := old.connect(t, tab, 0, "")
			_, _, synced, err := c.Collect(wait)
			if err != nil {
				t.Fatal(err)
			}
			oldEpoch, since := w.Str("epoch"), synced.Seq()
			_ = c.Close()
			brokertest.Eventually(t, wait, "lease released", func() bool { on, _ := old.br.Presence(tab.DeviceID); return !on })
			if !lived {
				ctx, cancel := contextWithTimeout(10 * time.Second)
				_ = old.br.Shutdown(ctx)
				cancel()
				old.Close()
				_ = b1.Close(bg)
			}

			deleteFeedsStream(t, n)
			b2 := externalBroker(t, n) // recreates FEEDS
			fresh := startStack(t, stackOpts{broker: b2, keys: keys, public: contractPublic, bridge: linger})
			// The new log gets more events than the old one had, so since is inside it.
			seqs := publishAll(t, fresh, "lobby", int(since)+2)
			serving := fresh
			if lived {
				serving = old
			}
			serving.route(tab)
			if err := tab.Refresh(bg); err != nil {
				t.Fatal(err)
			}
			brokertest.Eventually(t, wait, "old lease gone", func() bool { on, _ := serving.br.Presence(tab.DeviceID); return !on })
			c2, w2 := serving.connect(t, tab, since, oldEpoch)
			if w2.Str("epoch") == oldEpoch || w2.Str("epoch") == "" {
				t.Errorf("welcome epoch after the stream was recreated = %q, the old one was %q; want a new epoch", w2.Str("epoch"), oldEpoch)
			}
			if lived && w2.Str("epoch") != b2.Epoch() {
				t.Errorf("instances of one cluster disagree on the epoch: %q here, %q on the instance that recreated the stream", w2.Str("epoch"), b2.Epoch())
			}
			events, reset, synced2, err := c2.Collect(wait)
			if err != nil {
				t.Fatal(err)
			}
			if !reset || fmt.Sprint(seqsOf(events)) != fmt.Sprint(seqs) || synced2.Seq() != seqs[len(seqs)-1] {
				t.Fatalf("old epoch with since=%d: reset %v, events %v, synced %s; want a reset with the new log's state %v", since, reset, seqsOf(events), synced2.Raw, seqs)
			}
		})
	}
}

// TestContractDefaultAuthTimeout: with the default configuration a socket that never
// sends auth is closed 4408 after 10 s (docs/protocol.md §5 step 2), not much sooner.
func TestContractDefaultAuthTimeout(t *testing.T) {
	t.Parallel()
	s := startStack(t, stackOpts{}) // AuthTimeout left at its default
	c := s.dial(t)
	start := time.Now()
	if _, err := c.Expect("challenge", wait); err != nil {
		t.Fatal(err)
	}
	code, err := c.ExpectClose(40 * time.Second)
	took := time.Since(start)
	if err != nil || code != 4408 {
		t.Fatalf("a socket without auth: close %d, %v after %v; want 4408", code, err, took)
	}
	if took < 9*time.Second {
		t.Fatalf("closed 4408 after %v; the contract gives 10 s", took)
	}
	t.Logf("closed 4408 after %v", took.Round(100*time.Millisecond))
}

// TestContractDefaultReauthGrace: with the default grace a tablet that never answers
// reauth is closed 4401 no sooner than token_exp + 30 s (docs/protocol.md §5 step 7). The
// token is short-lived so that its expiry comes soon; the grace is the default.
func TestContractDefaultReauthGrace(t *testing.T) {
	t.Parallel()
	s := startStack(t, stackOpts{pair: func(c *pairing.Config) { c.TokenTTL = 8 * time.Second }})
	tab := s.pair(t, "lobby")
	c, w := s.connect(t, tab, 0, "")
	exp, err := time.Parse(time.RFC3339, w.Str("token_exp"))
	if err != nil {
		t.Fatalf("welcome token_exp %q: %v", w.Str("token_exp"), err)
	}
	p := startPump(c) // answers pings, never re-authenticates
	p.expectWithin(t, "reauth", 15*time.Second)
	code := p.closed(t, time.Until(exp)+60*time.Second)
	closedAt := s.b.Now() // the cluster's clock, which token_exp is on
	if code != 4401 {
		t.Fatalf("a tablet that did not answer reauth: close %d, want 4401", code)
	}
	if after := closedAt.Sub(exp); after < 29*time.Second {
		t.Fatalf("closed 4401 %v after token_exp; the contract gives 30 s", after)
	}
	t.Logf("closed 4401 %v after token_exp", closedAt.Sub(exp).Round(100*time.Millisecond))
}

// TestContractSinceIgnoredOnReauth: the answer to reauth carries a since (and epoch) that
// would replay; the server ignores it (docs/protocol.md §5 step 7): no reset, no replayed
// event, no synced, only live events from then on. The old token's expiry plus grace
// passes before the live event, which proves the re-auth was taken (else: 4401).
func TestContractSinceIgnoredOnReauth(t *testing.T) {
	s := startStack(t, stackOpts{
		pair:   func(c *pairing.Config) { c.TokenTTL = 8 * time.Second },
		bridge: func(c *bridge.Config) { c.ReauthGrace = 500 * time.Millisecond },
	})
	tab := s.pair(t, "lobby")
	seqs := publishAll(t, s, "lobby", 2)
	c, w := s.connect(t, tab, 0, "")
	if _, _, _, err := c.Collect(wait); err != nil {
		t.Fatal(err)
	}
	exp, err := time.Parse(time.RFC3339, w.Str("token_exp"))
	if err != nil {
		t.Fatal(err)
	}
	answer := func(m bridgetest.Msg) {
		t.Helper()
		if err := tab.Refresh(bg); err != nil {
			t.Fatal(err)
		}
		proof, err := tab.WSProof(s.wsURL, m.Str("nonce"))
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Send(map[string]any{"type": "auth", "token": tab.Token, "proof": proof, "since": seqs[0], "epoch": w.Str("epoch")}); err != nil {
			t.Fatal(err)
		}
	}
	m, err := c.Expect("reauth", 15*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	answer(m)

	// Until the old token's expiry + grace (+1 s), only heartbeats (and a reauth for the
	// new token, answered the same way) may come.
	quiet := exp.Add(1500 * time.Millisecond)
	for time.Now().Before(quiet) {
		m, err := c.Next(time.Until(quiet))
		if errors.Is(err, os.ErrDeadlineExceeded) {
			break
		}
		if err != nil {
			t.Fatalf("after answering reauth with since=%d: %v", seqs[0], err)
		}
		switch m.Type {
		case "heartbeat":
		case "reauth":
			answer(m)
		default:
			t.Fatalf("after re-auth with since=%d: got %s; want nothing but heartbeats (since is ignored on re-auth)", seqs[0], m.Raw)
		}
	}
	live := s.publish(t, "lobby", "item", `{"text":"live after re-auth"}`)
	for {
		m, err := c.Next(wait)
		if err != nil {
			t.Fatalf("waiting for the live event %d after re-auth: %v", live, err)
		}
		switch m.Type {
		case "heartbeat":
			continue
		case "reauth":
			answer(m)
			continue
		}
		if m.Type != "event" || m.Seq() != live {
			t.Fatalf("after re-auth: got %s; want only the live event %d", m.Raw, live)
		}
		return
	}
}

// TestContractReplacePINClosesTheOldTablet: a tablet paired with a PIN issued with
// replace revokes the feed's earlier tablets, and their live sockets close with 4403
// (docs/protocol.md §3); the earlier tablet's key gets no new token; the new one connects.
func TestContractReplacePINClosesTheOldTablet(t *testing.T) {
	s := startStack(t, stackOpts{})
	first := s.pair(t, "lobby")
	other := s.pair(t, "other") // another feed's tablet is not touched
	c, _ := s.connect(t, first, 0, "")
	p := startPump(c)
	p.expect(t, "synced")
	oc, _ := s.connect(t, other, 0, "")
	op := startPump(oc)
	op.expect(t, "synced")

	req, _ := http.NewRequest("POST", s.URL+"/api/admin/feeds/lobby/pins", strings.NewReader(`{"ttl":"5m","replace":true}`))
	req.Header.Set("Authorization", "Bearer "+adminToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	a := readJSON(t, resp)
	if resp.StatusCode != http.StatusCreated || a["replace"] != true {
		t.Fatalf("issue a replace PIN: %d %v", resp.StatusCode, a)
	}
	second := s.tablet(t)
	if err := second.Pair(bg, "lobby", a["pin"].(string), "replacement"); err != nil {
		t.Fatalf("pair with the replace PIN: %v", err)
	}
	if code := p.closed(t, 10*time.Second); code != 4403 {
		t.Fatalf("the replaced tablet's socket closed with %d, want 4403", code)
	}
	var apiErr *pairingtest.APIError
	if err := first.Refresh(bg); !errors.As(err, &apiErr) || apiErr.Status != http.StatusUnauthorized || apiErr.Code != "invalid_token" {
		t.Fatalf("token for the replaced tablet: %v, want 401 invalid_token", err)
	}
	c2, _ := s.connect(t, second, 0, "")
	if _, _, _, err := c2.Collect(wait); err != nil {
		t.Fatalf("the replacement tablet: %v", err)
	}
	seq := s.publish(t, "other", "item", `{}`)
	if ev := op.expect(t, "event"); ev.Seq() != seq {
		t.Fatalf("the other feed's tablet: %s, want event %d (undisturbed)", ev.Raw, seq)
	}
}

// stateSeqs is the seqs of GET /api/feeds/{feed}/state: "what a tablet would be shown
// after a reset" (docs/protocol.md §8).
func (s *stack) stateSeqs(t *testing.T, feed string) []uint64 {
	t.Helper()
	req, _ := http.NewRequest("GET", s.URL+"/api/feeds/"+feed+"/state", nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st struct {
		Events []struct{ Seq uint64 }
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&st) != nil {
		t.Fatalf("GET /api/feeds/%s/state: %d", feed, resp.StatusCode)
	}
	var seqs []uint64
	for _, e := range st.Events {
		seqs = append(seqs, e.Seq)
	}
	return seqs
}

func contextWithTimeout(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(bg, d)
}

// readJSON decodes an answer's JSON object body and closes it.
func readJSON(t *testing.T, resp *http.Response) map[string]any {
	t.Helper()
	defer resp.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatalf("answer %d: body is not a JSON object: %v", resp.StatusCode, err)
	}
	return m
}
