package broker

// This file owns kioskfeed_jetstream_last_seq{stream}: each JetStream stream's last
// sequence, read at each scrape of /metrics. Its deltas are the messages stored, so a
// load run (or an operator) can tell what the server writes to JetStream per second and
// to which stream: events, KV buckets (leases, shown records, alert state), audit.

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// maxStreamSeries bounds the series one scrape reports: the streams are the server's
// own (a dozen), but a shared NATS account may hold others'.
const maxStreamSeries = 256

var lastSeqDesc = prometheus.NewDesc("kioskfeed_jetstream_last_seq",
	"Each JetStream stream's last sequence (its deltas are the messages stored), read at each scrape.",
	[]string{"stream"}, nil)

// streamCollector reads the streams' states through the broker's JetStream context at
// each scrape: one stream-list request, bounded by a second; none on failure.
type streamCollector struct{ b *Broker }

func (c streamCollector) Describe(ch chan<- *prometheus.Desc) { ch <- lastSeqDesc }

func (c streamCollector) Collect(ch chan<- prometheus.Metric) {
	if c.b.js == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l := c.b.js.ListStreams(ctx)
	n := 0
	for info := range l.Info() { // read to the end, so the lister's goroutine ends
		if n++; n <= maxStreamSeries {
			ch <- prometheus.MustNewConstMetric(lastSeqDesc, prometheus.GaugeValue, float64(info.State.LastSeq), info.Config.Name)
		}
	}
}

// registerStreamMetrics adds the collector to reg (nothing when reg is nil).
func (b *Broker) registerStreamMetrics(reg prometheus.Registerer) {
	if reg != nil {
		reg.MustRegister(streamCollector{b: b})
	}
}
