package bridge

// This file owns a hub's fan-out: each event is encoded once, into one frame, and
// written to the feed's tablets by the hub's writers. Each tablet belongs to one writer
// from its attach to its detach; each writer delivers the events in the consumer's
// order, so a tablet's order holds, and the writers of one event run on every core at
// once, so the last tablet of a big feed does not wait for every write before its own.
//
// A delivery is a non-blocking write (write.go), so a slow tablet delays neither its
// writer nor the others; a tablet whose queue is full is closed 1013 there.

import (
	"fmt"
	"sync/atomic"
	"time"

	"github.com/kioskfeed/kioskfeed/broker"
)

// writerBacklog is how many events a writer may have waiting before the consumer waits
// for it: a feed published faster than its tablets can be written to slows its
// consumer (whose pending messages JetStream bounds) instead of growing a queue here.
const writerBacklog = 64

// writer is one of a hub's writers: the tablets it owns (guarded by the hub's mu) and
// the events waiting for it.
type writer struct {
	subs map[*session]struct{}
	in   chan delivery
}

// delivery is one event for one writer: the writer's tablets as onEvent found them.
type delivery struct {
	ev   *fanEvent
	subs []*session
}

// fanEvent is one event on its way to every writer that had tablets for it; the last
// writer to finish records the fan-out.
type fanEvent struct {
	seq     uint64
	stored  time.Time
	frame   []byte
	tablets int
	left    atomic.Int32 // writers still delivering it
}

func newHub(br *Bridge, feed string) *hub {
	h := &hub{br: br, feed: feed, ready: make(chan struct{}), subs: map[*session]*writer{}, done: make(chan struct{})}
	h.writers = make([]*writer, br.cfg.FanoutWriters)
	for i := range h.writers {
		h.writers[i] = &writer{subs: map[*session]struct{}{}, in: make(chan delivery, writerBacklog)}
	}
	return h
}

// startWriters starts the hub's writers; they end when the hub shuts down.
func (h *hub) startWriters() error {
	for i, w := range h.writers {
		if !h.br.goSafe("fan-out writer", func() { h.write(w) }) {
			h.shutdown() // ends the writers already started
			return fmt.Errorf("feed %s: fan-out writer %d not started: shutting down", h.feed, i)
		}
	}
	return nil
}

// joinLocked adds s to the hub, with the writer that owns the fewest tablets.
func (h *hub) joinLocked(s *session) {
	if _, ok := h.subs[s]; ok {
		return
	}
	w := h.writers[0]
	for _, o := range h.writers[1:] {
		if len(o.subs) < len(w.subs) {
			w = o
		}
	}
	w.subs[s] = struct{}{}
	h.subs[s] = w
}

// leaveLocked removes s from the hub and its writer.
func (h *hub) leaveLocked(s *session) {
	if w, ok := h.subs[s]; ok {
		delete(w.subs, s)
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
	fan := &fanEvent{seq: ev.Seq, stored: ev.Time, frame: frame, tablets: len(h.subs)}
	type handOff struct {
		w *writer
		d delivery
	}
	var (
		batch [8]handOff
		out   = batch[:0]
	)
	for _, w := range h.writers {
		if len(w.subs) == 0 {
			continue
		}
		subs := make([]*session, 0, len(w.subs))
		for s := range w.subs {
			subs = append(subs, s)
		}
		out = append(out, handOff{w, delivery{ev: fan, subs: subs}})
	}
	h.mu.Unlock()
	if hk := hooks.Load(); hk != nil && hk.fanning != nil {
		hk.fanning(ev.Seq)
	}
	if len(out) == 0 {
		h.fannedOut(fan)
		return
	}
	fan.left.Store(int32(len(out)))
	for _, o := range out {
		select {
		case o.w.in <- o.d:
		case <-h.done:
			return // shut down: its tablets are being closed
		}
	}
}

// write is one writer's loop: each event to each of its tablets, in order.
func (h *hub) write(w *writer) {
	for {
		select {
		case d := <-w.in:
			for i, s := range d.subs {
				s.deliver(d.ev.seq, d.ev.frame)
				d.subs[i] = nil // keep no ended session alive while the event is recorded
			}
			if d.ev.left.Add(-1) == 0 {
				h.fannedOut(d.ev)
			}
		case <-h.done:
			return
		}
	}
}

// fannedOut records an event every writer has delivered.
func (h *hub) fannedOut(fan *fanEvent) {
	if fan.tablets > 0 {
		h.br.metrics.fanout.Observe(time.Since(fan.stored).Seconds())
	}
	if hk := hooks.Load(); hk != nil && hk.fannedOut != nil {
		hk.fannedOut(fan.seq)
	}
}
