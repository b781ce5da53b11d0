package bridge

// This file owns what makes a reset current: a reset carries the feed's state as of the
// log's newest event when it is made (docs/protocol.md §5 step 4), so a hub that may lag
// its log (it had an event within busyFeed) asks the log for the feed's newest seq and
// waits, at most resetWait, until it has applied that far. The questions of resets that
// come together are shared (logHead).

import (
	"context"
	"log/slog"
	"sync"
)

// resetFreshLocked is resetLocked once the hub has applied every event the log held
// when the reset began (awaitLogLocked): a reset carries the feed's current state
// (docs/protocol.md §5 step 4), and a producer whose publish was acknowledged before
// the tablet connected finds it in that state, not after synced.
func (h *hub) resetFreshLocked(ctx context.Context, s *session) {
	h.awaitLogLocked(ctx, s)
	h.resetLocked(s)
}

// awaitLogLocked waits, at most resetWait, until the hub has applied the feed's newest
// event in the log, when the hub had one within busyFeed (a burst its consumer may
// still be working through; an idle hub is not asked about). Meanwhile s's live events
// are held back as in a catch-up, and the reset then drops them: they are in the state
// or before it. Called and returns with h.mu held; it is released while waiting.
func (h *hub) awaitLogLocked(ctx context.Context, s *session) {
	if h.lastAt.IsZero() || h.br.cfg.Now().Sub(h.lastAt) > busyFeed {
		return
	}
	s.startCatchUp()
	h.mu.Unlock()
	defer h.mu.Lock()
	ctx, cancel := context.WithTimeout(ctx, resetWait)
	defer cancel()
	last, err := h.logHead(ctx)
	if err != nil {
		return // the state the hub has: the newer events follow live
	}
	for {
		h.mu.Lock()
		if h.advanced == nil {
			h.advanced = make(chan struct{})
		}
		head, advanced := h.head, h.advanced
		h.mu.Unlock()
		if head >= last {
			return
		}
		select {
		case <-advanced:
		case <-ctx.Done():
			h.br.log.Debug("reset sent before the hub reached the log's head",
				slog.String("feed", h.feed), slog.Uint64("head", head), slog.Uint64("log_head", last))
			return
		}
	}
}

// headAsks are the questions to the log for the feed's newest seq: the one out, and the
// next, which the resets that came while it was out wait for.
type headAsks struct {
	mu     sync.Mutex
	asking *headAsk
	next   *headAsk
}

// headAsk is one question to the log and, once done is closed, its answer.
type headAsk struct {
	done chan struct{}
	seq  uint64
	err  error
}

// logHead is the feed's newest seq in the log, from a question asked after the call
// began: an answer to one asked before might miss the event a producer was told was
// stored just before this tablet's auth. A call that comes while a question is out
// waits for the next one, which every call that came meanwhile shares, so a storm of
// resets asks the log a few times, not once each (1,600 direct gets in the storm
// scenario made its resets 0.16 s slower).
func (h *hub) logHead(ctx context.Context) (uint64, error) {
	q := &h.asks
	q.mu.Lock()
	var a *headAsk
	if q.asking == nil {
		a = &headAsk{done: make(chan struct{})}
		q.asking = a
		q.mu.Unlock()
		if !h.br.goSafe("log head", func() { h.answer(a, h.askLog) }) {
			h.answer(a, shutDown)
		}
	} else {
		if q.next == nil {
			q.next = &headAsk{done: make(chan struct{})}
		}
		a = q.next
		q.mu.Unlock()
	}
	if hk := hooks.Load(); hk != nil && hk.resetAwaits != nil {
		hk.resetAwaits() // its question is out or next
	}
	select {
	case <-a.done:
		return a.seq, a.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// answer hands a, and each question that came while it was out, the answer of get,
// one after the other, until none is waiting.
func (h *hub) answer(a *headAsk, get func() (uint64, error)) {
	q := &h.asks
	for a != nil {
		a.seq, a.err = get()
		close(a.done)
		q.mu.Lock()
		a, q.next = q.next, nil
		q.asking = a
		q.mu.Unlock()
	}
}

// askLog is the question: the feed's newest seq in the log.
func (h *hub) askLog() (uint64, error) {
	ctx, cancel := h.br.opContext(resetWait)
	defer cancel()
	return h.br.src.LastSeq(ctx, h.feed)
}

// shutDown is the answer while the bridge shuts down: no question is asked.
func shutDown() (uint64, error) { return 0, errHubClosed }
