//go:build faults

package bridge_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/kioskfeed/kioskfeed/broker"
	"github.com/kioskfeed/kioskfeed/broker/brokertest"
	"github.com/kioskfeed/kioskfeed/pairing"
	"github.com/kioskfeed/kioskfeed/pairing/pairingtest"
)

// These tests run kioskfeed instances against a real 3-node JetStream cluster on loopback
// and break it: nodes killed, quorum lost, an instance cut off. They take tens of seconds
// each, so they run with `go tool -modfile=tools/go.mod task test:faults` (-tags faults), which CI runs too.

const clusterPublic = "http://kiosk.test" // one cluster, one public URL

// clusterStacks starts a 3-node cluster and n kioskfeed instances on it (R3, one key).
func clusterStacks(t *testing.T, n int) (*brokertest.Cluster, []*stack) {
	t.Helper()
	c := brokertest.StartCluster(t, 3)
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	keys := []*ecdsa.PrivateKey{k}
	var stacks []*stack
	for range n {
		b, err := broker.New(bg, broker.Config{URL: c.URLs(), Replicas: 3})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = b.Close(bg) })
		// Every test tablet pairs from 127.0.0.1: lift the per-address pairing limit.
		stacks = append(stacks, startStack(t, stackOpts{broker: b, keys: keys, public: clusterPublic,
			pair: func(c *pairing.Config) { c.PairBurst = 1 << 20 }}))
	}
	return c, stacks
}

// TestFaultDuplicateAcrossInstances (fault 1): connected on A, a connect through B gets
// 4409; A's tablet is undisturbed.
func TestFaultDuplicateAcrossInstances(t *testing.T) {
	_, st := clusterStacks(t, 2)
	a, b := st[0], st[1]
	tab := a.pair(t, "lobby")
	c, _ := a.connect(t, tab, 0, "")
	p := startPump(c)
	p.expect(t, "synced")
	dup := b.dial(t)
	if _, err := dup.Handshake(tab, b.wsURL, 0, "", wait); closeCode(err) != 4409 {
		t.Fatalf("connect through B while connected on A: %v, want 4409", err)
	}
	seq := b.publish(t, "lobby", "item", `{"text":"still here"}`)
	for ev := p.expect(t, "event"); ev.Seq() != seq; ev = p.expect(t, "event") {
	}
}

// TestFaultRevokeOnOtherInstance (fault 7): revoking on B closes the socket on A (4403)
// within 2 s.
func TestFaultRevokeOnOtherInstance(t *testing.T) {
	_, st := clusterStacks(t, 2)
	a, b := st[0], st[1]
	tab := a.pair(t, "lobby")
	c, _ := a.connect(t, tab, 0, "")
	p := startPump(c)
	p.expect(t, "synced")
	start := time.Now()
	if err := revoke(b, tab.DeviceID); err != nil {
		t.Fatal(err)
	}
	if code := p.closed(t, 2*time.Second); code != 4403 {
		t.Fatalf("socket on A after a revoke on B: %d, want 4403", code)
	}
	t.Logf("closed %v after the revoke", time.Since(start).Round(time.Millisecond))
}

