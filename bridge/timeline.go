package bridge

// This file owns the bridge's part of the devices' timelines (docs/protocol.md §6,
// #http-get-api-admin-devices-id-timeline; broker/timeline.go keeps the stream): it
// notes the state changes of the tablets whose socket is here — connected (online),
// closed (offline; a drain writes one record for all its sockets instead), and behind,
// caught up or asleep as DeviceShown says, looked at every Timeline.Sweep — and writes
// them to the TIMELINE stream from one goroutine.
//
// A device costs at most one record per Timeline.MinGap from an instance: a change
// within the gap waits for it, and a change the next one undoes within the gap (a
// tablet flapping its Wi-Fi, a cable plugged in and out) is never written, only
// counted: the next record carries the count (flaps), which the timeline shows. So a
// flapping tablet costs at most 3600/15 = 240 records an hour, within the stream's 256
// per device, and no write storm: every write is asynchronous, off the tablet's
// goroutines, at most 256 in flight. Never a write per ack.

import (
	"context"
	"hash/fnv"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/kioskfeed/kioskfeed/broker"
)

// TimelineConfig configures the timelines' records (Config.Timeline). Zero fields get
// the defaults their comments give.
type TimelineConfig struct {
	// Sweep is how often the states of the tablets connected here are looked at, for
	// behind, caught up and asleep, and the leases of dead instances for their offline.
	// Default 30s. A sweep asks DeviceShown of each tablet here: at 10,000 tablets some
	// 25 ms of CPU, estimated from the 10,000-tablet profile of commit 5d4ca1d (where
	// the same walk every 2 s was about 1.2% of a core), so under 0.1% every 30 s.
	Sweep time.Duration
	// MinGap is the least time between two records of one device from this instance.
	// Default 15s: an hour then holds at most 240 records of a device, within the
	// stream's broker.TimelineMaxPerDevice (256), so a flapping device's last hour is
	// whole. Shorter (tests) may lose the oldest part of it.
	MinGap time.Duration
}

func (c *TimelineConfig) setDefaults() {
	if c.Sweep <= 0 {
		c.Sweep = 30 * time.Second
	}
	if c.MinGap <= 0 {
		c.MinGap = 15 * time.Second
	}
}

// timelineRefresh is how old a connected device's newest record may get before it is
// written again, unchanged: the record that says what a device was doing when the hour
// began must still be in the stream (broker.TimelineKeep is the hour and 30 minutes).
// Each device waits up to timelineJitter more (by a hash of its id), so that 10,000
// tablets connected at once are not written again all at once.
const (
	timelineRefresh = 20 * time.Minute
	timelineJitter  = 5 * time.Minute
)

func refreshAfter(device string) time.Duration {
	h := fnv.New32a()
	_, _ = h.Write([]byte(device))
	return timelineRefresh + time.Duration(h.Sum32()%uint32(timelineJitter/time.Second))*time.Second
}

// timelineDev is what the instance knows of one device's timeline: kept while the
// device has a socket here, and for a gap after it closed.
type timelineDev struct {
	here      bool      // a socket of the device is open here
	written   string    // the state this instance wrote last ("": none)
	writtenAt time.Time // when (cluster clock)
	pending   string    // a state not written yet, waiting for the gap ("": none)
	pendingAt time.Time // when the device entered it
	flaps     int       // changes undone within the gap since the last record
}

type timeline struct {
	br    *Bridge
	store *broker.Timeline

	mu     sync.Mutex
	devs   map[string]*timelineDev // bounded by the devices with a socket here within a gap
	todo   map[string]bool         // those of devs with something waiting, or closed here
	writes int                     // records written (tests)
	kick   chan struct{}

	// deadWritten are the connections held by instances that are gone whose offline
	// this instance wrote (deadHolders): the loop's only, bounded by those leases.
	deadWritten map[string]bool
}

func newTimeline(ctx context.Context, br *Bridge) (*timeline, error) {
	st, err := broker.NewTimeline(ctx, br.b)
	if err != nil {
		return nil, err
	}
	return &timeline{br: br, store: st, devs: map[string]*timelineDev{}, todo: map[string]bool{}, kick: make(chan struct{}, 1), deadWritten: map[string]bool{}}, nil
}

// connected notes that s, which holds its device's lease, is live.
func (tl *timeline) connected(s *session) {
	tl.note(s.device, broker.TimelineOnline, tl.br.cfg.Now(), 1)
}

