package bridge_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kioskfeed/kioskfeed/bridge"
	"github.com/kioskfeed/kioskfeed/bridge/bridgetest"
	"github.com/kioskfeed/kioskfeed/broker"
	"github.com/kioskfeed/kioskfeed/pairing/pairingtest"
)

// TestWelcomeBeforeAnyHeartbeat: a heartbeat sweep that runs the moment a session is
// registered for heartbeats must find the welcome already queued (docs/protocol.md §5 step
// 3: nothing before the welcome). The hook makes the sweep run at exactly that point.
func TestWelcomeBeforeAnyHeartbeat(t *testing.T) {
	var beats atomic.Int32
	bridge.SetHooks(t, bridge.Hooks{Registered: func(br *bridge.Bridge) {
		beats.Add(1) // before the beat: the test reads it once the heartbeat is in
		bridge.Beat(br)
	}})
	s := startStack(t, stackOpts{bridge: func(c *bridge.Config) { c.Heartbeat = time.Minute }})
	tab := s.pair(t, "lobby")
	c := s.dial(t)
	if _, err := c.Handshake(tab, s.wsURL, 0, "", wait); err != nil {
		t.Fatalf("handshake: %v (a heartbeat before the welcome?)", err)
	}
	// The sweep did reach this tablet: the heartbeat comes, after the welcome.
	if _, err := c.Expect("heartbeat", wait); err != nil {
		t.Fatalf("the forced sweep's heartbeat: %v", err)
	}
	if n := beats.Load(); n != 1 {
		t.Fatalf("sweeps forced at registration: %d, want 1", n)
	}
}

// TestCatchUpFromTheLogSkipsNoEvent: a live event whose fan-out took its list of
// tablets while a JetStream catch-up was read, and hands it over the moment live events
// flow again, must neither overtake the catch-up nor make it skip events: the tablet
// that reconnects with since=e2 after e3..e5 gets [e3 e4 e5 e6], never [e6]. Hooks
// force that interleaving: e6 is published once the catch-up is read, its fan-out is
// held after taking its list, and let go when the session takes live events again.
func TestCatchUpFromTheLogSkipsNoEvent(t *testing.T) {
	var st atomic.Pointer[stack]
	var e6 atomic.Uint64
	var read, held atomic.Bool
	var fannedOnce sync.Once
	paused, release, fanned := make(chan struct{}), make(chan struct{}), make(chan struct{})
	bridge.SetHooks(t, bridge.Hooks{
		CatchUpRead: func() {
			if read.Swap(true) {
				return
			}
			res, err := st.Load().b.Publish(bg, "lobby", eventInput("item", `{"n":6}`))
			if err != nil {
				panic(err)
			}
			e6.Store(res.Seq)
			select { // its fan-out has taken its list (with this tablet in it)
			case <-paused:
			case <-time.After(wait):
			}
		},
		Fanning: func(uint64) { // the first fan-out after the read: e6's
			if !read.Load() || held.Swap(true) {
				return
			}
			close(paused)
			select {
			case <-release:
			case <-time.After(wait):
			}
		},
		FannedOut: func(uint64) {
			if held.Load() {
				fannedOnce.Do(func() { close(fanned) })
			}
		},
		LiveAgain: func() {
			if !held.Load() {
				return
			}
			close(release) // e6 is handed over now, while the catch-up may still be going out
			select {
			case <-fanned:
			case <-time.After(wait):
			}
		},
	})
	// A window of 2 keeps e3 out of memory, so since=e2 is read from the log.
	s := startStack(t, stackOpts{bridge: func(c *bridge.Config) { c.WindowSize = 2 }})
	st.Store(s)
	tab := s.pair(t, "lobby")
	var seqs []uint64
	for i := range 5 {
		seqs = append(seqs, s.publish(t, "lobby", "item", fmt.Sprintf(`{"n":%d}`, i+1)))
	}
	c, _ := s.connect(t, tab, seqs[1], "")
	var got []uint64
	for len(got) == 0 || got[len(got)-1] < max(seqs[4], e6.Load()) {
		m, err := c.Next(wait)
		if err != nil {
			t.Fatalf("after %v: %v", got, err)
		}
		switch m.Type {
		case "event":
			got = append(got, m.Seq())
		case "reset":
			t.Fatalf("reset after %v, want a replay", got)
		}
	}
	if !read.Load() || !held.Load() {
		t.Fatalf("catch-up read from the log %v, e6's fan-out held %v: the test proves nothing", read.Load(), held.Load())
	}
	want := []uint64{seqs[2], seqs[3], seqs[4], e6.Load()}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("since=%d: got %v, want %v", seqs[1], got, want)
	}
}

