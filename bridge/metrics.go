package bridge

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	conns          prometheus.Gauge
	handshakes     *prometheus.CounterVec
	closes         *prometheus.CounterVec
	leaseConflicts prometheus.Counter
	queueDrops     prometheus.Counter
	replays        *prometheus.CounterVec
	fanout         prometheus.Histogram
	shownLatency   prometheus.Histogram
	devicesBehind  prometheus.GaugeFunc
}

// newMetrics makes the bridge's series; behind counts the devices behind or stale,
// asked at each scrape (nil: none), so that an idle fleet pays nothing for the gauge
// between scrapes.
func newMetrics(reg prometheus.Registerer, behind func() int) *metrics {
	if behind == nil {
		behind = func() int { return 0 }
	}
	m := &metrics{
		conns: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kioskfeed_ws_connections", Help: "Open tablet sockets on this instance.",
		}),
		handshakes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kioskfeed_ws_handshakes_total", Help: "Tablet handshakes by outcome.",
		}, []string{"outcome"}),
		closes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kioskfeed_ws_closes_total", Help: "Sockets closed by the server, by close code.",
		}, []string{"code"}),
		leaseConflicts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kioskfeed_lease_conflicts_total", Help: "Connections refused because another live connection held the device's lease.",
		}),
		queueDrops: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kioskfeed_ws_queue_drops_total", Help: "Tablets closed (1013) because their send queue filled.",
		}),
		replays: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kioskfeed_replays_total", Help: "Catch-ups after a connect, by where they were served from.",
		}, []string{"source"}),
		fanout: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "kioskfeed_fanout_seconds",
			Help:    "From an event's storage in JetStream to its frame being queued for every tablet of its feed on this instance.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1},
		}),
		shownLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "kioskfeed_shown_latency_seconds",
			Help:    "From an event's storage in JetStream to a tablet's first shown of it, on the instance that holds the tablet's socket.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}),
		devicesBehind: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "kioskfeed_devices_behind", Help: "Devices with a socket on this instance whose state is behind or stale.",
		}, func() float64 { return float64(behind()) }),
	}
	if reg != nil {
		reg.MustRegister(m.conns, m.handshakes, m.closes, m.leaseConflicts, m.queueDrops, m.replays, m.fanout, m.shownLatency, m.devicesBehind)
	}
	return m
}
