package loadtest

// This file holds what a cluster run reports (Result.Cluster): the figures across the
// instances and per instance, each NATS node's, the kill phase's, the run's verdict,
// and the table the CLI prints.

import (
	"fmt"
	"io"
	"text/tabwriter"
)

// ClusterResult is a cluster run's figures. Latencies are publish→delivery over every
// (tablet, event) pair; memory is each process's resident set (VmRSS).
type ClusterResult struct {
	Instances      int `json:"instances"`
	NATSNodes      int `json:"nats_nodes"`
	Replicas       int `json:"replicas"`         // of the streams and buckets
	Workers        int `json:"workers"`          // a multiple of the instances
	OpenFilesLimit int `json:"open_files_limit"` // the hard RLIMIT_NOFILE each process has

	ConnectS              float64 `json:"connect_s"`
	ConnectHandshakesPerS float64 `json:"connect_handshakes_per_s"`

	// The fan-out across every instance (the events published through instance 0).
	FanoutP50Ms float64 `json:"fanout_p50_ms"`
	FanoutP90Ms float64 `json:"fanout_p90_ms"`
	FanoutP99Ms float64 `json:"fanout_p99_ms"`
	FanoutMaxMs float64 `json:"fanout_max_ms"`
	Deliveries  int     `json:"deliveries"`
	Missing     int     `json:"missing"`
	Duplicates  int     `json:"duplicates"`

	// Lease conflicts over the connect and the fan-out: connections refused because
	// another live one held the device's lease, by the servers'
	// kioskfeed_lease_conflicts_total, and the 4409 closes the tablets saw. Both must be
	// 0: each tablet has one socket. The kill phase's are in Kill.
	LeaseConflicts int            `json:"lease_conflicts"`
	Closes4409     int            `json:"closes_4409"`
	TabletCloses   map[string]int `json:"tablet_closes,omitempty"` // every close the tablets saw, by code

	PerInstance []ClusterInstance `json:"per_instance"`
	NATS        []ClusterNATSNode `json:"nats"`

	// The kill phase, or why it was skipped (one instance, asked not to, or the
	// survivors could not hold the moved sockets under the open-files limit).
	Kill        *ClusterKill `json:"kill,omitempty"`
	KillSkipped string       `json:"kill_skipped,omitempty"`
}

// ClusterInstance is one instance's figures.
type ClusterInstance struct {
	Name    string `json:"name"`
	Tablets int    `json:"tablets"`
	Workers int    `json:"workers"`
	// RSS before the tablets connected (a fresh process after the pairing) and after the
	// idle, and the difference per tablet.
	RSSBeforeBytes    int64   `json:"rss_before_bytes"`
	RSSAfterBytes     int64   `json:"rss_after_bytes"`
	RSSBytesPerTablet float64 `json:"rss_bytes_per_tablet"`

	ConnectServerCPUUsPerHandshake float64 `json:"connect_server_cpu_us_per_handshake"`
	FanoutP50Ms                    float64 `json:"fanout_p50_ms"`
	FanoutP99Ms                    float64 `json:"fanout_p99_ms"`
	FanoutMaxMs                    float64 `json:"fanout_max_ms"`
	FanoutServerCPUPct             float64 `json:"fanout_server_cpu_pct"`
	FanoutServerCPUUsPerDelivery   float64 `json:"fanout_server_cpu_us_per_delivery"`
	Deliveries                     int     `json:"deliveries"`
	Missing                        int     `json:"missing"`
	Duplicates                     int     `json:"duplicates"`
	LeaseConflicts                 float64 `json:"lease_conflicts"`
}

// ClusterNATSNode is one NATS node's memory (before the tablets connected and after the
// idle: the leases live in a memory bucket on every replica) and its CPU over the
// fan-out's publish window.
type ClusterNATSNode struct {
	Name              string  `json:"name"`
	RSSBeforeBytes    int64   `json:"rss_before_bytes"`
	RSSAfterBytes     int64   `json:"rss_after_bytes"`
	RSSBytesPerTablet float64 `json:"rss_bytes_per_tablet"`
	FanoutCPUPct      float64 `json:"fanout_cpu_pct"`
}

// ClusterKill is the kill phase: one instance SIGKILLed with its tablets connected and
// events flowing.
type ClusterKill struct {
	Instance string `json:"instance"`
	Tablets  int    `json:"tablets"` // its tablets, which moved
	// From the kill until the first and the last of them synced on a survivor.
	FirstSyncedS float64 `json:"first_synced_s"`
	MovedAllS    float64 `json:"moved_all_s"`
	// The moved tablets over the time they came in (first to last synced), and the
	// survivors' CPU from the kill until the last synced (% of a core, summed).
	HandshakesPerS      float64 `json:"handshakes_per_s"`
	SurvivorCPUPct      float64 `json:"survivor_cpu_pct"`
	SurvivorConnections int     `json:"survivor_connections"` // their kioskfeed_ws_connections after the move
	Unsynced            int     `json:"unsynced"`
	FirstError          string  `json:"first_error,omitempty"`
	// Over the phase: the survivors' handshakes by outcome (kioskfeed_ws_handshakes_total:
	// "duplicate" is a refusal because the dead instance still held the lease), their
	// lease conflicts, and the moved tablets' closes by code (4409 among them). A
	// survivor refuses a moved tablet while the dead instance's liveness key lives (up
	// to lease_ttl), and the tablet retries with the PWA's backoff.
	SurvivorHandshakes map[string]int `json:"survivor_handshakes,omitempty"`
	LeaseConflicts     int            `json:"lease_conflicts"`
	Closes4409         int            `json:"closes_4409"`
	Closes             map[string]int `json:"closes,omitempty"`
	// The events published through the kill and the move, and what the moved tablets
	// and the others missed or repeated of them; the others' latency.
	Events            int     `json:"events"`
	MovedMissing      int     `json:"moved_missing"`
	MovedDuplicates   int     `json:"moved_duplicates"`
	StayedMissing     int     `json:"stayed_missing"`
	StayedDuplicates  int     `json:"stayed_duplicates"`
	StayedFanoutP50Ms float64 `json:"stayed_fanout_p50_ms"`
	StayedFanoutP99Ms float64 `json:"stayed_fanout_p99_ms"`
}