// counter is the value of a counter (or gauge) of reg with the given label, 0 if absent.
func counter(t testing.TB, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			match := label == ""
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					match = true
				}
			}
			if !match {
				continue
			}
			if m.Counter != nil {
				return m.Counter.GetValue()
			}
			return m.Gauge.GetValue()
		}
	}
	return 0
}

func eventInput(kind, data string) broker.EventInput {
	return broker.EventInput{Kind: kind, Data: json.RawMessage(data)}
}

// TestCatchUpLimit (issue 12 §3): a tablet at most CatchupLimit events behind is
// replayed what it missed; one further behind gets a reset and the feed's state, then
// live events, so a catch-up never holds more than CatchupLimit events. Both from the
// hub's memory and from the log (a window too small to hold them).
func TestCatchUpLimit(t *testing.T) {
	const limit = 5
	for _, path := range []struct {
		name   string
		window int
		source string // the replays_total source of a replay on this path
	}{
		{"from memory", 0, "memory"},
		{"from the log", 2, "jetstream"},
	} {
		t.Run(path.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			s := startStack(t, stackOpts{bridge: func(c *bridge.Config) {
				c.CatchupLimit, c.WindowSize, c.Registerer = limit, path.window, reg
			}})
			tab := s.pair(t, "lobby")
			state := s.publish(t, "lobby", "state", `{"title":"t"}`)
			var items []uint64
			for i := range limit + 1 {
				items = append(items, s.publish(t, "lobby", "item", fmt.Sprintf(`{"n":%d}`, i)))
			}

			// Exactly at the limit: a replay of the five events after items[0].
			c, _ := s.connect(t, tab, items[0], "")
			events, reset, synced, err := c.Collect(wait)
			if err != nil || reset || fmt.Sprint(seqsOf(events)) != fmt.Sprint(items[1:]) || synced.Seq() != items[limit] {
				t.Fatalf("%d behind: events %v reset %v synced %s, %v; want a replay of %v", limit, seqsOf(events), reset, synced.Raw, err, items[1:])
			}
			if n := counter(t, reg, "kioskfeed_replays_total", "source", path.source); n != 1 {
				t.Fatalf("replays from %s: %v, want 1", path.source, n)
			}
			_ = c.Close()

			// One further: a reset, the state, then live events.
			c, _ = s.connect(t, tab, state, "")
			events, reset, synced, err = c.Collect(wait)
			want := append([]uint64{state}, items...)
			if err != nil || !reset || fmt.Sprint(seqsOf(events)) != fmt.Sprint(want) || synced.Seq() != items[limit] {
				t.Fatalf("%d behind: events %v reset %v synced %s, %v; want a reset with %v", limit+1, seqsOf(events), reset, synced.Raw, err, want)
			}
			if n := counter(t, reg, "kioskfeed_replays_total", "source", "reset"); n != 1 {
				t.Fatalf("resets: %v, want 1", n)
			}
			live := s.publish(t, "lobby", "item", `{"n":"live"}`)
			if got := eventsUntil(t, c, live); fmt.Sprint(got) != fmt.Sprint([]uint64{live}) {
				t.Fatalf("live after the reset: %v, want [%d]", got, live)
			}
		})
	}
}

// TestRestartedHubServesFromMemory (issue 12 §3): after a restart, a tablet a few
// events behind is served from the new hub's memory, which the hub filled with one
// bounded read when it started, not with a JetStream read of its own: in a reconnect
// storm every tablet shares those frames.
func TestRestartedHubServesFromMemory(t *testing.T) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	keys := []*ecdsa.PrivateKey{k} // one key for both instances, as in a deployment
	first := startStack(t, stackOpts{keys: keys})
	tab := first.pair(t, "lobby")
	c, w := first.connect(t, tab, 0, "")
	if _, _, _, err := c.Collect(wait); err != nil {
		t.Fatal(err)
	}
	seen := first.publish(t, "lobby", "state", `{"title":"before"}`)
	if got := eventsUntil(t, c, seen); fmt.Sprint(got) != fmt.Sprint([]uint64{seen}) {
		t.Fatalf("live before the restart: %v", got)
	}
	_ = c.Close()
	var missed []uint64
	for i := range 10 {
		missed = append(missed, first.publish(t, "lobby", "item", fmt.Sprintf(`{"n":%d}`, i)))
	}

	// The instance the tablet comes back to is new: no hub yet for the feed.
	reg := prometheus.NewRegistry()
	second := startStack(t, stackOpts{broker: first.b, public: first.public, keys: keys,
		bridge: func(c *bridge.Config) { c.Registerer = reg }})
	c, _ = second.connect(t, tab, seen, w.Str("epoch"))
	events, reset, _, err := c.Collect(wait)
	if err != nil || reset || fmt.Sprint(seqsOf(events)) != fmt.Sprint(missed) {
		t.Fatalf("after the restart: events %v reset %v, %v; want a replay of %v", seqsOf(events), reset, err, missed)
	}
	mem, js := counter(t, reg, "kioskfeed_replays_total", "source", "memory"), counter(t, reg, "kioskfeed_replays_total", "source", "jetstream")
	if mem != 1 || js != 0 {
		t.Fatalf("replays from memory %v, from JetStream %v; want 1 and 0", mem, js)
	}
}

