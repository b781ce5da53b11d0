package bridge_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/kioskfeed/kioskfeed/bridge"
	"github.com/kioskfeed/kioskfeed/bridge/bridgetest"
	"github.com/kioskfeed/kioskfeed/broker"
	"github.com/kioskfeed/kioskfeed/broker/brokertest"
)

// TestTabletLifecycle is the path of the "must show": pair → connect → live
// event → a second connection refused 4409 → close → reconnect with since gets exactly
// the missed events → revoke → 4403.
func TestTabletLifecycle(t *testing.T) {
	s := startStack(t, stackOpts{})
	tab := s.pair(t, "lobby")
	st := s.publish(t, "lobby", "state", `{"title":"Welcome"}`)
	it := s.publish(t, "lobby", "item", `{"text":"first"}`)
	s.publish(t, "other", "item", `{"text":"not ours"}`)

	c, w := s.connect(t, tab, 0, "")
	if w.Str("device_id") != tab.DeviceID || w.Str("feed") != "lobby" || w.Int("heartbeat_s") != 2 || w.Str("epoch") == "" || w.Str("token_exp") == "" {
		t.Fatalf("welcome = %s", w.Raw)
	}
	epoch := w.Str("epoch")
	events, reset, synced, err := c.Collect(wait)
	if err != nil || !reset || fmt.Sprint(seqsOf(events)) != fmt.Sprint([]uint64{st, it}) || synced.Seq() != it {
		t.Fatalf("first catch-up: events %v reset %v synced %s err %v; want reset, [%d %d], synced %d", seqsOf(events), reset, synced.Raw, err, st, it, it)
	}
	if events[0].Str("kind") != "state" || !strings.Contains(string(events[0].Raw), `"data":{"title":"Welcome"}`) || events[0].Str("time") == "" || events[0].Str("id") == "" {
		t.Fatalf("event = %s, want the state event with its id, time and data", events[0].Raw)
	}

	// From here on the tablet reads in the background and answers pings, as a browser.
	p := startPump(c)
	live := s.publish(t, "lobby", "item", `{"text":"live"}`)
	if ev := p.expect(t, "event"); ev.Seq() != live {
		t.Fatalf("live event = %s; want seq %d", ev.Raw, live)
	}

	// A second connection of the same device is refused; the first is undisturbed.
	dup := s.dial(t)
	if _, err := dup.Handshake(tab, s.wsURL, 0, "", wait); closeCode(err) != 4409 {
		t.Fatalf("second connection: %v, want close 4409", err)
	}
	next := s.publish(t, "lobby", "item", `{"text":"still live"}`)
	if ev := p.expect(t, "event"); ev.Seq() != next {
		t.Fatalf("holder after the duplicate: %s; want seq %d", ev.Raw, next)
	}
	waitAudit(t, s, "duplicate_refused", tab.DeviceID)

	// Close, miss two events, come back with since: exactly those two, no reset.
	p.close(t)
	m1 := s.publish(t, "lobby", "item", `{"text":"missed 1"}`)
	s.publish(t, "other", "item", `{}`)
	m2 := s.publish(t, "lobby", "state", `{"title":"missed 2"}`)
	c2, _ := s.connect(t, tab, next, epoch) // a clean close freed the lease at once
	got := eventsUntil(t, c2, m2)
	if fmt.Sprint(got) != fmt.Sprint([]uint64{m1, m2}) {
		t.Fatalf("reconnect catch-up: events %v; want exactly [%d %d] without reset", got, m1, m2)
	}

	// Presence for the admin list, and the live count.
	if online, _ := s.br.Presence(tab.DeviceID); !online {
		t.Fatal("connected device not online")
	}
	if n := s.br.OnlineCount(); n != 1 {
		t.Fatalf("online count %d, want 1", n)
	}

	// Revoke: 4403 within 2 s.
	start := time.Now()
	if err := revoke(s, tab.DeviceID); err != nil {
		t.Fatal(err)
	}
	code, err := c2.ExpectClose(2 * time.Second)
	if err != nil || code != 4403 {
		t.Fatalf("after revoke: code %d, %v (after %v); want 4403 within 2s", code, err, time.Since(start))
	}
	brokertest.Eventually(t, wait, "lease released after the close", func() bool {
		online, seen := s.br.Presence(tab.DeviceID)
		return !online && !seen.IsZero()
	})
	// And it cannot come back.
	again := s.dial(t)
	if _, err := again.Handshake(tab, s.wsURL, 0, "", wait); closeCode(err) != 4403 {
		t.Fatalf("revoked device reconnecting: %v, want 4403", err)
	}
}

