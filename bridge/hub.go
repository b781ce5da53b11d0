package bridge

import (
	"context"
	"errors"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/kioskfeed/kioskfeed/broker"
)

// hub is one feed's fan-out on this instance: one ordered consumer, each event encoded
// into one frame shared by every tablet of the feed, a window of recent events for
// replay from memory, and the feed's current state for resets, kept up to date from
// the same events.
type hub struct {
	br   *Bridge
	feed string

	ready chan struct{} // closed when started (or failed: err)
	err   error
	// epoch is the incarnation of the log the hub follows, read as it starts (before
	// the feed's state): the epoch its tablets are welcomed with and compared against.
	epoch string

	mu   sync.Mutex
	subs map[*session]int // each tablet and the writer it belongs to (fanout.go)
	head uint64           // newest seq of the feed this hub has seen
	base uint64           // window holds every event of the feed with base < seq <= head
	// The log's retention (FeedSource.Retention), which the window mirrors: what the log
	// dropped is not replayed from memory either (docs/protocol.md §5 step 4).
	perKind int
	maxAge  time.Duration
	window  []entry // oldest first, at most WindowSize
	state   []entry // newest state/clear event (if any) and the items after it
	stop    func()
	linger  *time.Timer
	closed  bool
	// lastAt is when the hub last applied an event. advanced, made by the first reset
	// that waits for a newer head (awaitLogLocked), is closed by the next event.
	lastAt   time.Time
	advanced chan struct{}
	// asks coalesces the resets' questions to the log for the feed's newest seq
	// (logHead).
	asks headAsks

	bySlot []map[*session]struct{} // the tablets of each of the bridge's writers (fanout.go)
	first  int                     // the writer this feed starts counting from
	done   chan struct{}           // closed by shutdown
}

var errHubClosed = errors.New("hub closed")

type entry struct {
	seq   uint64
	kind  string
	time  time.Time // when JetStream stored it: the log's age limit counts from it
	frame []byte
}

// hub returns the feed's hub, starting it on first use.
func (br *Bridge) hub(feed string) (*hub, error) {
	br.mu.Lock()
	h, ok := br.hubs[feed]
	if !ok {
		h = newHub(br, feed)
		br.hubs[feed] = h
	}
	br.mu.Unlock()
	if !ok {
		h.err = h.start()
		if h.err != nil {
			br.mu.Lock()
			delete(br.hubs, feed)
			br.mu.Unlock()
		}
		close(h.ready)
	}
	<-h.ready
	return h, h.err
}

func (h *hub) start() error {
	ctx, cancel := h.br.opContext(hubStartTimeout)
	defer cancel()
	// Every tablet of the feed on this instance waits for the start: after a restart,
	// all of them. A slow one is logged with its parts.
	began := time.Now()
	var tEpoch, tState, tWindow time.Duration
	defer func() {
		if took := time.Since(began); took >= slowHubStart {
			h.br.log.Info("feed hub slow to start", slog.String("feed", h.feed), slog.Duration("took", took),
				slog.Duration("epoch", tEpoch), slog.Duration("state", tState), slog.Duration("window", tWindow))
		}
	}()
	h.perKind, h.maxAge = h.br.src.Retention()
	epoch, err := h.br.src.CheckEpoch(ctx)
	if err != nil {
		return err
	}
	tEpoch = time.Since(began)
	h.epoch = epoch
	st, err := h.br.src.State(ctx, h.feed)
	if err != nil {
		return err
	}
	tState = time.Since(began) - tEpoch
	h.head, h.base = st.Seq, st.Seq
	for _, ev := range st.Events {
		h.state = append(h.state, entry{seq: ev.Seq, kind: ev.Kind, time: ev.Time, frame: eventFrame(ev)})
	}
	// The window, from one bounded read of the log up to the state's seq: after a
	// restart every tablet reconnects at once, a few events behind, and is served from
	// memory (one shared frame per event) instead of one JetStream read each. Without
	// it the hub still works, from the log: a failed read costs no tablet.
	if recent, base, err := h.br.src.Window(ctx, h.feed, st.Seq, h.br.cfg.WindowSize); err == nil {
		h.base = base
		for _, ev := range recent {
			h.window = append(h.window, entry{seq: ev.Seq, kind: ev.Kind, time: ev.Time, frame: h.shared(ev)})
		}
	}
	tWindow = time.Since(began) - tEpoch - tState
	// Follow from the state's newest seq: nothing between the reads and the consumer
	// is lost.
	stop, err := h.br.src.Follow(h.feed, st.Seq, h.onEvent)
	if err != nil {
		return err
	}
	h.mu.Lock()
	h.stop = stop
	h.mu.Unlock()
	return nil
}

