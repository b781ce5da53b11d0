package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ErrGap means some event of the feed after the asked seq is no longer kept (retention
// pushed it out) or the seq is from the future: the reader must reset to the state.
var ErrGap = errors.New("events after this seq are no longer all kept")

// ErrTooFar means more events of the feed follow the asked seq than a catch-up may
// replay (Catchup's limit): the reader resets to the state instead of loading them all.
var ErrTooFar = errors.New("too many events after this seq for a catch-up")

// State is what a tablet is shown after a reset (docs/protocol.md §5 step 4): the feed's
// newest state or clear event and the item events after it, at most ReplayLimit of them
// (the newest). Seq is the newest seq of the feed, 0 when it has no events.
type State struct {
	Seq    uint64  `json:"seq"`
	Events []Event `json:"events"`
}

// Retention is how the FEEDS stream drops a feed's events: it keeps the newest perKind
// of each kind, and none older than maxAge (0: no age limit). A bridge hub that keeps
// recent events in memory mirrors it, so that it never replays what the log no longer
// promises (docs/protocol.md §5 step 4: a since with evicted events after it gets a reset).
func (b *Broker) Retention() (perKind int, maxAge time.Duration) {
	return int(b.cfg.FeedMaxMsgs), b.cfg.FeedMaxAge
}

// LastSeq is the seq of the feed's newest event, 0 when it has none.
func (b *Broker) LastSeq(ctx context.Context, feed string) (uint64, error) {
	ctx, cancel := b.opCtx(ctx)
	defer cancel()
	m, err := b.feeds.GetLastMsgForSubject(ctx, FeedSubjects(feed))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, b.unavailable("last seq", err)
	}
	return m.Sequence, nil
}

// State reads the feed's current state from the log.
func (b *Broker) State(ctx context.Context, feed string) (State, error) {
	last, err := b.LastSeq(ctx, feed)
	if err != nil || last == 0 {
		return State{Seq: last, Events: []Event{}}, err
	}
	// The newest state or clear event: the later of the two subjects' last messages.
	var base *jetstream.RawStreamMsg
	for _, kind := range []string{KindState, KindClear} {
		m, err := b.lastFor(ctx, Subject(feed, kind))
		if err != nil {
			return State{}, err
		}
		if m != nil && (base == nil || m.Sequence > base.Sequence) {
			base = m
		}
	}
	if base != nil && base.Sequence > last {
		// A state or clear event came after last was read: the state is as of it, so
		// that Seq is never older than an event it holds (a hub following from Seq
		// would send that event again, and a reset would say synced before it).
		last = base.Sequence
	}
	events := make([]Event, 0, 1+min(b.cfg.ReplayLimit, 16))
	from := uint64(1)
	if base != nil {
		if ev, ok := b.decode(base.Subject, base.Header.Get("Nats-Msg-Id"), base.Data, base.Sequence, base.Time); ok {
			events = append(events, ev)
		}
		from = base.Sequence + 1
	}
	if from <= last {
		items, err := b.lastItems(ctx, feed, from, last, b.cfg.ReplayLimit)
		if err != nil {
			return State{}, err
		}
		events = append(events, items...)
	}
	return State{Seq: last, Events: events}, nil
}

// History returns every event of the feed after since, in order, up to the feed's
// newest event at the time of the call: Catchup with the most events the stream can keep
// for one feed (three kinds of FeedMaxMsgs each), for tools and tests that want them
// all. The bridge uses Catchup with its own, smaller bound.
func (b *Broker) History(ctx context.Context, feed string, since uint64) ([]Event, error) {
	return b.Catchup(ctx, feed, since, 3*int(b.cfg.FeedMaxMsgs))
}

// Catchup returns the events of the feed after since, in order, up to the feed's newest
// event at the time of the call, when there are at most limit of them. It reads at most
// limit+1 events, so a far-behind tablet costs bounded memory: past that it returns
// ErrTooFar (the tablet gets a reset and the state instead). It returns ErrGap when it
// cannot promise that nothing after since was dropped by retention; JetStream silently
// starts later when asked for an evicted seq, so this checks the limits itself.
func (b *Broker) Catchup(ctx context.Context, feed string, since uint64, limit int) ([]Event, error) {
	last, err := b.LastSeq(ctx, feed)
	if err != nil {
		return nil, err
	}
	if since > last {
		// Nothing of this feed is newer; but a seq beyond the whole stream is from
		// another life of the log.
		info, err := b.streamState(ctx, "")
		if err != nil {
			return nil, err
		}
		if since > info.LastSeq {
			return nil, ErrGap
		}
		return []Event{}, nil
	}
	if err := b.checkRetained(ctx, feed, since); err != nil {
		return nil, err
	}
	if since == last {
		return []Event{}, nil
	}
	limit = max(limit, 0)
	events := make([]Event, 0, min(limit+1, 64))
	// Fetched in batches no larger than the limit: a far-behind tablet holds at most
	// limit+1 events and one batch.
	err = b.scanUpTo(ctx, StreamFeeds, FeedSubjects(feed), since+1, last, limit+1, true, func(msg jetstream.Msg, md *jetstream.MsgMetadata) bool {
		if ev, ok := b.decode(msg.Subject(), msg.Headers().Get("Nats-Msg-Id"), msg.Data(), md.Sequence.Stream, md.Timestamp); ok {
			events = append(events, ev)
		}
		return len(events) <= limit
	})
	if err != nil {
		return nil, err
	}
	if len(events) > limit {
		return nil, ErrTooFar
	}
	return events, nil
}