// eventsUntil reads until the event with seq last and returns the seqs of every event
// seen, whether before or after synced (a hub's consumer may deliver an event published
// a moment before the connect as a live event, still in order and exactly once). A
// reset fails the test.
func eventsUntil(t *testing.T, c *bridgetest.Conn, last uint64) []uint64 {
	t.Helper()
	var got []uint64
	for len(got) == 0 || got[len(got)-1] < last {
		m, err := c.Next(wait)
		if err != nil {
			t.Fatalf("after events %v, waiting for %d: %v", got, last, err)
		}
		switch m.Type {
		case "event":
			got = append(got, m.Seq())
		case "reset":
			t.Fatalf("reset after %v, want a replay", got)
		}
	}
	return got
}

func revoke(s *stack, id string) error {
	req, _ := http.NewRequest("DELETE", s.URL+"/api/admin/devices/"+id, nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != 204 {
		return fmt.Errorf("revoke: %d", resp.StatusCode)
	}
	return nil
}

func waitAudit(t *testing.T, s *stack, typ, device string) broker.AuditRecord {
	t.Helper()
	var got broker.AuditRecord
	brokertest.Eventually(t, wait, "audit "+typ, func() bool {
		recs, _ := s.b.AuditList(bg, typ, 50)
		for _, r := range recs {
			if r.DeviceID == device {
				got = r
				return true
			}
		}
		return false
	})
	if got.RemoteAddr == "" {
		t.Fatalf("%s record without the caller's address: %+v", typ, got)
	}
	return got
}

// TestReplayFromJetStreamWhilePublishing reconnects with a since older than the
// in-memory window while a producer keeps publishing: every event exactly once, in
// order, across the replay and the live stream.
func TestReplayFromJetStreamWhilePublishing(t *testing.T) {
	s := startStack(t, stackOpts{bridge: func(c *bridge.Config) { c.WindowSize = 4 }})
	tab := s.pair(t, "lobby")
	first := s.publish(t, "lobby", "item", `{"n":0}`)
	c, w := s.connect(t, tab, 0, "")
	if _, _, _, err := c.Collect(wait); err != nil {
		t.Fatal(err)
	}
	_ = c.Close()
	var want []uint64
	for i := range 40 { // far past the window of 4
		want = append(want, s.publish(t, "lobby", "item", fmt.Sprintf(`{"n":%d}`, i+1)))
	}
	// Keep publishing while the tablet catches up.
	var wg sync.WaitGroup
	var mu sync.Mutex
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range 40 {
			seq := s.publish(t, "lobby", "item", fmt.Sprintf(`{"n":%d}`, 100+i))
			mu.Lock()
			want = append(want, seq)
			mu.Unlock()
		}
	}()
	c2, _ := s.connect(t, tab, first, w.Str("epoch"))
	wg.Wait()
	mu.Lock()
	total := len(want)
	mu.Unlock()
	var got []uint64
	for len(got) < total {
		m, err := c2.Next(wait)
		if err != nil {
			t.Fatalf("after %d of %d events: %v", len(got), total, err)
		}
		switch m.Type {
		case "event":
			got = append(got, m.Seq())
		case "reset":
			t.Fatal("reset, want a replay: nothing after since was evicted")
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got %v\nwant %v", got, want)
	}
}

// TestResetWhenSinceIsUnusable: another epoch, or a seq from the future, gets a reset
// and the feed's state (newest state + items after it).
func TestResetWhenSinceIsUnusable(t *testing.T) {
	s := startStack(t, stackOpts{})
	tab := s.pair(t, "lobby")
	s.publish(t, "lobby", "item", `{"text":"before the state"}`)
	st := s.publish(t, "lobby", "state", `{"title":"now"}`)
	it := s.publish(t, "lobby", "item", `{"text":"after"}`)
	for name, tc := range map[string]struct {
		since uint64
		epoch string
	}{
		"other epoch": {st, "another-life"},
		"future seq":  {it + 1000, ""},
	} {
		t.Run(name, func(t *testing.T) {
			c, _ := s.connect(t, tab, tc.since, tc.epoch)
			events, reset, synced, err := c.Collect(wait)
			if err != nil || !reset || fmt.Sprint(seqsOf(events)) != fmt.Sprint([]uint64{st, it}) || synced.Seq() != it {
				t.Fatalf("events %v reset %v synced %s err %v; want reset with [%d %d]", seqsOf(events), reset, synced.Raw, err, st, it)
			}
			_ = c.Close()
			brokertest.Eventually(t, wait, "lease released", func() bool { on, _ := s.br.Presence(tab.DeviceID); return !on })
		})
	}
}

// TestConcurrentConnectsOneWelcome: many sockets of one device at once, many times:
// exactly one is welcomed, the others get 4409.
func TestConcurrentConnectsOneWelcome(t *testing.T) {
	s := startStack(t, stackOpts{})
	tab := s.pair(t, "lobby")
	for round := range 10 {
		const n = 6
		conns := make([]*bridgetest.Conn, n)
		for i := range conns {
			conns[i] = s.dial(t)
		}
		var wg sync.WaitGroup
		results := make([]error, n)
		pumps := make([]*pump, n)
		for i, c := range conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, results[i] = c.Handshake(tab, s.wsURL, 0, "", wait)
				if results[i] == nil {
					pumps[i] = startPump(c) // the winner answers probes, as a browser would
				}
			}()
		}
		wg.Wait()
		welcomed := 0
		for _, err := range results {
			switch {
			case err == nil:
				welcomed++
			case closeCode(err) != 4409:
				t.Fatalf("round %d: %v, want welcome or 4409", round, err)
			}
		}
		if welcomed != 1 {
			t.Fatalf("round %d: %d welcomes, want exactly 1", round, welcomed)
		}
		for i, c := range conns {
			if pumps[i] != nil {
				pumps[i].close(t)
			} else {
				_ = c.Close()
			}
		}
		brokertest.Eventually(t, wait, "lease released", func() bool { on, _ := s.br.Presence(tab.DeviceID); return !on })
	}
}

