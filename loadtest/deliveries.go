package loadtest

import (
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