// TestFaultFeedsLeaderKilled (fault 3): the node leading FEEDS dies while a producer
// publishes with ids and waits for acks. Every acknowledged event reaches every tablet
// exactly once, in order.
func TestFaultFeedsLeaderKilled(t *testing.T) {
	c, st := clusterStacks(t, 2)
	var pumps []*pump
	for i, s := range st {
		for range 2 {
			tab := s.pair(t, "lobby")
			conn, _ := s.connect(t, tab, 0, "")
			p := startPump(conn)
			p.expect(t, "synced")
			pumps = append(pumps, p)
		}
		_ = i
	}
	var acked []uint64
	var mu sync.Mutex
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 60 {
			id := fmt.Sprintf("evt-%d", i)
			deadline := time.Now().Add(30 * time.Second)
			for time.Now().Before(deadline) {
				res, err := st[i%2].b.Publish(bg, "lobby", broker.EventInput{ID: id, Kind: "item", Data: []byte(fmt.Sprintf(`{"n":%d}`, i))})
				if err == nil {
					mu.Lock()
					if len(acked) == 0 || res.Seq > acked[len(acked)-1] {
						acked = append(acked, res.Seq) // a retried id answers the first seq again
					}
					mu.Unlock()
					break
				}
				if !errors.Is(err, broker.ErrUnavailable) {
					t.Errorf("publish %s: %v, want success or ErrUnavailable", id, err)
					return
				}
				time.Sleep(100 * time.Millisecond)
			}
			if i == 20 {
				leader := c.StreamLeader(broker.StreamFeeds)
				t.Logf("killing node %d, the FEEDS leader", leader)
				c.Stop(leader)
			}
		}
	}()
	<-done
	mu.Lock()
	want := append([]uint64(nil), acked...)
	mu.Unlock()
	if len(want) != 60 {
		t.Fatalf("%d of 60 events acknowledged", len(want))
	}
	for i, p := range pumps {
		var got []uint64
		start := time.Now()
		for len(got) < len(want) {
			// The hub's consumer lived on the dead leader: it is recreated from the last
			// seq it delivered, which takes a few of its heartbeats.
			got = append(got, p.expectWithin(t, "event", 45*time.Second).Seq())
		}
		t.Logf("tablet %d had all %d events %v after the last ack", i, len(got), time.Since(start).Round(100*time.Millisecond))
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("tablet %d got %v\nwant %v", i, got, want)
		}
	}
}

// TestFaultQuorumLost (fault 5): with two of three nodes down, publishes answer
// unavailable and new tablets are refused 1011; nothing reports success that did not
// happen; when quorum returns everything resumes without a restart of kioskfeed.
func TestFaultQuorumLost(t *testing.T) {
	c, st := clusterStacks(t, 1)
	s := st[0]
	tab := s.pair(t, "lobby")
	before := s.publish(t, "lobby", "state", `{"title":"before"}`)
	leader := c.MetaLeader()
	down := []int{(leader + 1) % 3, (leader + 2) % 3}
	for _, i := range down {
		c.Stop(i)
	}
	if _, err := s.b.Publish(bg, "lobby", broker.EventInput{ID: "during", Kind: "item", Data: []byte(`{}`)}); !errors.Is(err, broker.ErrUnavailable) {
		t.Fatalf("publish without quorum: %v, want ErrUnavailable", err)
	}
	conn := s.dial(t)
	if _, err := conn.Handshake(tab, s.wsURL, 0, "", 15*time.Second); closeCode(err) != 1011 {
		t.Fatalf("new tablet without quorum: %v, want 1011", err)
	}
	for _, i := range down {
		c.Restart(i)
	}
	c.WaitStreamLeader(t, broker.StreamFeeds)
	var after uint64
	brokertest.Eventually(t, 30*time.Second, "publishing resumes", func() bool {
		res, err := s.b.Publish(bg, "lobby", broker.EventInput{ID: "after", Kind: "item", Data: []byte(`{}`)})
		after = res.Seq
		return err == nil
	})
	// The producer retries what it was told had failed, with the same id. The leader may
	// have kept that proposal and committed it when quorum returned: then the retry
	// answers duplicate with the first seq. Either way it is stored exactly once.
	retry, err := s.b.Publish(bg, "lobby", broker.EventInput{ID: "during", Kind: "item", Data: []byte(`{}`)})
	if err != nil {
		t.Fatalf("retry after quorum returned: %v", err)
	}
	t.Logf("the publish refused during the outage: retried, duplicate=%v", retry.Duplicate)
	last := max(after, retry.Seq)
	c2, _ := reconnect(t, s, tab, before, "", 30*time.Second)
	got := eventsUntil(t, c2, last)
	// Right after quorum returns a read may still find the stream without a leader for
	// a moment: the history is read again until it answers.
	var h []broker.Event
	brokertest.Eventually(t, 30*time.Second, "the history answers", func() bool {
		h, err = s.b.History(bg, "lobby", before)
		return err == nil
	})
	ids := map[string]int{}
	for _, ev := range h {
		ids[ev.ID]++
	}
	if len(h) != 2 || ids["during"] != 1 || ids["after"] != 1 || len(got) != 2 {
		t.Fatalf("after the outage: history %+v, tablet got %v; want 'during' and 'after' once each", h, got)
	}
}