// closed notes that s, which held its device's lease until now, closed. A socket the
// drain closes writes no offline: the drain's one record says it for all of them
// (final; broker.TimelineDrains draws it), so that a drain of 10,000 tablets does not
// write 10,000 records while they are already coming back.
func (tl *timeline) closed(s *session) {
	if tl.br.isDraining() {
		tl.mu.Lock()
		if d := tl.devs[s.device]; d != nil {
			d.here = false // what is still waiting is written by final
		}
		tl.mu.Unlock()
		return
	}
	tl.note(s.device, broker.TimelineOffline, tl.br.cfg.Now(), -1)
}

// note records that device entered state at at; here is 1 for a socket that opened
// here, -1 for one that closed, 0 for neither (a sweep's: ignored once the device has
// no socket here). O(1), under tl.mu: the write is the loop's.
func (tl *timeline) note(device, state string, at time.Time, here int) {
	tl.mu.Lock()
	d := tl.devs[device]
	if here == 0 && (d == nil || !d.here) {
		// A sweep's look at a socket that closed since: its offline stands (else the
		// stale online would undo it, as a flap, and the device would stay online).
		tl.mu.Unlock()
		return
	}
	if d == nil {
		d = &timelineDev{}
		tl.devs[device] = d
	}
	switch here {
	case 1:
		d.here = true
	case -1:
		d.here = false
	}
	switch {
	case state == d.written:
		if d.pending != "" {
			d.flaps++ // undone within the gap: counted, not drawn
		}
		d.pending = ""
	case state != d.pending:
		if d.pending != "" {
			d.flaps++
		}
		d.pending, d.pendingAt = state, at
	}
	if d.pending != "" || d.flaps > 0 || !d.here {
		tl.todo[device] = true
	}
	tl.mu.Unlock()
	select {
	case tl.kick <- struct{}{}:
	default:
	}
}

// run writes what is due, when a change is noted and every tick, sweeps the states of
// the tablets connected here every Timeline.Sweep, and once Shutdown began writes what
// is still waiting (the sockets' offline records), gap or not.
func (tl *timeline) run() {
	cfg := tl.br.cfg.Timeline
	t := time.NewTicker(min(time.Second, cfg.MinGap/2, cfg.Sweep))
	defer t.Stop()
	swept := time.Now()
	for {
		select {
		case <-tl.br.stop:
			tl.final()
			return
		case <-tl.kick:
		case <-t.C:
		}
		all := time.Since(swept) >= cfg.Sweep
		if all {
			swept = time.Now()
			tl.sweep()
		}
		// Ended by Shutdown: a write in flight must not hold the drain up (final
		// writes what is left, bounded).
		tl.flush(tl.br.ctx, false, all)
	}
}

// final writes the drain's one record (docs/protocol.md #device-timeline: the sockets
// the drain closes write no offline each), then every record still waiting (changes
// within their gap, the offline of sockets closed before the drain), gap or not, for
// at most 2 s: what is not written by then is logged and dropped. The drain does not
// wait for its sockets' closes: they add nothing to write.
func (tl *timeline) final() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := tl.store.WriteDrain(ctx, tl.br.leases.instance, tl.br.cfg.Now()); err != nil {
		tl.br.log.Warn("timeline: the drain's record not written", slog.String("error", err.Error()))
	}
	// The writes may block past ctx (a publish waits for room in NATS's async window,
	// which the drain's lease releases share): the drain does not wait for them then.
	done := make(chan struct{})
	go func() {
		defer close(done)
		tl.flush(ctx, true, true)
	}()
	select {
	case <-done:
	case <-time.After(2500 * time.Millisecond):
		tl.br.log.Warn("timeline: the drain's offline records are still being written; not waiting for them")
	}
}

// sweep notes the state of every tablet connected here as DeviceShown sees it: live is
// online, behind and stale are behind, asleep is asleep.
func (tl *timeline) sweep() {
	now := tl.br.cfg.Now()
	for _, s := range tl.br.liveSessions() {
		if !s.joined.Load() {
			continue
		}
		var state string
		switch _, _, _, st := tl.br.DeviceShown(s.device, s.feed); st {
		case StateLive:
			state = broker.TimelineOnline
		case StateBehind, StateStale:
			state = broker.TimelineBehind
		case StateAsleep:
			state = broker.TimelineAsleep
		default:
			continue // offline: the lease is going, and the close says so
		}
		tl.note(s.device, state, now, 0)
	}
	tl.deadHolders(now)
}

