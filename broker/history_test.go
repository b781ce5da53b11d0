package broker_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/kioskfeed/kioskfeed/broker"
	"github.com/kioskfeed/kioskfeed/broker/brokertest"
)

// TestCatchupIsBounded: Catchup returns the events after since only when there are at
// most limit of them, and ErrTooFar past that, so a far-behind tablet never makes the
// server load its whole history. Every limit around the real count is tried.
func TestCatchupIsBounded(t *testing.T) {
	b := brokertest.New(t)
	var all []uint64
	for i := range 10 {
		all = append(all, publish(t, b, "lobby", "item", fmt.Sprintf("e%d", i), `{}`).Seq)
		publish(t, b, "elsewhere", "item", "", `{}`) // other feeds' seqs in between
	}
	for _, since := range []uint64{0, all[3]} {
		after := all
		if since > 0 {
			after = all[4:]
		}
		for limit := 0; limit <= len(after)+2; limit++ {
			got, err := b.Catchup(ctx, "lobby", since, limit)
			switch {
			case limit < len(after):
				if !errors.Is(err, broker.ErrTooFar) || got != nil {
					t.Fatalf("Catchup(since %d, limit %d) with %d after: %v, %v; want ErrTooFar", since, limit, len(after), seqs(got), err)
				}
			case err != nil || fmt.Sprint(seqs(got)) != fmt.Sprint(after):
				t.Fatalf("Catchup(since %d, limit %d) = %v, %v; want %v", since, limit, seqs(got), err, after)
			}
		}
	}
	// A gap is still a gap, whatever the limit: a seq beyond the log.
	if _, err := b.Catchup(ctx, "lobby", all[9]+1000, 100); !errors.Is(err, broker.ErrGap) {
		t.Fatalf("Catchup beyond the log: %v, want ErrGap", err)
	}
}

// TestCatchupAboveABatch: a limit above one fetch batch (512) still reads exactly what
// is there, across batches.
func TestCatchupAboveABatch(t *testing.T) {
	b := brokertest.New(t)
	var all []uint64
	for i := range 600 {
		all = append(all, publish(t, b, "lobby", "item", fmt.Sprintf("e%d", i), `{}`).Seq)
	}
	got, err := b.Catchup(ctx, "lobby", 0, 600)
	if err != nil || fmt.Sprint(seqs(got)) != fmt.Sprint(all) {
		t.Fatalf("Catchup(0, 600) = %d events, %v; want all 600", len(got), err)
	}
	if _, err := b.Catchup(ctx, "lobby", 0, 599); !errors.Is(err, broker.ErrTooFar) {
		t.Fatalf("Catchup(0, 599) of 600: %v, want ErrTooFar", err)
	}
}

// TestWindowIsTheFeedsRecentEvents: Window reads the feed's events among the newest n
// seqs of the stream, and its base promises every event of the feed after it: also
// when retention dropped older ones (the base then stops at what is kept).
func TestWindowIsTheFeedsRecentEvents(t *testing.T) {
	b := brokertest.New(t, func(c *broker.Config) { c.FeedMaxMsgs = 4; c.ReplayLimit = 4 })
	var lobby []uint64
	for i := range 6 {
		lobby = append(lobby, publish(t, b, "lobby", "item", fmt.Sprintf("e%d", i), `{}`).Seq)
		publish(t, b, "elsewhere", "item", "", `{}`)
	}
	last := lobby[5]
	tests := []struct {
		name     string
		n        int
		want     []uint64
		wantBase uint64
	}{
		// The newest 4 seqs up to last are lobby[4], elsewhere, lobby[5] and one before.
		{"the newest seqs", 4, lobby[4:], last - 4},
		// Retention keeps 4 lobby items: lobby[0] and lobby[1] are gone, so the base
		// stops just before lobby[2], however far back the read could go.
		{"bounded by retention", 100, lobby[2:], lobby[2] - 1},
		{"none asked", 0, nil, last},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, base, err := b.Window(ctx, "lobby", last, tc.n)
			if err != nil || fmt.Sprint(seqs(got)) != fmt.Sprint(seqs(evs(tc.want))) || base != tc.wantBase {
				t.Fatalf("Window(%d, %d) = %v base %d, %v; want %v base %d", last, tc.n, seqs(got), base, err, tc.want, tc.wantBase)
			}
			if len(got) > tc.n {
				t.Fatalf("Window read %d events, more than the %d asked", len(got), tc.n)
			}
		})
	}
}

func evs(s []uint64) []broker.Event {
	out := make([]broker.Event, len(s))
	for i, q := range s {
		out[i].Seq = q
	}
	return out
}

// TestStateKeepsTheNewestItems: a state over many items holds the newest ReplayLimit
// (the read keeps no more than that in memory, however many items follow the base).
func TestStateKeepsTheNewestItems(t *testing.T) {
	b := brokertest.New(t, func(c *broker.Config) { c.ReplayLimit = 3 })
	st := publish(t, b, "lobby", "state", "", `{"title":"t"}`).Seq
	var items []uint64
	for i := range 20 {
		items = append(items, publish(t, b, "lobby", "item", fmt.Sprintf("i%d", i), `{}`).Seq)
	}
	got, err := b.State(ctx, "lobby")
	want := append([]uint64{st}, items[17:]...)
	if err != nil || fmt.Sprint(seqs(got.Events)) != fmt.Sprint(want) || got.Seq != items[19] {
		t.Fatalf("State = %v seq %d, %v; want %v seq %d", seqs(got.Events), got.Seq, err, want, items[19])
	}
}
