package bridge

// This file owns what the admin side reads of proof of display: a device's newest
// shown, its lag behind its feed and its state (docs/protocol.md §6, devices list), and
// the gauge of devices behind.

import (
	"context"
	"sort"
	"sync"
	"time"
)

// Device states of docs/protocol.md §6 (the devices list's "state").
const (
	StateLive    = "live"
	StateBehind  = "behind"
	StateStale   = "stale"
	StateOffline = "offline"
	// StateAsleep: the device's feed is scheduled asleep now (schedule.go), whether
	// its socket is connected or not.
	StateAsleep = "asleep"
)

// feedSnap is what the instance knows of a feed's recent events, for lag: their seqs
// and times, oldest first (at most WindowSize), and the feed's newest seq.
type feedSnap struct {
	seqs  []uint64
	times []time.Time
	head  uint64
	hub   *hub      // the hub it was copied from, or nil: read from the log
	at    time.Time // machine clock: when it was taken
}

// feedSnaps caches one snapshot per feed: a device list of thousands of devices copies
// each feed's window once. A hub's copy is good while the window is unchanged; one read
// from the log, for a second. Bounded by maxFeedSnaps feeds (then it starts anew).
type feedSnaps struct {
	mu    sync.Mutex
	snaps map[string]feedSnap
}

const maxFeedSnaps = 4096

// DeviceShown reports what a device of feed has shown, for the admin side: its newest
// shown seq and when (zero if never, or not within shownKeep), lag — how many of the
// feed's events after that seq the instance can see (the newest WindowSize of the feed
// when a hub of it runs here, else those among the stream's newest WindowSize seqs; so
// for a device further behind, lag is a lower bound) — and its state:
//   - asleep: the feed's schedule says asleep now (its screen is dark by design);
//   - offline: no live connection (no lease held by a live instance);
//   - stale: connected for longer than Shown.BehindAfter, the feed has events, and no shown
//     arrived since the connection began (its socket answers pings, but its app confirms
//     nothing);
//   - behind: lag > Shown.BehindEvents, or lag > 0 and the oldest event it has not shown was
//     stored more than Shown.BehindAfter ago;
//   - live: otherwise.
func (br *Bridge) DeviceShown(deviceID, feed string) (seq uint64, at time.Time, lag int, state string) {
	rec, ok := br.shown.get(deviceID)
	seq, at = rec.Seq, rec.time()
	snap := br.feedSnapshot(feed)
	i := sort.Search(len(snap.seqs), func(i int) bool { return snap.seqs[i] > seq })
	lag = len(snap.seqs) - i
	now := br.cfg.Now()
	// Online as leases.presence says, from one read of the lease (the alert rules ask
	// this of every device each tick).
	l, leased := br.leases.mirror.Get(deviceID)
	online := leased && br.leases.instanceAliveCached(l.Instance, now)
	since := l.Since
	switch {
	case br.schedules.asleep(feed):
		state = StateAsleep
	case !online:
		state = StateOffline
	case (!ok || at.Before(since.Truncate(time.Millisecond))) && snap.head > 0 && now.Sub(since) > br.cfg.Shown.BehindAfter:
		state = StateStale
	case lag > br.cfg.Shown.BehindEvents || lag > 0 && now.Sub(snap.times[i]) > br.cfg.Shown.BehindAfter:
		state = StateBehind
	default:
		state = StateLive
	}
	return seq, at, lag, state
}

// feedSnapshot is the feed's recent events: from this instance's hub when one runs,
// else one bounded read of the log; cached for a second.
func (br *Bridge) feedSnapshot(feed string) feedSnap {
	c := &br.snaps
	c.mu.Lock()
	cached, had := c.snaps[feed]
	c.mu.Unlock()
	s, same, ok := br.hubSnapshot(feed, cached)
	switch {
	case same:
		return cached // the hub's window is as it was copied
	case !ok && had && cached.hub == nil && time.Since(cached.at) < time.Second:
		return cached
	case !ok:
		s = br.logSnapshot(feed)
	}
	s.at = time.Now()
	c.mu.Lock()
	if c.snaps == nil || len(c.snaps) >= maxFeedSnaps {
		c.snaps = map[string]feedSnap{}
	}
	c.snaps[feed] = s
	c.mu.Unlock()
	return s
}

// hubSnapshot copies the window of the feed's hub, if one runs here (ok); same: the
// window is the one cached was copied from (same hub, head, length and first seq), and
// nothing was copied.
func (br *Bridge) hubSnapshot(feed string, cached feedSnap) (s feedSnap, same, ok bool) {
	br.mu.Lock()
	h := br.hubs[feed]
	br.mu.Unlock()
	if h == nil {
		return feedSnap{}, false, false
	}
	select {
	case <-h.ready:
	default:
		return feedSnap{}, false, false
	}
	if h.err != nil {
		return feedSnap{}, false, false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return feedSnap{}, false, false
	}
	n := len(h.window)
	if cached.hub == h && cached.head == h.head && len(cached.seqs) == n && (n == 0 || cached.seqs[0] == h.window[0].seq) {
		return feedSnap{}, true, true
	}
	s = feedSnap{hub: h, head: h.head, seqs: make([]uint64, n), times: make([]time.Time, n)}
	for i, e := range h.window {
		s.seqs[i], s.times[i] = e.seq, e.time
	}
	return s, false, true
}

// logSnapshot reads the feed's events among the stream's newest WindowSize seqs. A
// failed read is an empty snapshot (lag 0) for its second.
func (br *Bridge) logSnapshot(feed string) feedSnap {
	ctx, cancel := context.WithTimeout(br.ctx, 2*time.Second)
	defer cancel()
	head, err := br.b.LastSeq(ctx, feed)
	if err != nil || head == 0 {
		return feedSnap{}
	}
	events, _, err := br.src.Window(ctx, feed, head, br.cfg.WindowSize)
	if err != nil {
		return feedSnap{head: head}
	}
	s := feedSnap{head: head, seqs: make([]uint64, len(events)), times: make([]time.Time, len(events))}
	for i, ev := range events {
		s.seqs[i], s.times[i] = ev.Seq, ev.Time
	}
	return s
}

// eventTime is when the event seq of the hub's feed was stored, if the hub still has
// it in memory.
func (h *hub) eventTime(seq uint64) (time.Time, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	i := sort.Search(len(h.window), func(i int) bool { return h.window[i].seq >= seq })
	if i < len(h.window) && h.window[i].seq == seq {
		return h.window[i].time, true
	}
	for _, e := range h.state {
		if e.seq == seq {
			return e.time, true
		}
	}
	return time.Time{}, false
}

// countBehind is kioskfeed_devices_behind: the devices with a socket on this instance
// whose state is behind or stale. It is asked at each scrape of /metrics, not on a
// timer: at 10,000 idle tablets a count every flush was a fifth of the server's idle CPU.
func (br *Bridge) countBehind() int {
	n := 0
	for _, s := range br.liveSessions() {
		if _, _, _, st := br.DeviceShown(s.device, s.feed); st == StateBehind || st == StateStale {
			n++
		}
	}
	return n
}