// TestCatchUpReadsAreBounded (issue 12 §3): a reconnect storm of tablets whose
// catch-ups must come from the log holds at most CatchupReads histories at once; the
// others wait their turn, and every one is caught up. The hooks hold the first readers
// until every tablet has asked for a slot, so without the bound all would read at once.
func TestCatchUpReadsAreBounded(t *testing.T) {
	const tablets, slots = 5, 2
	var waiting, inside, most atomic.Int32
	arrived := make(chan struct{})
	var arrivedOnce sync.Once
	bridge.SetHooks(t, bridge.Hooks{
		CatchUpWait: func() {
			if waiting.Add(1) == tablets {
				arrivedOnce.Do(func() { close(arrived) })
			}
		},
		CatchUpReading: func() {
			n := inside.Add(1)
			for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
			}
			select { // hold the slot until every tablet has asked for one
			case <-arrived:
			case <-time.After(wait):
			}
			inside.Add(-1)
		},
	})
	s := startStack(t, stackOpts{bridge: func(c *bridge.Config) { c.WindowSize, c.CatchupReads = 2, slots }})
	tabs := make([]*pairingtest.Tablet, tablets)
	for i := range tabs {
		tabs[i] = s.pair(t, "lobby")
	}
	var all []uint64
	for i := range 10 {
		all = append(all, s.publish(t, "lobby", "item", fmt.Sprintf(`{"n":%d}`, i)))
	}
	errs := make(chan error, tablets)
	for _, tab := range tabs {
		go func() {
			c, err := bridgetest.Dial(bg, s.wsURL, s.origin, s.Listener.Addr().String())
			if err != nil {
				errs <- err
				return
			}
			defer c.Abort()
			if _, err := c.Handshake(tab, s.wsURL, all[0], "", 2*wait); err != nil {
				errs <- err
				return
			}
			events, reset, _, err := c.Collect(2 * wait)
			if err == nil && (reset || fmt.Sprint(seqsOf(events)) != fmt.Sprint(all[1:])) {
				err = fmt.Errorf("catch-up %v (reset %v), want %v", seqsOf(events), reset, all[1:])
			}
			errs <- err
		}()
	}
	for range tablets {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if n := waiting.Load(); n != tablets {
		t.Fatalf("%d catch-ups from the log, want %d: the test proves nothing", n, tablets)
	}
	if n := most.Load(); n > slots {
		t.Fatalf("%d catch-ups read the log at once, want at most %d", n, slots)
	}
}

// TestCatchUpOverrunEndsInAReset: when more live events arrive while a catch-up is
// read from the log than a queue holds, the catch-up ends in a reset and the state
// (which covers them), then live events, instead of a 1013 that would bring the
// tablet straight back for the same catch-up. The hook publishes them at that moment.
func TestCatchUpOverrunEndsInAReset(t *testing.T) {
	const queue, burst = 8, 40
	var st atomic.Pointer[stack]
	var once atomic.Bool
	var last atomic.Uint64
	fanned := make(chan uint64, burst+16)
	bridge.SetHooks(t, bridge.Hooks{
		FannedOut: func(seq uint64) {
			select {
			case fanned <- seq:
			default:
			}
		},
		CatchUpRead: func() {
			if once.Swap(true) {
				return
			}
			s := st.Load()
			for i := range burst {
				res, err := s.b.Publish(bg, "lobby", eventInput("item", fmt.Sprintf(`{"burst":%d}`, i)))
				if err != nil {
					panic(err)
				}
				last.Store(res.Seq)
			}
			for end := time.After(wait); ; { // every one of them handed to the session
				select {
				case seq := <-fanned:
					if seq == last.Load() {
						return
					}
				case <-end:
					return
				}
			}
		},
	})
	s := startStack(t, stackOpts{bridge: func(c *bridge.Config) {
		c.WindowSize, c.QueueFrames, c.ReplayLimit, c.CatchupLimit = 2, queue, 3, 5
	}})
	st.Store(s)
	tab := s.pair(t, "lobby")
	var seqs []uint64
	for i := range 5 {
		seqs = append(seqs, s.publish(t, "lobby", "item", fmt.Sprintf(`{"n":%d}`, i)))
	}
	c, _ := s.connect(t, tab, seqs[0], "")
	events, reset, synced, err := c.Collect(wait)
	if err != nil {
		t.Fatalf("catch-up overrun by %d live events: %v, want a reset", burst, err)
	}
	if !once.Load() {
		t.Fatal("the catch-up was not read from the log: the test proves nothing")
	}
	if !reset || synced.Seq() != last.Load() || len(events) != 3 || events[2].Seq() != last.Load() {
		t.Fatalf("events %v reset %v synced %d; want a reset with the newest 3 items, synced %d", seqsOf(events), reset, synced.Seq(), last.Load())
	}
	live := s.publish(t, "lobby", "item", `{"n":"live"}`)
	if got := eventsUntil(t, c, live); fmt.Sprint(got) != fmt.Sprint([]uint64{live}) {
		t.Fatalf("live after the reset: %v, want [%d]", got, live)
	}
}

