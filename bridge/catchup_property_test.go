package bridge_test

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kioskfeed/kioskfeed/bridge"
	"github.com/kioskfeed/kioskfeed/bridge/bridgetest"
	"github.com/kioskfeed/kioskfeed/broker"
	"github.com/kioskfeed/kioskfeed/broker/brokertest"
	"github.com/kioskfeed/kioskfeed/pairing/pairingtest"
)

// TestCatchUpPropertyGapFree: 200 reconnects with random since values (none, from the
// future, a few events behind, beyond the window, beyond the catch-up limit) while a
// producer publishes to the feed and to another one. Every connection sees either a
// gap-free, repeat-free run of the feed's events from since+1 (catch-up, then live),
// or a reset, exactly the feed's state as of synced, then the feed's events after it
// without a gap. The random choices come from a fixed seed, printed with a failure.
func TestCatchUpPropertyGapFree(t *testing.T) {
	const (
		seed         = 20261201
		tablets      = 8
		perTablet    = 25
		replayLimit  = 5
		catchupLimit = 24
		window       = 16
		maxEvents    = 6000
	)
	reg := prometheus.NewRegistry()
	b := brokertest.New(t, func(c *broker.Config) { c.ReplayLimit = replayLimit })
	s := startStack(t, stackOpts{broker: b, bridge: func(c *bridge.Config) {
		c.ReplayLimit, c.CatchupLimit, c.WindowSize, c.Registerer = replayLimit, catchupLimit, window, reg
	}})
	rng := rand.New(rand.NewPCG(seed, 0))
	type choice struct{ mode, back int }
	choices := make([][]choice, tablets) // drawn up front: the seed fixes them all
	for i := range choices {
		for range perTablet {
			c := choice{mode: rng.IntN(5)}
			switch c.mode {
			case 2: // near: within the window
				c.back = rng.IntN(8)
			case 3: // beyond the window, within the catch-up limit (mostly)
				c.back = 18 + rng.IntN(12)
			case 4: // beyond the catch-up limit
				c.back = 60 + rng.IntN(60)
			}
			choices[i] = append(choices[i], c)
		}
	}
	tabs := make([]*pairingtest.Tablet, tablets)
	for i := range tabs {
		tabs[i] = s.pair(t, "lobby")
	}
	// The producer: lobby (mostly items, some states and clears) and another feed.
	type stored struct {
		seq  uint64
		kind string
	}
	var (
		mu    sync.Mutex
		lobby = []stored{{s.publish(t, "lobby", "state", `{"title":"start"}`), broker.KindState}}
		head  atomic.Uint64
		stop  = make(chan struct{})
		done  = make(chan struct{})
	)
	head.Store(lobby[0].seq)
	go func() {
		defer close(done)
		prng := rand.New(rand.NewPCG(seed, 1))
		for n := 0; n < maxEvents; n++ {
			select {
			case <-stop:
				return
			default:
			}
			feed, kind := "lobby", broker.KindItem
			switch r := prng.IntN(100); {
			case r < 30:
				feed = "other"
			case r < 38:
				kind = broker.KindState
			case r < 41:
				kind = broker.KindClear
			}
			data := `{}`
			if kind != broker.KindClear {
				data = fmt.Sprintf(`{"n":%d}`, n)
			}
			res, err := s.b.Publish(bg, feed, eventInput(kind, data))
			if err != nil {
				t.Errorf("publish: %v", err)
				return
			}
			if feed == "lobby" {
				mu.Lock()
				lobby = append(lobby, stored{res.Seq, kind})
				mu.Unlock()
			}
			head.Store(res.Seq)
			time.Sleep(2 * time.Millisecond)
		}
	}()

	results := make(chan seen, tablets*perTablet)
	var wg sync.WaitGroup
	for i := range tablets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n, ch := range choices[i] {
				var since uint64
				h := head.Load()
				switch ch.mode {
				case 1:
					since = h + 1000
				case 2, 3, 4:
					since = h - min(h-1, uint64(ch.back))
				}
				c, err := bridgetest.Dial(bg, s.wsURL, s.origin, s.Listener.Addr().String())
				if err != nil {
					t.Errorf("tablet %d connect %d: dial: %v", i, n, err)
					return
				}
				r, err := oneConnection(c, tabs[i], s.wsURL, since)
				_ = c.Close()
				if err != nil {
					t.Errorf("seed %d, tablet %d connect %d (since %d): %v", seed, i, n, since, err)
					return
				}
				r.tablet, r.n = i, n
				results <- r
			}
		}()
	}
	wg.Wait()
	close(stop)
	<-done
	close(results)

	mu.Lock()
	defer mu.Unlock()
	after := func(seq uint64) int { // index of the first lobby event after seq
		return sort.Search(len(lobby), func(i int) bool { return lobby[i].seq > seq })
	}
	run := func(from, n int) []uint64 {
		var out []uint64
		for i := from; i < from+n && i < len(lobby); i++ {
			out = append(out, lobby[i].seq)
		}
		return out
	}
	stateAt := func(h uint64) []uint64 { // docs/protocol.md §5 step 4, from the log
		end := after(h)
		first := 0
		for j := end - 1; j >= 0; j-- {
			if lobby[j].kind != broker.KindItem {
				first = j
				break
			}
		}
		var out []uint64
		if first < end && lobby[first].kind != broker.KindItem {
			out = append(out, lobby[first].seq)
			first++
		}
		items := run(first, end-first)
		if len(items) > replayLimit {
			items = items[len(items)-replayLimit:]
		}
		return append(out, items...)
	}
	count := 0
	for r := range results {
		count++
		where := fmt.Sprintf("seed %d, tablet %d connect %d, since %d", seed, r.tablet, r.n, r.since)
		if !r.reset {
			got := append(append([]uint64{}, r.catchUp...), r.live...)
			if want := run(after(r.since), len(got)); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("%s: catch-up %v then live %v, want %v (a gap or a repeat)", where, r.catchUp, r.live, want)
			}
			continue
		}
		if want := stateAt(r.synced); fmt.Sprint(r.catchUp) != fmt.Sprint(want) {
			t.Errorf("%s: reset with state %v at synced %d, want %v", where, r.catchUp, r.synced, want)
		}
		if want := run(after(r.synced), len(r.live)); fmt.Sprint(r.live) != fmt.Sprint(want) {
			t.Errorf("%s: after the reset's synced %d live %v, want %v", where, r.synced, r.live, want)
		}
	}
	if count != tablets*perTablet && !t.Failed() {
		t.Fatalf("%d connections checked, want %d", count, tablets*perTablet)
	}
	// Every way a catch-up can go was taken, or the property says less than it seems.
	for _, src := range []string{"memory", "jetstream", "reset"} {
		n := counter(t, reg, "kioskfeed_replays_total", "source", src)
		t.Logf("catch-ups served by %s: %v", src, n)
		if n == 0 {
			t.Errorf("seed %d: no catch-up served by %s", seed, src)
		}
	}
}

