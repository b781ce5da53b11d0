package bridge_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/kioskfeed/kioskfeed/bridge"
	"github.com/kioskfeed/kioskfeed/broker"
)

// laggingSource answers catch-ups as a JetStream replica still catching up after a
// restart does: the log's newest events are not there yet. The events themselves come
// from the real stream; only the newest `lag` of them are held back.
type laggingSource struct {
	*broker.Broker
	lag   atomic.Int64
	calls atomic.Int64
}

func (l *laggingSource) Catchup(ctx context.Context, feed string, since uint64, limit int) ([]broker.Event, error) {
	events, err := l.Broker.Catchup(ctx, feed, since, limit)
	l.calls.Add(1)
	if n := int(l.lag.Load()); err == nil && n > 0 {
		events = events[:max(len(events)-n, 0)]
	}
	return events, err
}

// TestShortCatchUpReadResets: a catch-up read that ends before what the hub has
// already seen must not end in a synced that claims the events it lacks (seen once in
// TestFaultQuorumLost: a tablet never got the event its replay was missing). The
// tablet gets a reset and the state instead, which the hub keeps current.
func TestShortCatchUpReadResets(t *testing.T) {
	var src *laggingSource
	// A window of 2 keeps the older events out of memory, so since=e2 is read from the log.
	s := startStack(t, stackOpts{
		bridge: func(c *bridge.Config) { c.WindowSize = 2 },
		source: func(b *broker.Broker) bridge.FeedSource { src = &laggingSource{Broker: b}; return src },
	})
	tab := s.pair(t, "lobby")
	var seqs []uint64
	for i := range 5 {
		seqs = append(seqs, s.publish(t, "lobby", "item", fmt.Sprintf(`{"n":%d}`, i+1)))
	}
	// First an honest read, so the test shows that this path is the log's.
	c, _ := s.connect(t, tab, seqs[1], "")
	events, reset, synced, err := c.Collect(wait)
	if err != nil || reset || len(events) != 3 || synced.Seq() != seqs[4] || src.calls.Load() != 1 {
		t.Fatalf("honest catch-up: %d events, reset %v, synced %d, %d log reads, %v; want 3 events read from the log and synced %d",
			len(events), reset, synced.Seq(), src.calls.Load(), err, seqs[4])
	}
	_ = c.Abort()

	src.lag.Store(1)
	c, _ = reconnect(t, s, tab, seqs[1], "", wait) // once the first socket's lease is gone
	events, reset, synced, err = c.Collect(wait)
	if err != nil {
		t.Fatal(err)
	}
	if src.calls.Load() < 2 {
		t.Fatalf("the second connect did not read the log (%d reads): the test proves nothing", src.calls.Load())
	}
	if !reset || len(events) != 5 || events[len(events)-1].Seq() != seqs[4] || synced.Seq() != seqs[4] {
		var got []uint64
		for _, e := range events {
			got = append(got, e.Seq())
		}
		t.Fatalf("short catch-up: reset %v, events %v, synced %d; want a reset with the state %v and synced %d", reset, got, synced.Seq(), seqs, seqs[4])
	}
}