// deadHolders writes offline for each device whose lease is held by an instance that is
// gone: it died without writing its sockets' offline records. Every instance notices it
// (within lease_ttl, when the dead instance's liveness key expires, and a sweep) and
// writes the record with the Nats-Msg-Id offline/<device>/<connection>, so the stream
// keeps the first. A sweep walks the lease mirror once (some 1 ms at 10,000 devices)
// and asks once per other instance whether it lives (cached for a second).
func (tl *timeline) deadHolders(now time.Time) {
	l := tl.br.leases
	type held struct{ dev, inst, conn string }
	var others []held
	l.mirror.Each(func(dev string, r leaseRecord) {
		if r.Instance != l.instance {
			others = append(others, held{dev, r.Instance, r.Conn})
		}
	})
	alive := map[string]bool{}
	dead := map[string]bool{}
	var notes []broker.TimelineNote
	for _, h := range others {
		a, ok := alive[h.inst]
		if !ok {
			a = l.instanceAliveCached(h.inst, now)
			alive[h.inst] = a
		}
		if a {
			continue
		}
		dead[h.conn] = true
		if !tl.deadWritten[h.conn] {
			notes = append(notes, broker.TimelineNote{Device: h.dev, ID: "offline/" + h.dev + "/" + h.conn,
				TimelineRecord: broker.TimelineRecord{State: broker.TimelineOffline, At: now, By: l.instance}})
		}
	}
	for c := range tl.deadWritten {
		if !dead[c] {
			delete(tl.deadWritten, c) // taken over, or released
		}
	}
	if len(notes) == 0 {
		return
	}
	failed := map[string]bool{}
	for _, n := range tl.store.Write(context.Background(), notes) {
		failed[n.ID] = true
	}
	for _, n := range notes {
		if !failed[n.ID] {
			tl.deadWritten[strings.TrimPrefix(n.ID, "offline/"+n.Device+"/")] = true
		}
	}
}

// flush writes the records that are due: a device's waiting state once Timeline.MinGap
// passed since its last record (all of them when force), a connected device's unchanged
// state once its refresh is due. It forgets the devices closed here a gap ago with
// nothing waiting. It looks at the devices with something waiting (todo), or at every
// device when all (each sweep: the refreshes). A failed write waits for the next flush.
// Its writes end with ctx.
func (tl *timeline) flush(ctx context.Context, force, all bool) {
	now := tl.br.cfg.Now()
	gap := tl.br.cfg.Timeline.MinGap
	by := tl.br.leases.instance
	var notes []broker.TimelineNote
	tl.mu.Lock()
	visit := tl.devs
	if !all {
		visit = make(map[string]*timelineDev, len(tl.todo))
		for id := range tl.todo {
			if d := tl.devs[id]; d != nil {
				visit[id] = d
			}
		}
	}
	for id, d := range visit {
		delete(tl.todo, id)
		due := d.writtenAt.IsZero() || now.Sub(d.writtenAt) >= gap || force
		switch {
		case d.pending != "" && due:
			notes = append(notes, broker.TimelineNote{Device: id, TimelineRecord: broker.TimelineRecord{State: d.pending, At: d.pendingAt, Flaps: d.flaps, By: by}})
			d.written, d.writtenAt, d.pending, d.flaps = d.pending, now, "", 0
		case d.pending == "" && d.flaps > 0 && d.written != "" && due:
			// Back in the state last written: the record says so, with the flaps.
			notes = append(notes, broker.TimelineNote{Device: id, TimelineRecord: broker.TimelineRecord{State: d.written, At: now, Flaps: d.flaps, By: by}})
			d.writtenAt, d.flaps = now, 0
		case d.pending == "" && d.here && d.written != "" && now.Sub(d.writtenAt) >= refreshAfter(id):
			notes = append(notes, broker.TimelineNote{Device: id, TimelineRecord: broker.TimelineRecord{State: d.written, At: now, By: by}})
			d.writtenAt = now
		case d.pending == "" && !d.here && due:
			delete(tl.devs, id)
			continue
		}
		if d.pending != "" || d.flaps > 0 || !d.here {
			tl.todo[id] = true // still waiting for its gap, or to be forgotten
		}
	}
	tl.mu.Unlock()
	if len(notes) == 0 {
		return
	}
	failed := tl.store.Write(ctx, notes)
	tl.mu.Lock()
	tl.writes += len(notes) - len(failed)
	for _, n := range failed {
		d := tl.devs[n.Device]
		if d == nil {
			d = &timelineDev{}
			tl.devs[n.Device] = d
		}
		if d.written == n.State {
			d.written = ""
		}
		if d.pending == "" {
			d.pending, d.pendingAt = n.State, n.At
		}
		d.flaps += n.Flaps
		tl.todo[n.Device] = true
	}
	tl.mu.Unlock()
	if len(failed) > 0 {
		tl.br.log.Warn("timeline records not written", slog.Int("records", len(failed)))
	}
}

// timelineWrites is how many records the instance wrote (tests).
func (tl *timeline) timelineWrites() int {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	return tl.writes
}
