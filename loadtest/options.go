package loadtest

// This file holds what sizes a run: Options, their defaults and their bounds, and the
// scenarios a run may be. Each bound says why it is there (a process's file limit, what a
// scenario needs), so a run that cannot be measured is refused before anything starts.

import (
	"fmt"
	"io"
	"os"
	"time"
)

// Options sizes one load run. Zero values take the defaults noted.
type Options struct {
	Tablets      int           // N tablets (and N NATS subscribers); default 1000
	PerWorker    int           // tablets per worker process; default 5000 (a process may hold 20,000 files here)
	Events       int           // E events in each fan-out; default 20
	Rate         float64       // events per second in each fan-out; default 2
	Payload      int           // approximate size of an event's data in bytes; default 256
	Idle         time.Duration // how long the tablets sit idle while the server's CPU is measured; default 60s
	Settle       time.Duration // pause before a memory reading; default 5s
	NoRestart    bool          // skip the restart (reconnect storm) phase
	NoNATS       bool          // skip the nats-server WebSocket comparison
	NoCentrifugo bool          // skip the Centrifugo comparison (centrifugo.go: built on first use)
	Ack          bool          // tablets acknowledge events with shown, at most once a second each, as the PWA does (docs/protocol.md §5 step 8)
	Timeout      time.Duration // bound on the whole run; default 20m
	Exe          string        // the kioskfeed binary; default this process's
	Dir          string        // scratch directory (server data, logs); default a new temp dir, removed after a clean run
	ServerEnv    []string      // extra KIOSKFEED_* settings for the server under test
	Progress     io.Writer     // progress lines; default io.Discard

	// Scenario is what the run does: ScenarioFull (default) the whole run above;
	// ScenarioOutage a Wi-Fi outage; ScenarioStorm a far-behind reconnect storm (see
	// scenario.go).
	Scenario string
	// Share is the share of the tablets a scenario acts on, above 0 and below 1: those
	// that go dead in an outage (default 0.3), or leave and come back in a storm
	// (default 0.8). The others are the healthy tablets it measures.
	Share float64
	// Heartbeat is the server's heartbeat (KIOSKFEED_HEARTBEAT), 1s to 5m; default the
	// server's own (20s), 2s in an outage.
	Heartbeat time.Duration
	// OutageFor is how long an outage lasts while events flow; default 6 × Heartbeat
	// + 2s: two and a half heartbeats (a healthy tablet's patience) after the server's
	// drop time of up to three heartbeats and a second.
	OutageFor time.Duration
	// DropWait bounds an outage: it lasts OutageFor, and on until the server has
	// dropped every dead link and two and a half heartbeats more, but no longer than
	// DropWait from its start; default OutageFor + 30s.
	DropWait time.Duration
	// Behind is how many events a storm publishes while its tablets are away, 1 to
	// 100000; default 300.
	Behind int
	// ServerExe is the kioskfeed binary run as the server; default Exe. The workers are
	// always Exe: so one build of the tool can measure another build's server.
	ServerExe string

	// A cluster run (cluster.go) instead of the full run: Instances kioskfeed instances
	// (1 to 8) on a real NATS cluster of NATSCluster nodes (1, 3 or 5; R3 streams and
	// buckets from 3 nodes), the tablets spread over the instances. It is a cluster run
	// when NATSCluster > 0 or Instances > 1; then Instances defaults to 1 and
	// NATSCluster to 3. NoKill skips its kill phase (one instance SIGKILLed under its
	// tablets), which needs at least 2 instances.
	Instances   int
	NATSCluster int
	NoKill      bool
}

// The scenarios of Options.Scenario.
const (
	ScenarioFull   = "full"
	ScenarioOutage = "outage"
	ScenarioStorm  = "storm"
)