// TestFarBehindResetNeedsNoLogRead (issue 12 §3): a tablet older than a window that
// alone holds more than catchup_limit events is answered with a reset from memory. A
// storm of such tablets must not queue one JetStream read each for an answer the hub
// already knows (BENCHMARKS.md, "Far-behind reconnect storm": at 800 behind, a third of
// 1,000 returning tablets timed out waiting for a read slot and were closed 1011).
func TestFarBehindResetNeedsNoLogRead(t *testing.T) {
	const limit, window = 5, 8
	var reads atomic.Int32
	bridge.SetHooks(t, bridge.Hooks{CatchUpWait: func() { reads.Add(1) }})
	reg := prometheus.NewRegistry()
	s := startStack(t, stackOpts{bridge: func(c *bridge.Config) {
		c.CatchupLimit, c.WindowSize, c.Registerer = limit, window, reg
	}})
	tab := s.pair(t, "lobby")
	// A hub that runs throughout, so the window is warm.
	warm, _ := s.connect(t, tab, 0, "")
	if _, _, _, err := warm.Collect(wait); err != nil {
		t.Fatal(err)
	}
	state := s.publish(t, "lobby", "state", `{"title":"t"}`)
	var items []uint64
	for i := range window + 4 {
		items = append(items, s.publish(t, "lobby", "item", fmt.Sprintf(`{"n":%d}`, i)))
	}
	if got := eventsUntil(t, warm, items[len(items)-1]); len(got) != len(items)+1 {
		t.Fatalf("the warm tablet saw %v, want the state and %d items", got, len(items))
	}
	_ = warm.Close()

	// Behind by every item (12): older than the window, which holds 8 > 5.
	c, _ := s.connect(t, tab, state, "")
	events, reset, synced, err := c.Collect(wait)
	if err != nil || !reset || synced.Seq() != items[len(items)-1] || len(events) != len(items)+1 {
		t.Fatalf("far behind: events %v reset %v synced %s, %v; want a reset with the state and every item", seqsOf(events), reset, synced.Raw, err)
	}
	if n := reads.Load(); n != 0 {
		t.Fatalf("JetStream catch-up reads: %d, want 0 (the window already shows the tablet is too far behind)", n)
	}
	if n := counter(t, reg, "kioskfeed_replays_total", "source", "reset"); n < 1 {
		t.Fatalf("resets: %v, want at least 1", n)
	}
}

