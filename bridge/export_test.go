package bridge

import (
	"slices"
	"testing"
	"time"
)

// DisablePolling makes bridges created during the test read each socket with a
// goroutine of its own, as where epoll is missing, so that path is tested on Linux too.
func DisablePolling(tb testing.TB) {
	pollingDisabled = true
	tb.Cleanup(func() { pollingDisabled = false })
}

// Hooks are the points where an interleaving matters (see testHooks in session.go):
// tests set them to force an interleaving instead of hoping for it. Each runs on the
// goroutine that reaches the point, which waits for it.
type Hooks struct {
	// Registered runs once a session is registered for heartbeats, in its handshake.
	Registered func(br *Bridge)
	// CatchUpRead runs once a catch-up was read from JetStream, before it is sent.
	CatchUpRead func()
	// LiveAgain runs once live events flow to a session again after its catch-up.
	LiveAgain func()
	// CatchUpWait runs when a JetStream catch-up asks for one of the read slots.
	CatchUpWait func()
	// CatchUpReading runs when a JetStream catch-up holds a read slot.
	CatchUpReading func()
	// Fanning runs once a hub took its list of tablets for an event, before it hands
	// the event to them.
	Fanning func(seq uint64)
	// FannedOut runs once a hub handed an event to every tablet of its feed.
	FannedOut func(seq uint64)
	// ResetAwaits runs when a reset has asked the log for its newest seq (or joined the
	// next question), before it waits for the answer.
	ResetAwaits func()
}

// SetHooks sets h for the rest of the test. Set it before the bridge starts; tests that
// use hooks must not run in parallel with others (the hooks are the package's).
func SetHooks(tb testing.TB, h Hooks) {
	th := &testHooks{registered: h.Registered, fanning: h.Fanning, fannedOut: h.FannedOut,
		catchUpWait: h.CatchUpWait, catchUpReading: h.CatchUpReading, resetAwaits: h.ResetAwaits}
	if h.CatchUpRead != nil {
		th.catchUpRead = func(*session) { h.CatchUpRead() }
	}
	if h.LiveAgain != nil {
		th.liveAgain = func(*session) { h.LiveAgain() }
	}
	hooks.Store(th)
	tb.Cleanup(func() { hooks.Store(nil) })
}

// Beat runs one heartbeat sweep now, as the heartbeat's ticker does.
func Beat(br *Bridge) { br.beat(time.Now()) }

// StrictStates makes an illegal move of a session's state panic, for the whole test
// binary (TestMain sets it before any test runs), instead of being refused and logged.
func StrictStates() { strictStates = true }

// GoSafe starts f as one of the bridge's own goroutines (owner.go), unless Shutdown has
// begun.
func (br *Bridge) GoSafe(name string, f func()) bool { return br.goSafe(name, f) }

// WriterLoads is how many tablets of the feed each of the bridge's fan-out writers
// owns on this instance, fewest first, leaving out writers with none of them; nil when
// the feed has no hub here.
func (br *Bridge) WriterLoads(feed string) []int {
	br.mu.Lock()
	h := br.hubs[feed]
	br.mu.Unlock()
	if h == nil {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	var loads []int
	for _, set := range h.bySlot {
		if len(set) > 0 {
			loads = append(loads, len(set))
		}
	}
	slices.Sort(loads)
	return loads
}

// SetStorm sets what makes a storm of handshakes, and its end, for the rest of the test
// (memrelease.go); set it before the bridge starts.
func SetStorm(tb testing.TB, storm, calm uint64) {
	oldStorm, oldCalm := stormHandshakes, calmHandshakes
	stormHandshakes, calmHandshakes = storm, calm
	tb.Cleanup(func() { stormHandshakes, calmHandshakes = oldStorm, oldCalm })
}

// MemReleases is how many times the bridge returned a storm's memory, and how many
// seconds its loop has looked so far.
func (br *Bridge) MemReleases() (releases, ticks uint64) {
	return br.memReleases.Load(), br.releaseTicks.Load()
}

// InstanceID is the instance's key in BucketInstances.
func (br *Bridge) InstanceID() string { return br.leases.instance }
