package broker

import (
	"fmt"
	"sync"
	"time"
)

// maxAuditAggregate bounds how many (type, address) pairs the audit aggregator follows
// at once. Each costs a few hundred bytes (one AuditRecord of bounded strings), so the
// table stays under about 2 MiB however many addresses an attacker has. Past the bound,
// a pair it does not follow is counted in its type's overflow entry (at most one per
// aggregated type), whose record has no remote address.
const maxAuditAggregate = 4096

// auditAggregator sums up repeated refusals of one type from one address (see
// Broker.Audit). Its windows run on the monotonic clock: they bound how many records
// are written per real minute, whatever the broker's Now says.
type auditAggregator struct {
	window time.Duration
	prefix int // IPv6 clients are followed per prefix of this many bits, as limited
	write  func(AuditRecord)

	mu     sync.Mutex
	open   map[aggKey]*aggEntry
	queue  []aggKey // the keys of open, oldest window first: every window is as long
	closed bool

	wake chan struct{} // a window opened while the queue was empty
	stop chan struct{}
	done chan struct{}
	once sync.Once
}

type aggKey struct{ typ, remote string }

// aggOverflow is the remote of a type's overflow entry (no real address is empty).
const aggOverflow = "\x00overflow"

type aggEntry struct {
	end   time.Time   // when the window ends
	since time.Time   // the record time of the window's first refusal
	n     int         // refusals counted after the first
	last  AuditRecord // the latest of them
	// mixedFeed and mixedDevice say the counted refusals did not all name one feed or
	// device, so the summing record names none; mixedAddr that they came from more
	// than one address of an IPv6 prefix, so it names the prefix.
	mixedFeed, mixedDevice, mixedAddr bool
}

func newAuditAggregator(window time.Duration, ipv6Prefix int, write func(AuditRecord)) *auditAggregator {
	return &auditAggregator{
		window: window, prefix: ipv6Prefix, write: write, open: make(map[aggKey]*aggEntry),
		wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
	}
}

// absorb counts rec when a window for its type and address is open, and reports
// whether it did; false means rec must be written now (it opens a window, or the
// aggregator is closed).
func (g *auditAggregator) absorb(rec AuditRecord) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	// Keyed as the limiters key addresses: an IPv6 client has a whole /64 to draw
	// addresses from, and each address of its own would open a window.
	k := aggKey{rec.Type, LimitKey(rec.RemoteAddr, g.prefix)}
	e := g.open[k]
	if e == nil && len(g.open) >= maxAuditAggregate {
		k = aggKey{rec.Type, aggOverflow}
		e = g.open[k]
	}
	if e != nil {
		if e.n > 0 {
			e.mixedFeed = e.mixedFeed || e.last.Feed != rec.Feed
			e.mixedDevice = e.mixedDevice || e.last.DeviceID != rec.DeviceID
			e.mixedAddr = e.mixedAddr || e.last.RemoteAddr != rec.RemoteAddr
		}
		e.n++
		e.last = rec
		return true
	}
	g.open[k] = &aggEntry{end: time.Now().Add(g.window), since: rec.Time}
	g.queue = append(g.queue, k)
	if len(g.queue) == 1 {
		select {
		case g.wake <- struct{}{}:
		default:
		}
	}
	return false
}

// run writes the summing record of each window as it ends, until close.
func (g *auditAggregator) run() {
	defer close(g.done)
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		next := g.flush(false)
		if next > 0 {
			t.Reset(next)
		}
		select {
		case <-g.stop:
			g.flush(true)
			return
		case <-g.wake:
		case <-t.C:
		}
	}
}

// flush writes the records of the windows that have ended (all, when final) and
// returns how long until the next one ends, 0 when none is open.
func (g *auditAggregator) flush(final bool) time.Duration {
	var due []AuditRecord
	var next time.Duration
	g.mu.Lock()
	now := time.Now()
	for len(g.queue) > 0 {
		k := g.queue[0]
		e := g.open[k]
		if !final && e.end.After(now) {
			next = e.end.Sub(now)
			break
		}
		g.queue = g.queue[1:]
		delete(g.open, k)
		if e.n > 0 {
			due = append(due, e.record(k))
		}
	}
	if final {
		g.closed = true
	}
	if len(g.queue) == 0 {
		g.queue = nil // let a long queue's array go
	}
	g.mu.Unlock()
	for _, rec := range due {
		g.write(rec)
	}
	return next
}

// record is the summing record of a window: its count, the latest refusal's detail,
// and the feed and device only when every counted refusal named the same.
func (e *aggEntry) record(k aggKey) AuditRecord {
	rec := e.last
	rec.Count = e.n
	from := "from this address"
	if e.mixedAddr {
		rec.RemoteAddr = k.remote // the prefix
		from = "from addresses of " + k.remote
	}
	if k.remote == aggOverflow {
		rec.RemoteAddr = ""
		from = fmt.Sprintf("from addresses past the %d the audit log follows at once", maxAuditAggregate)
	}
	if e.mixedFeed {
		rec.Feed = ""
	}
	if e.mixedDevice {
		rec.DeviceID = ""
	}
	rec.Detail = fmt.Sprintf("%d more %s %s since %s; the last: %s", e.n, k.typ, from, e.since.UTC().Format(time.RFC3339), e.last.Detail)
	return rec
}

// close writes every open window's record and stops run; later refusals are written
// one by one. Idempotent.
func (g *auditAggregator) close() {
	g.once.Do(func() {
		close(g.stop)
		<-g.done
	})
}