// seen is what one connection of the property test saw.
type seen struct {
	tablet, n int
	since     uint64
	reset     bool
	catchUp   []uint64 // the events before synced (the state, after a reset)
	synced    uint64
	live      []uint64
}

// oneConnection plays one tablet's connection: the handshake with since, the catch-up
// until synced, then at least three live events (bounded in time).
func oneConnection(c *bridgetest.Conn, tab *pairingtest.Tablet, wsURL string, since uint64) (r seen, err error) {
	r.since = since
	if _, err := c.Handshake(tab, wsURL, since, "", wait); err != nil {
		return r, fmt.Errorf("handshake: %w", err)
	}
	events, reset, synced, err := c.Collect(wait)
	if err != nil {
		return r, fmt.Errorf("catch-up: %w", err)
	}
	r.reset, r.catchUp, r.synced = reset, seqsOf(events), synced.Seq()
	for end := time.Now().Add(wait); len(r.live) < 3; {
		m, err := c.Next(time.Until(end))
		if err != nil {
			return r, fmt.Errorf("live after %v: %w", r.live, err)
		}
		switch m.Type {
		case "event":
			r.live = append(r.live, m.Seq())
		case "reset", "synced":
			return r, fmt.Errorf("%s after synced", m.Raw)
		}
	}
	return r, nil
}
