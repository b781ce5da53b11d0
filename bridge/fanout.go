package bridge

// This file owns the fan-out: each event is encoded once, into one frame, and written
// to the feed's tablets by the bridge's writers, a pool shared by every feed. Each tablet
// belongs to one writer from its attach to its detach; each writer delivers the events
// it is handed in order, so a tablet's order holds, and the writers of one event run at
// once, so the last tablet of a big feed does not wait for every write before its own.
//
// Why more writers than cores: a write to a socket is a system call that, on a busy
// machine, spends far longer off the CPU than on it (over loopback the kernel does the
// receiver's work in the sender's call and wakes the receiver, which may preempt it).
// While one writer waits in the kernel, the others keep writing. Measured at 10,000
// tablets and 5 events/s on two cores (BENCHMARKS.md): two writers left the feed seconds
// behind, sixteen kept it within a few hundred milliseconds.
//
// A delivery is a non-blocking write (write.go), so a slow tablet delays neither its
// writer nor the others; a tablet whose queue is full is closed 1013 there.

import (
	"hash/fnv"
	"sync/atomic"
	"time"

	"github.com/kioskfeed/kioskfeed/broker"
)

// writerBacklog is how many events a writer may have waiting before a hub waits for
// it: a feed published faster than its tablets can be written to slows its consumer
// (whose pending messages JetStream bounds) instead of growing a queue here.
const writerBacklog = 64

// delivery is one event for one writer: the writer's tablets of the event's feed as
// onEvent found them.
type delivery struct {
	ev   *fanEvent
	subs []*session
}

// fanEvent is one event of one hub on its way to every writer that had tablets for
// it; the last writer to finish records the fan-out.
type fanEvent struct {
	h      *hub
	seq    uint64
	stored time.Time
	frame  []byte
	left   atomic.Int32 // writers still delivering it
}

// startWriters starts the bridge's FanoutWriters writers; they end with Shutdown.
func (br *Bridge) startWriters() {
	br.writers = make([]chan delivery, br.cfg.FanoutWriters)
	for i := range br.writers {
		in := make(chan delivery, writerBacklog)
		br.writers[i] = in
		br.goSafe("fan-out writer", func() { br.write(in) })
	}
}

// write is one writer's loop: each event handed to it to each of its tablets, in order.
func (br *Bridge) write(in <-chan delivery) {
	for {
		select {
		case d := <-in:
			for i, s := range d.subs {
				s.deliver(d.ev.seq, d.ev.frame)
				d.subs[i] = nil // keep no ended session alive while the event is recorded
			}
			if d.ev.left.Add(-1) == 0 {
				d.ev.h.fannedOut(d.ev)
			}
		case <-br.stop:
			return
		}
	}
}

func newHub(br *Bridge, feed string) *hub {
	h := &hub{br: br, feed: feed, ready: make(chan struct{}), subs: map[*session]int{}, done: make(chan struct{})}
	h.bySlot = make([]map[*session]struct{}, len(br.writers))
	// Where this feed starts counting the writers: feeds of a few tablets each then
	// spread over the pool instead of all sharing the first writer.
	f := fnv.New32a()
	_, _ = f.Write([]byte(feed))
	h.first = int(f.Sum32() % uint32(len(br.writers)))
	return h
}

// joinLocked adds s to the hub, with the writer that has the fewest of its tablets.
func (h *hub) joinLocked(s *session) {
	if _, ok := h.subs[s]; ok {
		return
	}
	n := len(h.bySlot)
	best := h.first
	for k := range n {
		i := (h.first + k) % n
		if len(h.bySlot[i]) < len(h.bySlot[best]) {
			best = i
		}
	}
	if h.bySlot[best] == nil {
		h.bySlot[best] = map[*session]struct{}{}
	}
	h.bySlot[best][s] = struct{}{}
	h.subs[s] = best
}

// leaveLocked removes s from the hub and its writer's set.
func (h *hub) leaveLocked(s *session) {
	if i, ok := h.subs[s]; ok {
		delete(h.bySlot[i], s)
		delete(h.subs, s)
	}
}

// onEvent runs on the consumer's goroutine for each new event of the feed.
func (h *hub) onEvent(ev broker.Event) {
	frame := eventFrame(ev)
	e := entry{seq: ev.Seq, kind: ev.Kind, time: ev.Time, frame: frame}
	h.mu.Lock()
	if ev.Seq <= h.head || h.closed {
		h.mu.Unlock()
		return
	}
	h.head = ev.Seq
	h.lastAt = h.br.cfg.Now()
	if h.advanced != nil { // resets wait for a newer head (awaitLogLocked)
		close(h.advanced)
		h.advanced = nil
	}
	h.window = append(h.window, e)
	if n := len(h.window) - h.br.cfg.WindowSize; n > 0 {
		h.base = h.window[n-1].seq
		h.window = append(h.window[:0:0], h.window[n:]...)
	}
	h.retainLocked(h.br.cfg.Now())
	h.applyState(e)
	// Each writer's tablets as of now, taken with head raised: one that attaches after
	// this is in no list and gets this event from the window or the state, and one in a
	// list that attached anyway skips it by its lastSent. The lists are the writers'
	// until they are done with them, so each event has its own.
	fan := &fanEvent{h: h, seq: ev.Seq, stored: ev.Time, frame: frame}
	type handOff struct {
		w chan<- delivery
		d delivery
	}
	var out []handOff
	for i, set := range h.bySlot {
		if len(set) == 0 {
			continue
		}
		subs := make([]*session, 0, len(set))
		for s := range set {
			subs = append(subs, s)
		}
		out = append(out, handOff{h.br.writers[i], delivery{ev: fan, subs: subs}})
	}
	h.mu.Unlock()
	if hk := hooks.Load(); hk != nil && hk.fanning != nil {
		hk.fanning(ev.Seq)
	}
	if len(out) == 0 { // no tablet here: nothing to time
		if hk := hooks.Load(); hk != nil && hk.fannedOut != nil {
			hk.fannedOut(ev.Seq)
		}
		return
	}
	fan.left.Store(int32(len(out)))
	for _, o := range out {
		select {
		case o.w <- o.d:
		case <-h.done:
			return // the hub stopped: its tablets are being closed
		case <-h.br.stop:
			return
		}
	}
}

// fannedOut records an event every writer has delivered.
func (h *hub) fannedOut(fan *fanEvent) {
	h.br.metrics.fanout.Observe(time.Since(fan.stored).Seconds())
	if hk := hooks.Load(); hk != nil && hk.fannedOut != nil {
		hk.fannedOut(fan.seq)
	}
}
