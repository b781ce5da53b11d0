package loadtest

// This file holds what a run reports: Result, the figures of a whole run that the CLI
// prints as a table or JSON, and the small sums over the workers' replies behind them
// (latency percentiles, failure counts).

import (
	"slices"
)

// Result is one run's figures. Latencies are publish→delivery over every (tablet,
// event) pair; memory is the server process's resident set (VmRSS).
type Result struct {
	Tablets              int     `json:"tablets"`
	RSSBytesPerTablet    float64 `json:"rss_bytes_per_tablet"`
	FanoutP50Ms          float64 `json:"fanout_p50_ms"`
	FanoutP90Ms          float64 `json:"fanout_p90_ms"`
	FanoutP99Ms          float64 `json:"fanout_p99_ms"`
	FanoutMaxMs          float64 `json:"fanout_max_ms"`
	NATSWSFanoutP50Ms    float64 `json:"nats_ws_fanout_p50_ms"`
	NATSWSFanoutP90Ms    float64 `json:"nats_ws_fanout_p90_ms"`
	NATSWSFanoutP99Ms    float64 `json:"nats_ws_fanout_p99_ms"`
	NATSWSFanoutMaxMs    float64 `json:"nats_ws_fanout_max_ms"`
	NATSWSRSSBytesPerSub float64 `json:"nats_ws_rss_bytes_per_sub"`
	// The nats-server's CPU per delivery over its publish window.
	NATSWSServerCPUUsPerDelivery float64 `json:"nats_ws_server_cpu_us_per_delivery"`
	// The workers' CPU per delivery over the same windows: the load generator's share
	// of the two cores, which differs by protocol.
	NATSWSWorkerCPUUsPerDelivery float64 `json:"nats_ws_worker_cpu_us_per_delivery"`
	FanoutWorkerCPUUsPerDelivery float64 `json:"fanout_worker_cpu_us_per_delivery"`
	// How long one publish over the HTTP API took, until its 202 (the median, the most).
	FanoutPublishP50Ms float64 `json:"fanout_publish_p50_ms"`
	FanoutPublishMaxMs float64 `json:"fanout_publish_max_ms"`
	// Centrifugo's figures, in the same run (nil with NoCentrifugo).
	Centrifugo *PeerResult `json:"centrifugo,omitempty"`
	// The kioskfeed server's CPU over the connect storm, per handshake, and the load
	// generator's (the workers', which share the cores: what they spend also sets how
	// many connects a second the machine makes).
	ConnectServerCPUUsPerHandshake float64 `json:"connect_server_cpu_us_per_handshake"`
	ConnectWorkerCPUUsPerHandshake float64 `json:"connect_worker_cpu_us_per_handshake"`
	ReconnectAllS                  float64 `json:"reconnect_all_s"`
	HandshakesPerS                 float64 `json:"handshakes_per_s"`
	IdleLeaseCPUPct                float64 `json:"idle_lease_cpu_pct"` // the server's CPU over the idle window, % of one core

	// The restart's parts (ReconnectAllS is their whole, from the stop signal).
	Restart *RestartResult `json:"restart,omitempty"`

	// The publish window of the fan-out: from just before the first publish until every
	// tablet reported every event. The server's CPU over it (% of one core, and per
	// delivery), and what it stored in JetStream: messages per stream (deltas of
	// kioskfeed_jetstream_last_seq), all streams per second, and the shown records'
	// bucket per second (what acks cost).
	FanoutWindowS                float64            `json:"fanout_window_s"`
	FanoutServerCPUPct           float64            `json:"fanout_server_cpu_pct"`
	FanoutServerCPUUsPerDelivery float64            `json:"fanout_server_cpu_us_per_delivery"`
	FanoutJSWritesPerS           float64            `json:"fanout_js_writes_per_s"`
	FanoutJSShownWritesPerS      float64            `json:"fanout_js_shown_writes_per_s"`
	FanoutJSWrites               map[string]float64 `json:"fanout_js_writes,omitempty"`
	IdleServerCPUMs              float64            `json:"idle_server_cpu_ms"`
	// The idle's last minute (its second half when shorter): the steady state, after the
	// first-seen alert records a fresh fleet has written.
	IdleTailCPUPct float64 `json:"idle_tail_cpu_pct"`
	IdleTailS      float64 `json:"idle_tail_s"`

	// Details behind the headline figures.
	Events                     int            `json:"events"`
	Rate                       float64        `json:"rate_per_s"`
	PayloadBytes               int            `json:"payload_bytes"`
	Workers                    int            `json:"workers"`
	PairS                      float64        `json:"pair_s"`
	ConnectS                   float64        `json:"connect_s"`
	ConnectHandshakesPerS      float64        `json:"connect_handshakes_per_s"`
	ServerRSSEmptyBytes        int64          `json:"server_rss_empty_bytes"`
	ServerRSSPairedBytes       int64          `json:"server_rss_paired_bytes"`
	ServerRSSAfterConnectBytes int64          `json:"server_rss_after_connect_bytes"`
	ServerRSSTabletsBytes      int64          `json:"server_rss_tablets_bytes"`
	GoroutinesPaired           float64        `json:"goroutines_paired"`
	GoroutinesTablets          float64        `json:"goroutines_tablets"`
	HeapInuseTablets           float64        `json:"heap_inuse_tablets_bytes"`
	Deliveries                 int            `json:"deliveries"`
	Missing                    int            `json:"missing"`
	Duplicates                 int            `json:"duplicates"`
	AfterRestartMissing        int            `json:"after_restart_missing"`
	NATSDeliveries             int            `json:"nats_ws_deliveries"`
	NATSMissing                int            `json:"nats_ws_missing"`
	NATSDuplicates             int            `json:"nats_ws_duplicates"`
	RestartCloses              map[string]int `json:"restart_closes,omitempty"`

	// The scenario's figures; for them the fields above hold only the run's shape
	// (tablets, events, rate, payload, workers, pair_s, connect_s).
	Scenario string        `json:"scenario"`
	Outage   *OutageResult `json:"outage,omitempty"`
	Storm    *StormResult  `json:"storm,omitempty"`
	// A cluster run's figures (Options.Instances, NATSCluster: cluster.go); the fields
	// above then hold its shape and its fan-out and connect across the instances.
	Cluster *ClusterResult `json:"cluster,omitempty"`
}