// TestSilentHolderLosesItsLease: a holder that stops answering (a half-open socket after
// a Wi-Fi blip) is probed when its tablet comes back, found dead, and replaced.
func TestSilentHolderLosesItsLease(t *testing.T) {
	s := startStack(t, stackOpts{bridge: func(c *bridge.Config) { c.ProbeTimeout = 500 * time.Millisecond; c.Heartbeat = time.Minute }})
	tab := s.pair(t, "lobby")
	stale, _ := s.connect(t, tab, 0, "")
	if _, _, _, err := stale.Collect(wait); err != nil {
		t.Fatal(err)
	}
	// stale is never read again: it cannot answer the probe's ping.
	fresh := s.dial(t)
	if _, err := fresh.Handshake(tab, s.wsURL, 0, "", wait); err != nil {
		t.Fatalf("returning tablet refused: %v, want it to replace the silent holder", err)
	}
	if _, _, _, err := fresh.Collect(wait); err != nil {
		t.Fatal(err)
	}
	seq := s.publish(t, "lobby", "item", `{}`)
	if ev, err := fresh.Expect("event", wait); err != nil || ev.Seq() != seq {
		t.Fatalf("new holder gets live events: %s, %v", ev.Raw, err)
	}
}

// TestAuthTimeoutAndRefusals covers the handshake's refusals.
func TestAuthTimeoutAndRefusals(t *testing.T) {
	s := startStack(t, stackOpts{bridge: func(c *bridge.Config) { c.AuthTimeout = 300 * time.Millisecond }})
	tab := s.pair(t, "lobby")

	c := s.dial(t)
	if code, err := c.ExpectClose(wait); err != nil || code != 4408 {
		t.Fatalf("no auth: %d, %v; want 4408", code, err)
	}

	// A token without a valid proof: 4401, audited.
	c = s.dial(t)
	ch, err := c.Expect("challenge", wait)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.Send(map[string]any{"type": "auth", "token": tab.Token, "proof": "not.a.proof", "since": 0})
	if code, err := c.ExpectClose(wait); err != nil || code != 4401 {
		t.Fatalf("bad proof: %d, %v; want 4401", code, err)
	}
	_ = ch
	waitAudit(t, s, "auth_fail", "")
}

