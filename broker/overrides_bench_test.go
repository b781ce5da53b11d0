package broker_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/kioskfeed/kioskfeed/broker"
	"github.com/kioskfeed/kioskfeed/broker/brokertest"
)

// BenchmarkOverrideAcks measures what one override costs when every device acknowledges
// it: b.N devices' acks queued (never blocking the caller) and stored; then another
// instance counts them all. Reported: queueing per ack, and acks stored per second.
func BenchmarkOverrideAcks(b *testing.B) {
	br := brokertest.New(b)
	o1, err := broker.NewOverrides(ctx, br)
	if err != nil {
		b.Fatal(err)
	}
	defer o1.Stop()
	o2, err := broker.NewOverrides(ctx, br)
	if err != nil {
		b.Fatal(err)
	}
	defer o2.Stop()
	ov, err := o1.Raise(ctx, broker.OverrideInput{Feeds: []string{"*"}, Title: "bench"}, "")
	if err != nil {
		b.Fatal(err)
	}
	devices := make([]string, b.N)
	for i := range devices {
		devices[i] = fmt.Sprintf("dev_%020d", i)
	}
	b.ResetTimer()
	start := time.Now()
	for _, d := range devices {
		o1.Ack(ov.ID, d)
	}
	queued := time.Since(start)
	// Stored: counted from the stream's state (a Shown per poll would read them all).
	for {
		st, err := br.JetStream().Stream(ctx, "KV_"+broker.BucketOverrideAcks)
		if err != nil {
			b.Fatal(err)
		}
		if st.CachedInfo().State.Msgs >= uint64(b.N) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	b.StopTimer()
	if shown, err := o2.Shown(ctx, ov.ID); err != nil || len(shown) != b.N {
		b.Fatalf("the other instance counts %d, %v; want %d", len(shown), err, b.N)
	}
	b.ReportMetric(float64(queued.Nanoseconds())/float64(b.N), "ns-queue/ack")
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "acks-written/s")
}