func (o *Options) defaults() error {
	if o.Tablets == 0 {
		o.Tablets = 1000
	}
	if o.PerWorker == 0 {
		o.PerWorker = 5000
	}
	if o.Events == 0 {
		o.Events = 20
	}
	if o.Rate == 0 {
		o.Rate = 2
	}
	if o.Payload == 0 {
		o.Payload = 256
	}
	if o.Idle == 0 {
		o.Idle = time.Minute
	}
	if o.Settle == 0 {
		o.Settle = 5 * time.Second
	}
	if o.Timeout == 0 {
		o.Timeout = 20 * time.Minute
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	if o.Scenario == "" {
		o.Scenario = ScenarioFull
	}
	if o.Share == 0 {
		o.Share = map[string]float64{ScenarioOutage: 0.3, ScenarioStorm: 0.8}[o.Scenario]
	}
	if o.Heartbeat == 0 && o.Scenario == ScenarioOutage {
		o.Heartbeat = 2 * time.Second
	}
	if o.OutageFor == 0 {
		hb := o.Heartbeat
		if hb == 0 {
			hb = 20 * time.Second
		}
		o.OutageFor = 6*hb + 2*time.Second
	}
	if o.DropWait == 0 {
		o.DropWait = o.OutageFor + 30*time.Second
	}
	if o.Behind == 0 {
		o.Behind = 300
	}
	switch {
	case o.Scenario != ScenarioFull && o.Scenario != ScenarioOutage && o.Scenario != ScenarioStorm:
		return fmt.Errorf("scenario must be %s, %s or %s, not %q", ScenarioFull, ScenarioOutage, ScenarioStorm, o.Scenario)
	case o.Scenario != ScenarioFull && (o.Share <= 0 || o.Share >= 1):
		return fmt.Errorf("share must be above 0 and below 1, not %g", o.Share)
	case o.Heartbeat != 0 && (o.Heartbeat < time.Second || o.Heartbeat > 5*time.Minute || o.Heartbeat%time.Second != 0):
		return fmt.Errorf("heartbeat must be whole seconds from 1s to 5m, not %s", o.Heartbeat)
	case o.OutageFor < 0 || o.DropWait < 0:
		return fmt.Errorf("outage and drop wait must not be negative, not %s and %s", o.OutageFor, o.DropWait)
	case o.Behind < 1 || o.Behind > 100000:
		return fmt.Errorf("behind must be 1 to 100000, not %d", o.Behind)
	}
	if err := o.clusterDefaults(); err != nil {
		return err
	}
	switch {
	case o.Tablets < 1 || o.Tablets > maxInstanceTablets*max(o.Instances, 1):
		// One server process may hold 20,000 files on these machines (NOTES); the
		// server needs some for NATS, JetStream and its listener. A cluster run's
		// bound is per instance (clusterDefaults).
		return fmt.Errorf("tablets must be 1 to %d%s, not %d", maxInstanceTablets*max(o.Instances, 1), o.perInstanceNote(), o.Tablets)
	case o.PerWorker < 1 || o.PerWorker > 15000:
		return fmt.Errorf("per-worker must be 1 to 15000, not %d", o.PerWorker)
	case o.Events < 1 || o.Events > 10000:
		return fmt.Errorf("events must be 1 to 10000, not %d", o.Events)
	case o.Rate <= 0 || o.Rate > 10000:
		return fmt.Errorf("rate must be above 0 and at most 10000 per second, not %g", o.Rate)
	case o.Payload < 32 || o.Payload > 60000:
		return fmt.Errorf("payload must be 32 to 60000 bytes, not %d", o.Payload)
	case o.Idle < 0:
		return fmt.Errorf("idle must not be negative, not %s", o.Idle)
	case o.Settle < 0:
		return fmt.Errorf("settle must not be negative, not %s", o.Settle)
	case o.Timeout < 0:
		return fmt.Errorf("timeout must not be negative, not %s", o.Timeout)
	}
	if o.Exe == "" {
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		o.Exe = exe
	}
	if o.ServerExe == "" {
		o.ServerExe = o.Exe
	}
	return nil
}
