package broker_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/kioskfeed/kioskfeed/broker"
	"github.com/kioskfeed/kioskfeed/broker/brokertest"
)

// TestCatchupLeavesNoConsumer: each catch-up reads the log through a short-lived
// consumer, which is deleted when the read is done. Left to expire (10 s), a reconnect
// storm's reads piled up until nats-server refused new consumers (10026, "maximum
// consumers limit reached"), and a tablet got 1011 (BENCHMARKS.md, far-behind storm).
func TestCatchupLeavesNoConsumer(t *testing.T) {
	ctx := context.Background()
	b := brokertest.New(t)
	first := publish(t, b, "lobby", "state", "", `{"title":"t"}`)
	for i := range 20 {
		publish(t, b, "lobby", "item", "", fmt.Sprintf(`{"n":%d}`, i))
	}
	st, err := b.JetStream().Stream(ctx, broker.StreamFeeds)
	if err != nil {
		t.Fatal(err)
	}
	consumers := func() int {
		info, err := st.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return info.State.Consumers
	}
	before := consumers()
	for range 10 {
		events, err := b.Catchup(ctx, "lobby", first.Seq, 100)
		if err != nil || len(events) != 20 {
			t.Fatalf("Catchup: %d events, %v; want 20", len(events), err)
		}
	}
	if n := consumers(); n != before {
		t.Fatalf("FEEDS has %d consumers after 10 catch-ups, had %d before: each read must delete its own", n, before)
	}
}