// retainLocked drops from the window what the log no longer keeps, raising base past
// it: the log keeps the newest perKind events of each kind and none older than maxAge.
// The window is the feed's newest events, so the newest of each kind in it are the
// newest in the log too. With the defaults (perKind above WindowSize, no age limit) it
// drops nothing and costs nothing.
func (h *hub) retainLocked(now time.Time) {
	cut := 0 // window[:cut] is gone from the log
	if h.perKind > 0 && len(h.window) > h.perKind {
		counts := map[string]int{}
		for i := len(h.window) - 1; i >= 0; i-- {
			if counts[h.window[i].kind]++; counts[h.window[i].kind] > h.perKind {
				cut = i + 1
				break
			}
		}
	}
	if h.maxAge > 0 {
		for old := now.Add(-h.maxAge); cut < len(h.window) && h.window[cut].time.Before(old); cut++ {
		}
	}
	if cut > 0 {
		h.base = h.window[cut-1].seq
		h.window = append(h.window[:0:0], h.window[cut:]...)
	}
}

// shared is ev's frame, the state's own when ev is in the state, so a backfilled event
// is kept in memory once.
func (h *hub) shared(ev broker.Event) []byte {
	for _, e := range h.state {
		if e.seq == ev.Seq {
			return e.frame
		}
	}
	return eventFrame(ev)
}

// applyState keeps the feed's state (docs/protocol.md §5 step 4) current: a state or clear
// event starts it anew; items follow it, the newest ReplayLimit of them.
func (h *hub) applyState(e entry) {
	if e.kind != broker.KindItem {
		h.state = append(h.state[:0:0], e)
		return
	}
	h.state = append(h.state, e)
	first := 0
	if h.state[0].kind != broker.KindItem {
		first = 1
	}
	if items := len(h.state) - first; items > h.br.cfg.ReplayLimit {
		drop := items - h.br.cfg.ReplayLimit
		h.state = append(h.state[:first:first], h.state[first+drop:]...)
	}
}

// attach sends s what it missed (or a reset and the state), then live events, with no
// gap and no repeat even for events that arrive while a replay is read. A tablet more
// than CatchupLimit events behind gets a reset and the state: a catch-up is bounded.
func (h *hub) attach(ctx context.Context, s *session, since uint64, epoch string) error {
	h.mu.Lock()
	if h.closed { // expired between lookup and attach: the caller gets a fresh hub
		h.mu.Unlock()
		return errHubClosed
	}
	if h.linger != nil {
		h.linger.Stop()
		h.linger = nil
	}
	h.joinLocked(s)
	if h.maxAge > 0 {
		h.retainLocked(h.br.cfg.Now()) // events may have aged out since the last one came
	}
	current := epoch == "" || epoch == h.epoch
	switch {
	case since == 0 || !current:
		h.resetFreshLocked(ctx, s)
		h.mu.Unlock()
		return nil
	case since >= h.base && since <= h.head:
		// The window holds every event after since: how many decides.
		first := sort.Search(len(h.window), func(i int) bool { return h.window[i].seq > since })
		if len(h.window)-first > h.br.cfg.CatchupLimit {
			h.resetFreshLocked(ctx, s)
		} else {
			h.br.metrics.replays.WithLabelValues("memory").Inc()
			h.replayLocked(s, h.window[first:])
		}
		h.mu.Unlock()
		return nil
	case since < h.base && len(h.window) > h.br.cfg.CatchupLimit:
		// Older than the window, which alone holds more than a catch-up may replay:
		// the answer is a reset, and the log need not be read to know it. A storm of
		// far-behind tablets then costs no JetStream read each (BENCHMARKS.md: at 800
		// behind, a third of 1,000 such reads timed out waiting for a slot).
		h.resetFreshLocked(ctx, s)
		h.mu.Unlock()
		return nil
	}
	// Older than the window, or ahead of this hub (a seq from another life of the log,
	// or this hub's consumer lags the instance the tablet came from): only the log can
	// tell. Read it while live events wait in s.pending; the hub's later deliveries of
	// what the log sent are skipped by lastSent.
	s.startCatchUp()
	s.uncork()      // the welcome need not wait for the read
	floor := h.head // the read must reach it: the hub has seen every event up to it
	h.mu.Unlock()

	events, err := h.readCatchUp(ctx, since)
	if hk := hooks.Load(); hk != nil && hk.catchUpRead != nil {
		hk.catchUpRead(s)
	}
	err = h.endCatchUp(s, events, err, since, floor)
	if hk := hooks.Load(); hk != nil && hk.liveAgain != nil {
		hk.liveAgain(s)
	}
	return err
}