// Window reads the feed's events among the newest n seqs of the stream up to upTo
// (one bounded read: at most n events), for a hub that starts and wants recent events
// in memory so that reconnects are served from there. base is the promise that comes
// with them: every event of the feed with base < seq <= upTo is in events (retention
// is accounted for, as in Catchup).
func (b *Broker) Window(ctx context.Context, feed string, upTo uint64, n int) (events []Event, base uint64, err error) {
	if upTo == 0 || n <= 0 {
		return []Event{}, upTo, nil
	}
	from := uint64(1)
	if upTo > uint64(n) {
		from = upTo - uint64(n) + 1
	}
	kept, err := b.retainedAfter(ctx, feed)
	if err != nil {
		return nil, 0, err
	}
	base = max(from-1, kept)
	events = make([]Event, 0, min(n, 64))
	if base >= upTo {
		return events, upTo, nil
	}
	err = b.scanUpTo(ctx, StreamFeeds, FeedSubjects(feed), base+1, upTo, n, true, func(msg jetstream.Msg, md *jetstream.MsgMetadata) bool {
		if ev, ok := b.decode(msg.Subject(), msg.Headers().Get("Nats-Msg-Id"), msg.Data(), md.Sequence.Stream, md.Timestamp); ok {
			events = append(events, ev)
		}
		return true
	})
	if err != nil {
		return nil, 0, err
	}
	return events, base, nil
}

// checkRetained returns ErrGap unless every event of feed after since is still kept.
func (b *Broker) checkRetained(ctx context.Context, feed string, since uint64) error {
	kept, err := b.retainedAfter(ctx, feed)
	if err != nil {
		return err
	}
	if since < kept {
		return ErrGap
	}
	return nil
}

// retainedAfter is the least seq s such that every event of feed after s is still kept.
// Events leave the stream in two ways: the age limit drops a prefix of the whole stream
// (caught by the stream's first seq), and the per-subject limit drops the oldest of one
// feed-and-kind subject (caught when a subject is at its limit: its oldest kept message
// is the first after what is gone).
func (b *Broker) retainedAfter(ctx context.Context, feed string) (uint64, error) {
	st, err := b.streamState(ctx, FeedSubjects(feed))
	if err != nil {
		return 0, err
	}
	var kept uint64
	if st.FirstSeq > 1 && st.Msgs > 0 && b.cfg.FeedMaxAge > 0 {
		kept = st.FirstSeq - 1
	}
	for subject, n := range st.Subjects {
		if int64(n) < b.cfg.FeedMaxMsgs {
			continue
		}
		first, err := b.firstFor(ctx, subject)
		if err != nil {
			return 0, err
		}
		if first > 1 {
			kept = max(kept, first-1)
		}
	}
	return kept, nil
}

func (b *Broker) streamState(ctx context.Context, filter string) (jetstream.StreamState, error) {
	ctx, cancel := b.opCtx(ctx)
	defer cancel()
	var opts []jetstream.StreamInfoOpt
	if filter != "" {
		opts = append(opts, jetstream.WithSubjectFilter(filter))
	}
	info, err := b.feeds.Info(ctx, opts...)
	if err != nil {
		return jetstream.StreamState{}, b.unavailable("stream info", err)
	}
	b.noteEpoch(info.Created)
	return info.State, nil
}

func (b *Broker) lastFor(ctx context.Context, subject string) (*jetstream.RawStreamMsg, error) {
	ctx, cancel := b.opCtx(ctx)
	defer cancel()
	m, err := b.feeds.GetLastMsgForSubject(ctx, subject)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, b.unavailable("last message", err)
	}
	return m, nil
}

// firstFor is the seq of the oldest kept message on subject (0 when none).
func (b *Broker) firstFor(ctx context.Context, subject string) (uint64, error) {
	ctx, cancel := b.opCtx(ctx)
	defer cancel()
	m, err := b.feeds.GetMsg(ctx, 1, jetstream.WithGetMsgSubject(subject))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, b.unavailable("first message", err)
	}
	return m.Sequence, nil
}

// lastItems returns the newest n item events of feed with from <= seq <= to, holding
// no more than n of them at any time (a ring), however many there are.
func (b *Broker) lastItems(ctx context.Context, feed string, from, to uint64, n int) ([]Event, error) {
	ring := make([]Event, 0, min(n, 64))
	next := 0 // where the next event goes once the ring is full
	// `to` is an item: State scans only when the feed's newest event is newer than its
	// newest state or clear event, so the scan must reach it (see scanUpTo).
	err := b.scanUpTo(ctx, StreamFeeds, Subject(feed, KindItem), from, to, max(n, 16), true, func(msg jetstream.Msg, md *jetstream.MsgMetadata) bool {
		ev, ok := b.decode(msg.Subject(), msg.Headers().Get("Nats-Msg-Id"), msg.Data(), md.Sequence.Stream, md.Timestamp)
		switch {
		case !ok || n <= 0:
		case len(ring) < n:
			ring = append(ring, ev)
		default:
			ring[next] = ev
			next = (next + 1) % n
		}
		return true
	})
	if err != nil {
		return nil, err
	}
	return append(ring[next:], ring[:next]...), nil
}