// TestFaultInstanceCutOff (fault 6): an instance whose NATS connection is cut closes its
// sockets once it cannot prove its leases; its tablets move to another instance.
func TestFaultInstanceCutOff(t *testing.T) {
	_, st := clusterStacks(t, 2)
	a, b := st[0], st[1]
	tab := a.pair(t, "lobby")
	seq := a.publish(t, "lobby", "state", `{"title":"before"}`)
	c, w := a.connect(t, tab, seq-1, "")
	p := startPump(c)
	p.expect(t, "synced")
	a.b.Conn().Close() // the instance lives on, cut off from NATS
	if code := p.closed(t, 15*time.Second); code != 1011 {
		t.Fatalf("socket of the cut-off instance: %d, want 1011", code)
	}
	missed := b.publish(t, "lobby", "item", `{"text":"while A was cut off"}`)
	b.route(tab)
	if err := tab.Refresh(bg); err != nil {
		t.Fatal(err)
	}
	c2, _ := reconnect(t, b, tab, seq, w.Str("epoch"), 30*time.Second)
	if got := eventsUntil(t, c2, missed); fmt.Sprint(got) != fmt.Sprint([]uint64{missed}) {
		t.Fatalf("on B: %v, want [%d]", got, missed)
	}
}

// TestFaultLeaseLeaderKilledDuringStorm (fault 4): the node leading the lease bucket dies
// while tablets connect concurrently, several sockets per device through two instances.
// Over many rounds, never two live connections for one device; once every tablet has
// closed, no lease is left behind.
func TestFaultLeaseLeaderKilledDuringStorm(t *testing.T) {
	c, st := clusterStacks(t, 2)
	const devices, perDevice, rounds = 4, 3, 6
	var tabs []*tabletOf
	for i := range devices {
		s := st[i%2]
		tabs = append(tabs, &tabletOf{tab: s.pair(t, "lobby")})
	}
	killed := false
	for round := range rounds {
		type result struct {
			device int
			p      *pump
			err    error
		}
		results := make(chan result, devices*perDevice)
		var wg sync.WaitGroup
		for d, to := range tabs {
			for k := range perDevice {
				s := st[(d+k)%2]
				conn := s.dial(t)
				wg.Add(1)
				go func() {
					defer wg.Done()
					_, err := conn.Handshake(to.tab, s.wsURL, 0, "", 30*time.Second)
					var p *pump
					if err == nil {
						p = startPump(conn) // the winner answers probes, as a browser does
					}
					results <- result{d, p, err}
				}()
			}
		}
		if round == rounds/2 && !killed {
			leader := c.KVLeader("kioskfeed_leases")
			t.Logf("round %d: killing node %d, the lease bucket's leader", round, leader)
			c.Stop(leader)
			killed = true
		}
		wg.Wait()
		close(results)
		live := map[int][]*pump{}
		for r := range results {
			switch {
			case r.err == nil:
				live[r.device] = append(live[r.device], r.p)
			case closeCode(r.err) != 4409 && closeCode(r.err) != 1011:
				t.Fatalf("round %d device %d: %v, want a welcome, 4409 or 1011", round, r.device, r.err)
			}
		}
		// A welcomed socket that lost its lease to a takeover is closed; what must never
		// happen is two sockets of one device that both stay open.
		for d, ps := range live {
			if len(ps) < 2 {
				continue
			}
			brokertest.Eventually(t, 15*time.Second, fmt.Sprintf("round %d: device %d down to one live connection", round, d), func() bool {
				open := 0
				for _, p := range ps {
					select {
					case err := <-p.done:
						p.done <- err
					default:
						open++
					}
				}
				return open <= 1
			})
		}
		for _, ps := range live {
			for _, p := range ps {
				select {
				case err := <-p.done:
					p.done <- err
				default:
					p.close(t)
				}
			}
		}
	}
	kv, err := st[0].b.JetStream().KeyValue(bg, "kioskfeed_leases")
	if err != nil {
		t.Fatal(err)
	}
	brokertest.Eventually(t, 30*time.Second, "no lease left once every tablet closed", func() bool {
		keys, err := kv.ListKeys(bg)
		if err != nil {
			return false
		}
		n := 0
		for range keys.Keys() {
			n++
		}
		return n == 0
	})
}