// RestartResult breaks the restart down, in seconds. The phases overlap: the tablets
// retry while the server is down, and handshake as soon as it is up.
type RestartResult struct {
	// DrainS: SIGTERM to the old process's exit (it closes its sockets 1012 first).
	DrainS float64 `json:"drain_s"`
	// StartS: the old process's exit (the new one's exec follows at once) until the
	// new one's /readyz answers 200 (polled every 50 ms).
	StartS float64 `json:"start_s"`
	// ReadyS: the stop signal until the new server is ready (DrainS + StartS).
	ReadyS float64 `json:"ready_s"`
	// The jitter window: the first and last tablet's first connect attempt after its
	// 1012, from the stop signal, and their distance (the PWA waits a random 0–2 s).
	JitterFirstS float64 `json:"jitter_first_s"`
	JitterLastS  float64 `json:"jitter_last_s"`
	JitterS      float64 `json:"jitter_s"`
	// The attempts that brought the tablets back (the first attempt that reached the
	// new server and was welcomed): first and last, from the stop signal.
	BackFirstS float64 `json:"back_first_s"`
	BackLastS  float64 `json:"back_last_s"`
	// The handshakes: the first to the last tablet synced again, and the rate over it.
	SyncedFirstS   float64 `json:"synced_first_s"`
	HandshakesS    float64 `json:"handshakes_s"`
	HandshakesPerS float64 `json:"handshakes_per_s"`
}

// percentiles are p50, p90, p99 and max of latencies in µs, in ms.
func percentiles(lat []int32) [4]float64 {
	if len(lat) == 0 {
		return [4]float64{}
	}
	s := slices.Clone(lat)
	slices.Sort(s)
	at := func(q float64) float64 {
		i := int(q*float64(len(s))+0.999999) - 1
		return float64(s[min(max(i, 0), len(s)-1)]) / 1000
	}
	return [4]float64{at(0.50), at(0.90), at(0.99), float64(s[len(s)-1]) / 1000}
}

func sumFailed(reps []reply) (int, string) {
	n, first := 0, ""
	for _, rep := range reps {
		n += rep.Failed
		if first == "" {
			first = rep.FirstErr
		}
	}
	return n, first
}
