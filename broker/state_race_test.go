package broker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/kioskfeed/kioskfeed/broker"
	"github.com/kioskfeed/kioskfeed/broker/brokertest"
)

// TestStateNeverHoldsAnEventPastItsSeq: State read while state events are published
// must be a snapshot: no event in it newer than its Seq. It read the feed's last seq,
// then its newest state event, and a publish in between gave a state [6] "as of" 5: a
// hub that started on it sent a reset with 6 and synced 5, then 6 again live (found by
// TestCatchUpPropertyGapFree on a clean-clone CI run).
func TestStateNeverHoldsAnEventPastItsSeq(t *testing.T) {
	ctx := context.Background()
	b := brokertest.New(t)
	publish(t, b, "lobby", "state", "", `{"n":0}`)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 1; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			kind := []string{"state", "item", "clear"}[i%3]
			if _, err := b.Publish(ctx, "lobby", broker.EventInput{Kind: kind, Data: json.RawMessage(fmt.Sprintf(`{"n":%d}`, i))}); err != nil {
				t.Errorf("publish %d: %v", i, err)
				return
			}
		}
	})
	defer func() { close(stop); wg.Wait() }()
	reads := 0
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end) && reads < 5000; reads++ {
		st, err := b.State(ctx, "lobby")
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range st.Events {
			if ev.Seq > st.Seq {
				t.Fatalf("read %d: State holds seq %d but says it is as of %d", reads, ev.Seq, st.Seq)
			}
		}
	}
	if reads < 50 {
		t.Fatalf("only %d reads: the race was hardly tried", reads)
	}
}
