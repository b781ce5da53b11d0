package loadtest

import (
	"fmt"
	"strings"
	"sync"
	"time"
)

// deliveries is what one receiver (a kioskfeed tablet or a NATS subscriber) got of a
// phase's events: the latency of each, and how many came twice.
type deliveries struct {
	mu       sync.Mutex
	phase    int     // which fan-out the latencies below belong to
	got      []int32 // per event number of the phase: latency in µs, -1 before it came
	received int     // events of the phase received
	dups     int     // events of the phase received again
}

// startPhase clears what was recorded and expects events 1..n of phase p.
func (d *deliveries) startPhase(p, n int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.phase, d.received, d.dups = p, 0, 0
	d.got = make([]int32, n)
	for i := range d.got {
		d.got[i] = -1
	}
}

// record notes event n of phase p, sent at sent (unix ns), received at now. An earlier
// phase's event (replayed by a reset) is ignored.
func (d *deliveries) record(p, n int, sent int64, now time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if p != d.phase || n < 1 || n > len(d.got) {
		return
	}
	if d.got[n-1] >= 0 {
		d.dups++
		return
	}
	us := now.Sub(time.Unix(0, sent)).Microseconds()
	d.got[n-1] = int32(min(max(us, 0), 1<<31-1))
	d.received++
}

// snapshot is a copy of the latencies, and the counts.
func (d *deliveries) snapshot() (got []int32, received, dups int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]int32(nil), d.got...), d.received, d.dups
}

// heartbeats is what a receiver measures of the server's heartbeats: the time between
// consecutive ones, while watched. A gap runs from one heartbeat to the next whether
// or not the socket changed in between, so a tablet that was dropped and came back
// shows the silence it lived through.
type heartbeats struct {
	hbMu     sync.Mutex
	last     int64   // unix ns of the newest heartbeat, 0 before the first
	watching bool    // gaps are being recorded
	gaps     []int32 // ms
}

// beat notes a heartbeat received at now.
func (h *heartbeats) beat(now time.Time) {
	h.hbMu.Lock()
	defer h.hbMu.Unlock()
	if h.watching && h.last != 0 {
		h.gaps = append(h.gaps, gapMS(now.UnixNano()-h.last))
	}
	h.last = now.UnixNano()
}

// watch starts recording gaps afresh.
func (h *heartbeats) watch() {
	h.hbMu.Lock()
	defer h.hbMu.Unlock()
	h.watching, h.gaps = true, nil
}

// unwatch stops recording and returns the gaps, the one still open at now included
// (a tablet that heard no heartbeat since its last one has been waiting that long).
func (h *heartbeats) unwatch(now time.Time) []int32 {
	h.hbMu.Lock()
	defer h.hbMu.Unlock()
	out := h.gaps
	if h.watching && h.last != 0 {
		out = append(out, gapMS(now.UnixNano()-h.last))
	}
	h.watching, h.gaps = false, nil
	return out
}

func gapMS(ns int64) int32 { return int32(min(max(ns/1e6, 0), 1<<31-1)) }

// seqCheck checks, while on, that every socket of a tablet kept the catch-up contract
// (docs/protocol.md §5 steps 4 and 5): either the events after the since it sent, gap-free and in
// order, then synced at the newest of them; or a reset, the state (any seqs), and
// synced; and after synced, live events gap-free from synced's seq.
type seqCheck struct {
	scMu       sync.Mutex
	checking   bool
	sockets    int      // sockets welcomed while checked
	replays    int      // of them, caught up by a replay
	resets     int      // of them, caught up by a reset and the state
	violations int      // events or synced out of sequence
	firstBad   string   // the first violation
	inState    bool     // between reset and synced: the state, whose seqs are not contiguous
	expect     uint64   // the seq the next event must have; 0 before a welcome
	trail      []string // the socket's first messages, for the report of a violation
}

// note keeps the first few messages of a socket.
func (c *seqCheck) note(typ string, seq uint64) {
	if len(c.trail) < 6 {
		c.trail = append(c.trail, fmt.Sprintf("%s %d", typ, seq))
	}
}

// startCheck turns the check on from the next welcome.
func (c *seqCheck) startCheck() {
	c.scMu.Lock()
	defer c.scMu.Unlock()
	c.checking, c.sockets, c.replays, c.resets, c.violations, c.firstBad = true, 0, 0, 0, 0, ""
	c.inState, c.expect, c.trail = false, 0, nil
}

func (c *seqCheck) checkWelcome(since uint64) {
	c.scMu.Lock()
	defer c.scMu.Unlock()
	if c.checking {
		c.sockets++
		c.inState, c.expect = false, since+1
		c.trail = append(c.trail[:0], fmt.Sprintf("welcome after since %d", since))
	}
}

func (c *seqCheck) checkReset() {
	c.scMu.Lock()
	defer c.scMu.Unlock()
	if c.checking && c.expect != 0 {
		c.inState = true
		c.note("reset", 0)
	}
}

func (c *seqCheck) checkEvent(seq uint64) {
	c.scMu.Lock()
	defer c.scMu.Unlock()
	if !c.checking || c.expect == 0 {
		return
	}
	c.note("event", seq)
	if c.inState {
		return
	}
	if seq != c.expect {
		c.violation("socket %d: event %d where %d was due", c.sockets, seq, c.expect)
	}
	c.expect = seq + 1
}

func (c *seqCheck) checkSynced(seq uint64) {
	c.scMu.Lock()
	defer c.scMu.Unlock()
	if !c.checking || c.expect == 0 {
		return
	}
	c.note("synced", seq)
	if c.inState {
		c.resets++
		c.inState = false
	} else {
		c.replays++
		if seq+1 != c.expect {
			c.violation("socket %d: synced at %d after a replay up to %d", c.sockets, seq, c.expect-1)
		}
	}
	c.expect = seq + 1
}

func (c *seqCheck) violation(format string, args ...any) {
	c.violations++
	if c.firstBad == "" {
		c.firstBad = fmt.Sprintf(format, args...) + " (the socket's first messages: " + strings.Join(c.trail, ", ") + ")"
	}
}

// checked is what the check saw.
func (c *seqCheck) checked() (sockets, replays, resets, violations int, first string) {
	c.scMu.Lock()
	defer c.scMu.Unlock()
	return c.sockets, c.replays, c.resets, c.violations, c.firstBad
}