// endCatchUp is one critical section from the end of a JetStream catch-up to synced:
// ending the catch-up, the replay, the held-back events and synced. A fan-out delivers
// under s.mu, so each live event comes wholly before it (into pending) or wholly after
// (skipped, or sent after synced, by lastSent): none can raise lastSent past events
// of the replay not yet queued, which would then be skipped (issue 12 §2).
//
// A read that ends before floor, the hub's head when it began, is short: the log
// answered from a replica that has not stored yet what this hub already follows past
// (right after a NATS node restarts). Its replay would then say synced over a gap, so
// the tablet gets a reset and the state, which the hub holds up to date.
func (h *hub) endCatchUp(s *session, events []broker.Event, err error, since, floor uint64) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	short := err == nil && since < floor && (len(events) == 0 || events[len(events)-1].Seq < floor)
	if short {
		h.br.log.Warn("catch-up read ended before the hub's head; sending a reset",
			slog.String("feed", h.feed), slog.Uint64("since", since), slog.Uint64("head", floor))
	}
	if short || errors.Is(err, broker.ErrGap) || errors.Is(err, broker.ErrTooFar) || (err == nil && s.overflowed) {
		h.resetBothLocked(s)
		return nil
	}
	pending := s.endCatchUpLocked()
	if err != nil {
		return err
	}
	h.br.metrics.replays.WithLabelValues("jetstream").Inc()
	for _, ev := range events {
		if ev.Seq > s.lastSent {
			s.lastSent = ev.Seq
			s.catchUpLocked(eventFrame(ev))
		}
	}
	s.flushPendingLocked(pending)
	s.shown.synced = max(s.lastSent, h.head) // a shown may name it (shown.go)
	s.catchUpLocked(syncedFrame(s.shown.synced))
	return nil
}

// readCatchUp reads the events after since from the log, at most CatchupLimit of them,
// holding one of the instance's CatchupReads slots: a reconnect storm of far-behind
// tablets holds that many histories at once, not one per tablet.
func (h *hub) readCatchUp(ctx context.Context, since uint64) ([]broker.Event, error) {
	hk := hooks.Load()
	if hk != nil && hk.catchUpWait != nil {
		hk.catchUpWait()
	}
	select {
	case h.br.catchUps <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-h.br.catchUps }()
	if hk != nil && hk.catchUpReading != nil {
		hk.catchUpReading()
	}
	return h.br.src.Catchup(ctx, h.feed, since, h.br.cfg.CatchupLimit)
}

// resetLocked sends a reset and the feed's state from memory, and ends a catch-up the
// session may be in: what it held back is in the state or before it.
func (h *hub) resetLocked(s *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	h.resetBothLocked(s)
}

// resetBothLocked is resetLocked with s.mu held too.
func (h *hub) resetBothLocked(s *session) {
	h.br.metrics.replays.WithLabelValues("reset").Inc()
	s.endCatchUpLocked()
	s.catchUpLocked(resetFrame)
	for _, e := range h.state {
		s.catchUpLocked(e.frame)
	}
	s.lastSent = h.head
	s.catchUpLocked(syncedFrame(h.head))
}

// replayLocked sends events, the window's events after the tablet's since (at most
// CatchupLimit of them), then synced.
func (h *hub) replayLocked(s *session, events []entry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range events {
		s.catchUpLocked(e.frame)
	}
	s.lastSent = h.head
	s.catchUpLocked(syncedFrame(h.head))
}

// checkEpoch looks for a log made anew (the FEEDS stream deleted and created again
// while this instance ran). A hub on the old log has the old log's seqs, window and
// state, and its consumer follows a stream that no longer holds them: it is stopped,
// and its tablets are closed 1012, so they come back (with the old epoch) to a hub on
// the new log and get a reset. Run by the lease upkeep: one stream info per interval
// per instance, whatever the number of tablets.
func (br *Bridge) checkEpoch(ctx context.Context) {
	epoch, err := br.src.CheckEpoch(ctx)
	if err != nil {
		return // NATS away: the upkeep has its own reaction to that
	}
	br.mu.Lock()
	var stale []*hub
	for feed, h := range br.hubs {
		select {
		case <-h.ready:
		default:
			continue // starting: it reads the epoch itself
		}
		if h.err == nil && h.epoch != epoch {
			stale = append(stale, h)
			delete(br.hubs, feed)
		}
	}
	br.mu.Unlock()
	for _, h := range stale {
		h.mu.Lock()
		subs := make([]*session, 0, len(h.subs))
		for s := range h.subs {
			subs = append(subs, s)
		}
		h.mu.Unlock()
		h.shutdown()
		br.log.Warn("the event log was made anew: its tablets reconnect for a reset",
			slog.String("feed", h.feed), slog.Int("tablets", len(subs)))
		for _, s := range subs {
			s.closeWith(reasonLogRenewed)
		}
	}
}

// detach removes s; a hub left without tablets lingers a while, then stops.
func (h *hub) detach(s *session) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.leaveLocked(s)
	if len(h.subs) == 0 && !h.closed && h.linger == nil {
		h.linger = time.AfterFunc(h.br.cfg.HubLinger, h.expire)
	}
}

// expire stops a hub that stayed empty through its linger.
func (h *hub) expire() {
	h.br.mu.Lock()
	h.mu.Lock()
	if len(h.subs) > 0 || h.closed {
		h.mu.Unlock()
		h.br.mu.Unlock()
		return
	}
	if h.br.hubs[h.feed] == h {
		delete(h.br.hubs, h.feed)
	}
	h.mu.Unlock()
	h.br.mu.Unlock()
	h.shutdown()
}

// shutdown stops the consumer (idempotent).
func (h *hub) shutdown() {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return
	}
	h.closed = true
	close(h.done)
	if h.linger != nil {
		h.linger.Stop()
	}
	stop := h.stop
	h.mu.Unlock()
	if stop != nil {
		stop()
	}
}