// verdict fails a run in which a tablet missed or repeated an event, or a lease
// conflicted.
func (c *ClusterResult) verdict() error {
	switch {
	case c.Missing > 0 || c.Duplicates > 0:
		return fmt.Errorf("cluster fan-out: tablets missed %d and repeated %d events", c.Missing, c.Duplicates)
	case c.LeaseConflicts > 0 || c.Closes4409 > 0:
		return fmt.Errorf("cluster: %d lease conflicts counted by the servers, %d 4409 closes seen by the tablets; want none", c.LeaseConflicts, c.Closes4409)
	case c.Kill != nil && (c.Kill.MovedMissing > 0 || c.Kill.MovedDuplicates > 0 || c.Kill.StayedMissing > 0 || c.Kill.StayedDuplicates > 0):
		k := c.Kill
		return fmt.Errorf("kill: moved tablets missed %d and repeated %d events, the others missed %d and repeated %d", k.MovedMissing, k.MovedDuplicates, k.StayedMissing, k.StayedDuplicates)
	}
	return nil
}

// WriteTable prints the cluster run's figures as the CLI's table.
func (c *ClusterResult) WriteTable(w io.Writer, r *Result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "Cluster: %d tablets over %d kioskfeed instances on a %d-node NATS cluster (R%d), %d events at %g/s, %d-byte payload, %d workers\n\n",
		r.Tablets, c.Instances, c.NATSNodes, c.Replicas, r.Events, r.Rate, r.PayloadBytes, c.Workers)
	fmt.Fprintf(tw, "all instances\t\n")
	fmt.Fprintf(tw, "fan-out p50 / p90 / p99 / max\t%.1f / %.1f / %.1f / %.1f ms\n", c.FanoutP50Ms, c.FanoutP90Ms, c.FanoutP99Ms, c.FanoutMaxMs)
	fmt.Fprintf(tw, "delivered (missing, repeated)\t%d (%d, %d)\n", c.Deliveries, c.Missing, c.Duplicates)
	fmt.Fprintf(tw, "lease conflicts, connect and fan-out (4409s seen)\t%d (%d)\n", c.LeaseConflicts, c.Closes4409)
	fmt.Fprintf(tw, "connect all (256 at a time per worker)\t%.1f s (%.0f handshakes/s)\n", c.ConnectS, c.ConnectHandshakesPerS)
	fmt.Fprintf(tw, "\ninstance\ttablets\tRSS per tablet\tRSS after\tfan-out p50 / p99\tCPU per delivery\tCPU per handshake\tlease conflicts\n")
	for _, p := range c.PerInstance {
		fmt.Fprintf(tw, "%s\t%d\t%.0f B\t%.1f MiB\t%.1f / %.1f ms\t%.1f µs\t%.0f µs\t%.0f\n", p.Name, p.Tablets, p.RSSBytesPerTablet, mebi(p.RSSAfterBytes),
			p.FanoutP50Ms, p.FanoutP99Ms, p.FanoutServerCPUUsPerDelivery, p.ConnectServerCPUUsPerHandshake, p.LeaseConflicts)
	}
	fmt.Fprintf(tw, "\nNATS node\tRSS before / after\tRSS per tablet\tCPU, publish window\n")
	for _, n := range c.NATS {
		fmt.Fprintf(tw, "%s\t%.1f / %.1f MiB\t%.0f B\t%.1f %% of a core\n", n.Name, mebi(n.RSSBeforeBytes), mebi(n.RSSAfterBytes), n.RSSBytesPerTablet, n.FanoutCPUPct)
	}
	if k := c.Kill; k != nil {
		fmt.Fprintf(tw, "\nkill (SIGKILL %s, %d tablets)\t\n", k.Instance, k.Tablets)
		fmt.Fprintf(tw, "all synced on a survivor after\t%.2f s (first after %.2f s)\n", k.MovedAllS, k.FirstSyncedS)
		fmt.Fprintf(tw, "moved tablets in per second; survivors' CPU\t%.0f /s; %.0f %% of a core\n", k.HandshakesPerS, k.SurvivorCPUPct)
		fmt.Fprintf(tw, "survivors' handshakes; lease conflicts (4409s seen)\t%v; %d (%d)\n", k.SurvivorHandshakes, k.LeaseConflicts, k.Closes4409)
		fmt.Fprintf(tw, "sockets on the survivors after\t%d\n", k.SurvivorConnections)
		fmt.Fprintf(tw, "events across the move: moved missed, repeated\t%d: %d, %d\n", k.Events, k.MovedMissing, k.MovedDuplicates)
		fmt.Fprintf(tw, "the others: missed, repeated; p50 / p99\t%d, %d; %.1f / %.1f ms\n", k.StayedMissing, k.StayedDuplicates, k.StayedFanoutP50Ms, k.StayedFanoutP99Ms)
	} else {
		fmt.Fprintf(tw, "\nkill skipped\t%s\n", c.KillSkipped)
	}
	_ = tw.Flush()
}