// TestDrainClosesWith1012AndReleasesLeases: shutdown sends every tablet 1012 and frees
// their leases, so they come back at once on another instance of the same cluster.
func TestDrainClosesWith1012AndReleasesLeases(t *testing.T) {
	b := brokertest.New(t)
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	keys := []*ecdsa.PrivateKey{k}
	a := startStack(t, stackOpts{broker: b, keys: keys})
	other := startStack(t, stackOpts{broker: b, keys: keys})
	tab := a.pair(t, "lobby")
	a.publish(t, "lobby", "state", `{"title":"before the move"}`)
	c, w := a.connect(t, tab, 0, "")
	_, _, synced, err := c.Collect(wait)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.br.Shutdown(bg); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if code, err := c.ExpectClose(wait); err != nil || code != 1012 {
		t.Fatalf("drain: %d, %v; want 1012", code, err)
	}
	// The tablet turns to the other instance (its URL is the other's public URL here).
	tab.BaseURL = other.public // the tablet turns to the other instance
	other.route(tab)
	if err := tab.Refresh(bg); err != nil {
		t.Fatalf("refresh on the other instance: %v", err)
	}
	missed := other.publish(t, "lobby", "item", `{"text":"during the move"}`)
	c2 := other.dial(t)
	if _, err := c2.Handshake(tab, other.wsURL, synced.Seq(), w.Str("epoch"), wait); err != nil {
		t.Fatalf("reconnect after drain: %v, want a welcome at once (lease released)", err)
	}
	if got := eventsUntil(t, c2, missed); fmt.Sprint(got) != fmt.Sprint([]uint64{missed}) {
		t.Fatalf("after the move: events %v; want exactly [%d]", got, missed)
	}
}

// TestDrainLeavesLeasesThatEndWithTheProcess: with an embedded NATS the lease buckets
// (memory storage) end with the process, so a drain does not release the leases one by
// one; with an external NATS it does (TestDrainClosesWith1012AndReleasesLeases).
func TestDrainLeavesLeasesThatEndWithTheProcess(t *testing.T) {
	s := startStack(t, stackOpts{bridge: func(c *bridge.Config) { c.LeasesEndWithProcess = true }})
	tab := s.pair(t, "lobby")
	c, _ := s.connect(t, tab, 0, "")
	if _, _, _, err := c.Collect(wait); err != nil {
		t.Fatal(err)
	}
	if err := s.br.Shutdown(bg); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if code, err := c.ExpectClose(wait); err != nil || code != 1012 {
		t.Fatalf("drain: %d, %v; want 1012", code, err)
	}
	kv, err := s.b.JetStream().KeyValue(bg, bridge.BucketLeases)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Get(bg, tab.DeviceID); err != nil {
		t.Fatalf("the drained tablet's lease: %v, want it left for the process's end", err)
	}
}