type tabletOf struct{ tab *pairingtest.Tablet }

// TestFaultDrainTwoThousand (fault 8): 2,000 tablets across two instances; one is
// drained (1012). Its tablets reconnect to the other with jittered backoff (0–2 s, as the
// PWA does after 1012) and resync. The handshake rate and the time until all are back
// are recorded; the test asserts only that all came back, each with what it missed.
func TestFaultDrainTwoThousand(t *testing.T) {
	const n = 2000
	_, st := clusterStacks(t, 2)
	a, b := st[0], st[1]
	type tablet struct {
		to   *tabletOf
		on   *stack
		seq  uint64
		done chan error
	}
	a.publish(t, "lobby", "state", `{"title":"before the drain"}`) // so every tablet syncs past 0
	all := make([]*tablet, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	start := time.Now()
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			s := st[i%2]
			tb := &tablet{to: &tabletOf{tab: s.pair(t, "lobby")}, on: s}
			conn := s.dial(t)
			if _, err := conn.Handshake(tb.to.tab, s.wsURL, 0, "", 60*time.Second); err != nil {
				t.Errorf("tablet %d: %v", i, err)
				return
			}
			_, _, synced, err := conn.Collect(60 * time.Second)
			if err != nil {
				t.Errorf("tablet %d: %v", i, err)
				return
			}
			tb.seq = synced.Seq()
			tb.done = make(chan error, 1)
			go func() { // wait for the drain's close, answering pings meanwhile
				for {
					m, err := conn.Next(5 * time.Minute)
					if err != nil {
						tb.done <- err
						return
					}
					_ = m
				}
			}()
			all[i] = tb
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("%d tablets paired and connected in %v", n, time.Since(start).Round(time.Second))

	drainStart := time.Now()
	if err := a.br.Shutdown(bg); err != nil {
		t.Fatal(err)
	}
	missed := b.publish(t, "lobby", "item", `{"text":"during the move"}`)
	var moved []*tablet
	for _, tb := range all {
		if tb.on == a {
			if code := closeCode(<-tb.done); code != 1012 {
				t.Fatalf("drained tablet closed with %d, want 1012", code)
			}
			moved = append(moved, tb)
		}
	}
	var handshakes sync.WaitGroup
	var mu sync.Mutex
	var lastWelcome time.Time
	for _, tb := range moved {
		handshakes.Add(1)
		go func() {
			defer handshakes.Done()
			// Each tablet waits out its own jitter, as the PWA does after 1012; then
			// they come in as they will, all at once if the dice say so.
			time.Sleep(time.Duration(mrand.Int64N(int64(2 * time.Second))))
			b.route(tb.to.tab)
			conn, _ := reconnect(t, b, tb.to.tab, tb.seq, "", 60*time.Second)
			got := eventsUntil(t, conn, missed)
			if got[len(got)-1] != missed {
				t.Errorf("moved tablet got %v, want the missed event", got)
			}
			mu.Lock()
			lastWelcome = time.Now()
			mu.Unlock()
			_ = conn.Abort()
		}()
	}
	handshakes.Wait()
	took := lastWelcome.Sub(drainStart)
	t.Logf("drained %d tablets: all back on the other instance and resynced %v after the drain began (%.0f handshakes/s, with 0–2 s of client jitter)",
		len(moved), took.Round(10*time.Millisecond), float64(len(moved))/took.Seconds())
}