// scan calls fn for each message of stream on filter with from <= seq <= to, in order,
// through one short-lived ordered consumer (one consumer per call, not per message).
func (b *Broker) scan(ctx context.Context, stream, filter string, from, to uint64, fn func(jetstream.Msg, *jetstream.MsgMetadata)) error {
	return b.scanUpTo(ctx, stream, filter, from, to, 0, false, func(m jetstream.Msg, md *jetstream.MsgMetadata) bool {
		fn(m, md)
		return true
	})
}

// scanUpTo is scan that fetches at most batch messages at a time (0: 512) and stops
// when fn returns false, so a bounded read holds no more than it needs. toMatches says
// that the message at `to` matches filter, so the scan is whole only once it reaches
// it (a feed's newest seq, for catch-ups and windows).
func (b *Broker) scanUpTo(ctx context.Context, stream, filter string, from, to uint64, batch int, toMatches bool, fn func(jetstream.Msg, *jetstream.MsgMetadata) bool) error {
	ctx, cancel := context.WithTimeout(ctx, 4*b.cfg.OpTimeout)
	defer cancel()
	cons, err := b.js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{
		FilterSubjects:    []string{filter},
		DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:       from,
		InactiveThreshold: 10 * time.Second,
	})
	if err != nil {
		return b.unavailable("ordered consumer", err)
	}
	// Deleted when done rather than left to expire: a reconnect storm reads the log
	// for hundreds of tablets within the threshold, and the server caps consumers.
	defer b.dropConsumer(stream, cons)
	if batch <= 0 || batch > 512 {
		batch = 512
	}
	for empty := 0; ; {
		// Every message up to `to` is stored already, so a fetch does not wait for new
		// ones. When `to` itself matches the filter (toMatches), only reaching it ends
		// the scan: a fetch that comes back empty before it is a short read on a busy
		// server (the client cannot tell "no messages" from a request that timed out),
		// so it is tried again, and a scan that still gets nothing fails rather than
		// return part of the range as all of it. That once gave tablets a catch-up with
		// a gap: event 828 right after since=20.
		msgs, err := cons.FetchNoWait(batch)
		if err != nil {
			return b.unavailable("fetch", err)
		}
		got, done := 0, false
		for msg := range msgs.Messages() {
			got++
			if done {
				continue // drain the batch, so its goroutine ends now
			}
			md, err := msg.Metadata()
			if err != nil {
				continue
			}
			if md.Sequence.Stream > to {
				done = true
				continue
			}
			more := fn(msg, md)
			// NumPending is what the consumer's own replica holds: one that is still
			// catching up after a restart says 0 before it has stored `to`. When `to`
			// matches, only reaching it ends the scan (issue 14 session 5: a window
			// read there ended one event short, and the hub's tablets never got it).
			done = !more || md.Sequence.Stream == to || (md.NumPending == 0 && !toMatches)
		}
		if err := msgs.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			return b.unavailable("fetch", err)
		}
		switch {
		case done:
			return nil
		case got > 0:
			empty = 0
		case !toMatches:
			return nil // nothing more matches before `to`, or nothing answered: the same to us
		default:
			if empty++; empty >= 3 {
				return b.unavailable("fetch", fmt.Errorf("no message before seq %d after %d tries", to, empty))
			}
			// A moment for a replica that is catching up, within the scan's deadline.
			select {
			case <-time.After(time.Duration(empty) * 50 * time.Millisecond):
			case <-ctx.Done():
				return b.unavailable("fetch", ctx.Err())
			}
		}
	}
}

// dropConsumer deletes a scan's consumer, best effort: one that is not deleted expires
// after its InactiveThreshold.
func (b *Broker) dropConsumer(stream string, cons jetstream.Consumer) {
	info := cons.CachedInfo()
	if info == nil {
		return
	}
	ctx, cancel := b.opCtx(context.Background())
	defer cancel()
	_ = b.js.DeleteConsumer(ctx, stream, info.Name)
}

// decode turns a stored message into an Event, dropping (and counting) messages that a
// NATS producer published in a shape tablets cannot use.
func (b *Broker) decode(subject, msgID string, data []byte, seq uint64, t time.Time) (Event, bool) {
	ev, err := DecodeStored(subject, msgID, data, seq, t, b.cfg.MaxEventBytes)
	if err != nil {
		b.metrics.rejected.WithLabelValues("stored_invalid").Inc()
		b.log.Warn("skipping invalid stored event", slog.String("subject", subject), slog.Uint64("seq", seq), slog.String("reason", fmt.Sprint(err)))
		return Event{}, false
	}
	return ev, true
}