// TestMaxConnections: past the instance's bound, a new socket is closed 4429 (too many)
// before it can authenticate; a freed place is taken again.
func TestMaxConnections(t *testing.T) {
	s := startStack(t, stackOpts{bridge: func(c *bridge.Config) { c.MaxConns = 1 }})
	first := s.dial(t)
	if _, err := first.Expect("challenge", wait); err != nil {
		t.Fatal(err)
	}
	second := s.dial(t)
	if code, err := second.ExpectClose(wait); err != nil || code != 4429 {
		t.Fatalf("socket past max_connections: %d, %v; want 4429", code, err)
	}
	_ = first.Close()
	brokertest.Eventually(t, wait, "a freed place is taken again", func() bool {
		c, err := bridgetest.Dial(bg, s.wsURL, s.origin, s.Listener.Addr().String())
		if err != nil {
			return false
		}
		defer c.Abort()
		_, err = c.Expect("challenge", time.Second)
		return err == nil
	})
}

// TestAuditNamesTheTabletBehindATrustedProxy: behind a load balancer listed in
// trusted_proxies, a refused socket is audited with the tablet's address from
// X-Forwarded-For, not the balancer's.
func TestAuditNamesTheTabletBehindATrustedProxy(t *testing.T) {
	s := startStack(t, stackOpts{bridge: func(c *bridge.Config) { c.TrustedProxies = []string{"127.0.0.1"} }})
	conn, r, status, err := bridgetest.RawUpgrade(bg, s.Listener.Addr().String(), "/ws", s.origin,
		map[string]string{"X-Forwarded-For": "203.0.113.9"})
	if err != nil || status != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %d, %v", status, err)
	}
	defer conn.Close()
	if err := wsutil.WriteClientMessage(conn, ws.OpText, []byte(`{"type":"auth","token":"x","proof":"y"}`)); err != nil {
		t.Fatal(err)
	}
	if code, err := bridgetest.ReadClose(r, wait); err != nil || code != 4401 {
		t.Fatalf("garbage auth: %d, %v; want 4401", code, err)
	}
	brokertest.Eventually(t, wait, "an auth_fail record naming 203.0.113.9", func() bool {
		recs, _ := s.b.AuditList(bg, "auth_fail", 10)
		for _, rec := range recs {
			if rec.RemoteAddr == "203.0.113.9" {
				return true
			}
		}
		return false
	})
}

// TestSilentTabletDropped: a tablet that answers nothing (a dead link: no pong to the
// heartbeat's ping) is dropped after about two heartbeats, without a close frame, and its
// lease is freed for its return. One that answers stays (TestMachineClockAheadOf...).
func TestSilentTabletDropped(t *testing.T) {
	s := startStack(t, stackOpts{bridge: func(c *bridge.Config) { c.Heartbeat = time.Second }})
	tab := s.pair(t, "lobby")
	c, _ := s.connect(t, tab, 0, "")
	if _, _, _, err := c.Collect(wait); err != nil {
		t.Fatal(err)
	}
	// Not read from here on: the server's pings go unanswered. Wait for the drop.
	time.Sleep(6 * time.Second)
	// What the server sent before it gave up, then the end: within a bounded read (a
	// server that never gives up keeps sending heartbeats, which Next answers).
	var err error
	for end := time.Now().Add(wait); err == nil && time.Now().Before(end); {
		_, err = c.Next(wait)
	}
	if !errors.Is(err, bridgetest.ErrNoCloseFrame) {
		t.Fatalf("silent tablet: %v, want the connection dropped without a close frame", err)
	}
	again, _ := s.connect(t, tab, 0, "")
	if _, _, _, err := again.Collect(wait); err != nil {
		t.Fatalf("the tablet's return after the drop: %v", err)
	}
}

// TestWithoutPoller runs the socket tests with a reader goroutine per socket, the path
// taken where epoll is missing (and for conns the poller cannot watch).
func TestWithoutPoller(t *testing.T) {
	bridge.DisablePolling(t)
	t.Run("lifecycle", TestTabletLifecycle)
	t.Run("auth timeout and refusals", TestAuthTimeoutAndRefusals)
	t.Run("silent holder", TestSilentHolderLosesItsLease)
	t.Run("silent tablet", TestSilentTabletDropped)
	t.Run("drain", TestDrainClosesWith1012AndReleasesLeases)
	t.Run("frames", TestAttackFrames)
}
