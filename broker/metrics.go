package broker

import (
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	published  prometheus.Counter
	duplicates prometheus.Counter
	rejected   *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		published: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kioskfeed_events_published_total",
			Help: "Events stored through this instance (HTTP API and demo feed; NATS producers publish to JetStream directly).",
		}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kioskfeed_events_duplicate_total",
			Help: "Events refused as repeats of an id within the dedup window.",
		}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kioskfeed_events_rejected_total",
			Help: "Events refused, by reason.",
		}, []string{"reason"}),
	}
	if reg != nil {
		reg.MustRegister(m.published, m.duplicates, m.rejected)
	}
	return m
}