// TestResetWaitsForTheLaggingHub: a reset carries the feed's current state. A hub whose
// consumer lags the log (here held, by a hook, right after the first of five items
// acknowledged to their producer) used to send the state as of the one it had, synced at
// that seq, and the other four live after it. Now the reset waits, at most a second, for
// the hub to reach the log's newest event: the tablet gets all five in its state.
func TestResetWaitsForTheLaggingHub(t *testing.T) {
	var holdAt atomic.Uint64
	var releaseOnce sync.Once
	release := make(chan struct{})
	bridge.SetHooks(t, bridge.Hooks{
		Fanning: func(seq uint64) {
			if seq != holdAt.Load() {
				return
			}
			select { // the consumer is held: the next items wait in it
			case <-release:
			case <-time.After(wait):
			}
		},
		ResetAwaits: func() { releaseOnce.Do(func() { close(release) }) },
	})
	s := startStack(t, stackOpts{})
	obs := observe(t, s, "lobby")
	tab := s.pair(t, "lobby")
	state := s.publish(t, "lobby", "state", `{"title":"the state"}`)
	if ev := obs.expect(t, "event"); ev.Seq() != state {
		t.Fatalf("the observer got %s, want the state %d", ev.Raw, state)
	}
	holdAt.Store(state + 1) // the next seq of the stream: the first item
	want := []uint64{state}
	for i := range 5 {
		want = append(want, s.publish(t, "lobby", "item", fmt.Sprintf(`{"n":%d}`, i+1)))
	}
	if want[1] != state+1 {
		t.Fatalf("the first item has seq %d, want %d (the hold is on it)", want[1], state+1)
	}

	c, _ := s.connect(t, tab, 0, "")
	events, reset, synced, err := c.Collect(wait)
	if err != nil {
		t.Fatal(err)
	}
	if !reset || fmt.Sprint(seqsOf(events)) != fmt.Sprint(want) || synced.Seq() != want[len(want)-1] {
		t.Fatalf("reset %v carried %v, synced %s; want a reset with the state %v and synced %d",
			reset, seqsOf(events), synced.Raw, want, want[len(want)-1])
	}
}

// countingSource counts the bridge's questions to the log for a feed's newest seq, and
// holds the first until hold is closed.
type countingSource struct {
	bridge.FeedSource
	asks  atomic.Int32
	first chan struct{} // closed when the first question comes
	hold  chan struct{}
}

func (c *countingSource) LastSeq(ctx context.Context, feed string) (uint64, error) {
	if c.asks.Add(1) == 1 {
		close(c.first)
		<-c.hold
	}
	return c.FeedSource.LastSeq(ctx, feed)
}

// TestResetsShareTheirQuestionToTheLog: resets on a busy feed each need the log's newest
// seq from a question asked after they began. Those that come while one question is out
// share the next: seven resets behind a first one ask the log twice in all, not eight
// times. Each still gets the whole state, synced at the newest seq.
func TestResetsShareTheirQuestionToTheLog(t *testing.T) {
	const behind = 7
	var joined atomic.Int32
	allJoined := make(chan struct{})
	bridge.SetHooks(t, bridge.Hooks{ResetAwaits: func() {
		if joined.Add(1) == behind+1 {
			close(allJoined)
		}
	}})
	src := &countingSource{first: make(chan struct{}), hold: make(chan struct{})}
	s := startStack(t, stackOpts{source: func(b *broker.Broker) bridge.FeedSource { src.FeedSource = b; return src }})
	obs := observe(t, s, "lobby")
	tabs := make([]*pairingtest.Tablet, behind+1)
	for i := range tabs {
		tabs[i] = s.pair(t, "lobby")
	}
	state := s.publish(t, "lobby", "state", `{"title":"busy"}`) // the hub had an event just now
	if ev := obs.expect(t, "event"); ev.Seq() != state {
		t.Fatalf("the observer got %s, want %d", ev.Raw, state)
	}

	type result struct {
		events []bridgetest.Msg
		reset  bool
		synced bridgetest.Msg
		err    error
	}
	results := make(chan result, len(tabs))
	connect := func(tab *pairingtest.Tablet) {
		c, err := bridgetest.Dial(bg, s.wsURL, s.origin, s.Listener.Addr().String())
		if err != nil {
			results <- result{err: err}
			return
		}
		defer c.Abort()
		if _, err := c.Handshake(tab, s.wsURL, 0, "", wait); err != nil {
			results <- result{err: err}
			return
		}
		events, reset, synced, err := c.Collect(wait)
		results <- result{events, reset, synced, err}
	}
	go connect(tabs[0])
	<-src.first // its question is out, and held
	for _, tab := range tabs[1:] {
		go connect(tab)
	}
	select {
	case <-allJoined:
	case <-time.After(wait):
		t.Fatalf("%d of %d resets waiting for the log's answer", joined.Load(), len(tabs))
	}
	close(src.hold)
	for range tabs {
		r := <-results
		if r.err != nil {
			t.Fatal(r.err)
		}
		if !r.reset || fmt.Sprint(seqsOf(r.events)) != fmt.Sprint([]uint64{state}) || r.synced.Seq() != state {
			t.Fatalf("reset %v, %v, synced %s; want a reset with [%d], synced %d", r.reset, seqsOf(r.events), r.synced.Raw, state, state)
		}
	}
	if n := src.asks.Load(); n != 2 {
		t.Fatalf("%d resets asked the log %d times, want 2 (the first, and one the rest shared)", len(tabs), n)
	}
}
