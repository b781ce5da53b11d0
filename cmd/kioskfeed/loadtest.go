package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/kioskfeed/kioskfeed/loadtest"
)

// loadtestCmd runs the load tool, or one of its child processes (worker, nats-server),
// which it starts as "kioskfeed loadtest worker" and "kioskfeed loadtest nats-server".
// "kioskfeed loadtest centrifugo" builds (once) and prints the pinned Centrifugo;
// "kioskfeed loadtest plot" draws result files as a PNG (loadtestplot.go).
func loadtestCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "worker":
			return loadtest.RunWorker(ctx, os.Stdin, stdout)
		case "nats-server":
			fs := flag.NewFlagSet("kioskfeed loadtest nats-server", flag.ContinueOnError)
			fs.SetOutput(stderr)
			port := fs.Int("port", 0, "client port")
			wsPort := fs.Int("ws-port", 0, "WebSocket port")
			if err := fs.Parse(args[1:]); err != nil {
				return usageError{err.Error()}
			}
			return loadtest.RunNATSServer(ctx, *port, *wsPort)
		case "nats-node":
			// One node of a cluster run's NATS cluster.
			fs := flag.NewFlagSet("kioskfeed loadtest nats-node", flag.ContinueOnError)
			fs.SetOutput(stderr)
			var o loadtest.NATSNodeOptions
			fs.StringVar(&o.Name, "name", "", "server name")
			fs.IntVar(&o.Port, "port", 0, "client port")
			fs.IntVar(&o.ClusterPort, "cluster-port", 0, "route port")
			routes := fs.String("routes", "", "every node's route URL, comma-separated")
			fs.StringVar(&o.StoreDir, "store", "", "JetStream store directory")
			if err := fs.Parse(args[1:]); err != nil {
				return usageError{err.Error()}
			}
			o.Routes = strings.Split(*routes, ",")
			return loadtest.RunNATSNode(ctx, o)
		case "centrifugo":
			// The Centrifugo the tool measures beside kioskfeed: built on first use
			// (go tool -modfile=tools/go.mod task test runs this first, so no test waits for the build).
			exe, err := loadtest.CentrifugoBinary(ctx, "", func(f string, a ...any) { fmt.Fprintf(stderr, f+"\n", a...) })
			if err != nil {
				return err
			}
			fmt.Fprintln(stdout, exe)
			return nil
		case "plot":
			return loadtestPlotCmd(args[1:], stdout, stderr) // loadtestplot.go
		}
	}
	fs := flag.NewFlagSet("kioskfeed loadtest", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: kioskfeed loadtest [flags]

Starts a kioskfeed server (embedded NATS, a fresh data directory) as a child process,
pairs N tablets through the PIN + DPoP flow, connects them from worker processes over
several 127.0.0.x source addresses, and measures the server's memory per idle tablet,
its CPU while they idle, publish→delivery latency for every tablet and event, and the
reconnect storm after a restart; then the same fan-out through nats-server's own
WebSocket listener, and through Centrifugo (configured as a user would for this job:
ES256 connection tokens, history with forced recovery, one connection per user).
Loopback only. Prints a table, or one JSON object with --json.

--scenario outage: a Wi-Fi outage. With every tablet connected, a share of them (--share,
default 0.3) go dead at once: their sockets stay open, they stop reading and answering
pings. Events flow at --rate for --outage-for, and on until the server has dropped the
dead links and 2.5 heartbeats more (at most --drop-wait from the start). It reports the
healthy tablets' heartbeat gaps, drops and fan-out latency (before and during), the
server's memory, and how long the server took to drop the dead links. The server's
heartbeat is --heartbeat (default 2s here). It fails if a healthy tablet was dropped or
missed an event, or a dead link outlived the wait.

--scenario storm: a far-behind reconnect storm. A share of the tablets (--share, default
0.8) leave, --behind events are published, and they all come back at once with their
last seq while live events flow. It reports the server's peak memory, the time until
all are synced, how each caught up (replay, or reset and state) and the healthy
tablets' latency. It fails if a catch-up broke the contract (a gap, a repeat), a
tablet never synced, or a healthy tablet was dropped or missed an event.

--instances N --nats-cluster K: a cluster run. K nats-server nodes (1, 3 or 5; R3
streams and buckets from 3) and N kioskfeed instances pointed at them, all child
processes on loopback, sharing one signing key; worker i's tablets go to instance
i mod N, as behind a load balancer, and fall over to another instance when theirs
cannot be dialled. It measures the fan-out across and per instance, each process's RSS
per tablet, the lease conflicts over the connect and fan-out (servers'
kioskfeed_lease_conflicts_total and the 4409s the tablets saw: must be 0), and with
--kill (on for N >= 2) the last instance killed with SIGKILL while events flow: the time
until all its tablets are synced on the survivors, the survivors' refusals meanwhile,
and that no tablet missed an event. The kill is skipped, and says why, when the
survivors' share would not fit the open-files limit. --tablets is at most 19000 per
instance; the nats-server and Centrifugo comparisons and the restart are not run.

kioskfeed loadtest plot [-o FILE.png] RESULT.json...: draws the results of several runs
(--json's output, or --dir's result.json) as one PNG, p99 and RSS per tablet against N
for the three peers ("kioskfeed loadtest plot -h").

`)
		fs.PrintDefaults()
	}
	var o loadtest.Options
	fs.IntVar(&o.Tablets, "tablets", 1000, "tablets (and NATS WebSocket subscribers), at most 19000 (per instance in a cluster run)")
	fs.IntVar(&o.PerWorker, "per-worker", 5000, "tablets per worker process")
	fs.IntVar(&o.Events, "events", 20, "events per fan-out")
	fs.Float64Var(&o.Rate, "rate", 2, "events per second")
	fs.IntVar(&o.Payload, "payload", 256, "bytes of data per event")
	fs.DurationVar(&o.Idle, "idle", 60_000_000_000, "how long the tablets idle while the server's CPU is measured")
	fs.DurationVar(&o.Settle, "settle", 5_000_000_000, "pause before each memory reading")
	fs.DurationVar(&o.Timeout, "timeout", 20*60_000_000_000, "bound on the whole run")
	fs.BoolVar(&o.NoRestart, "no-restart", false, "skip the restart phase")
	fs.BoolVar(&o.NoNATS, "no-nats", false, "skip the nats-server WebSocket comparison")
	fs.BoolVar(&o.NoCentrifugo, "no-centrifugo", false, "skip the Centrifugo "+loadtest.CentrifugoVersion+" comparison (built from the Go module proxy on first use; KIOSKFEED_CENTRIFUGO names a binary instead)")
	fs.BoolVar(&o.Ack, "ack", false, "tablets acknowledge events with shown (proof of display), at most once a second each, as the PWA does")
	fs.StringVar(&o.Dir, "dir", "", "keep the server's data, the logs and result.json here, a new or empty directory (default: a temp dir, removed after a clean run)")
	fs.StringVar(&o.Scenario, "scenario", loadtest.ScenarioFull, "what to run: full, outage (Wi-Fi outage) or storm (far-behind reconnect storm)")
	fs.Float64Var(&o.Share, "share", 0, "outage and storm: the share of tablets that go dead or leave and come back (default 0.3 and 0.8)")
	fs.DurationVar(&o.Heartbeat, "heartbeat", 0, "the server's heartbeat, whole seconds (default the server's 20s; 2s for outage)")
	fs.DurationVar(&o.OutageFor, "outage-for", 0, "outage: how long it lasts at least, events flowing (default 6 × heartbeat + 2s)")
	fs.DurationVar(&o.DropWait, "drop-wait", 0, "outage: the most it lasts, waiting for the server to drop the dead links (default outage-for + 30s)")
	fs.IntVar(&o.Behind, "behind", 300, "storm: events published while the tablets are away")
	fs.StringVar(&o.ServerExe, "server-exe", "", "the kioskfeed binary to run as the server (default this one), e.g. another build to compare")
	fs.IntVar(&o.Instances, "instances", 0, "a cluster run: kioskfeed instances, 1 to 8 (see above)")
	fs.IntVar(&o.NATSCluster, "nats-cluster", 0, "a cluster run: NATS nodes, 1, 3 or 5 (default 3 with --instances)")
	kill := fs.Bool("kill", true, "a cluster run of 2 or more instances: SIGKILL one under its tablets and measure the move")
	asJSON := fs.Bool("json", false, "print one JSON object instead of the table")
	quiet := fs.Bool("quiet", false, "no progress lines on stderr")
	var env multiFlag
	fs.Var(&env, "server-env", "KEY=VALUE for the server under test (repeatable), e.g. KIOSKFEED_HEARTBEAT=10s")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	o.ServerEnv = env
	o.NoKill = !*kill
	if !*quiet {
		o.Progress = stderr
	}
	res, err := loadtest.Run(ctx, o)
	if res != nil && res.FanoutP50Ms+res.ConnectS > 0 {
		switch {
		case *asJSON:
			_ = json.NewEncoder(stdout).Encode(res)
		case res.Outage != nil:
			printOutageTable(stdout, res)
		case res.Storm != nil:
			printStormTable(stdout, res)
		case res.Cluster != nil:
			res.Cluster.WriteTable(stdout, res)
		default:
			printLoadTable(stdout, res, o)
		}
		if o.Dir != "" { // beside the logs, for the record (task loadtest prints it)
			raw, _ := json.Marshal(res)
			if werr := os.WriteFile(filepath.Join(o.Dir, "result.json"), append(raw, '\n'), 0o644); werr != nil {
				err = errors.Join(err, werr)
			}
		}
	}
	return err
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func printLoadTable(w io.Writer, r *loadtest.Result, o loadtest.Options) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "%d tablets, %d events at %g/s, %d-byte payload, %d worker processes\n\n", r.Tablets, r.Events, r.Rate, r.PayloadBytes, r.Workers)
	c := r.Centrifugo
	if c == nil {
		c = &loadtest.PeerResult{Server: "centrifugo (skipped)"}
	}
	fmt.Fprintf(tw, "\tkioskfeed\tnats-server ws\t%s\n", c.Server)
	fmt.Fprintf(tw, "RSS per idle tablet (after the idle)\t%.0f B\t%.0f B\t%.0f B\n", r.RSSBytesPerTablet, r.NATSWSRSSBytesPerSub, c.RSSBytesPerSub)
	fmt.Fprintf(tw, "fan-out p50 / p90\t%.1f / %.1f ms\t%.1f / %.1f ms\t%.1f / %.1f ms\n", r.FanoutP50Ms, r.FanoutP90Ms, r.NATSWSFanoutP50Ms, r.NATSWSFanoutP90Ms, c.FanoutP50Ms, c.FanoutP90Ms)
	fmt.Fprintf(tw, "fan-out p99 / max\t%.1f / %.1f ms\t%.1f / %.1f ms\t%.1f / %.1f ms\n", r.FanoutP99Ms, r.FanoutMaxMs, r.NATSWSFanoutP99Ms, r.NATSWSFanoutMaxMs, c.FanoutP99Ms, c.FanoutMaxMs)
	fmt.Fprintf(tw, "delivered (missing, repeated)\t%d (%d, %d)\t%d (%d, %d)\t%d (%d, %d)\n", r.Deliveries, r.Missing, r.Duplicates, r.NATSDeliveries, r.NATSMissing, r.NATSDuplicates, c.Deliveries, c.Missing, c.Duplicates)
	fmt.Fprintf(tw, "server CPU per delivery, publish window\t%.1f µs\t%.1f µs\t%.1f µs\n", r.FanoutServerCPUUsPerDelivery, r.NATSWSServerCPUUsPerDelivery, c.FanoutServerCPUUsDel)
	fmt.Fprintf(tw, "connects per second (server CPU each)\t%.0f (%.0f µs)\t\t%.0f (%.0f µs)\n", r.ConnectHandshakesPerS, r.ConnectServerCPUUsPerHandshake, c.ConnectsPerS, c.ConnectServerCPUUs)
	fmt.Fprintf(tw, "  load generator's CPU per connect\t%.0f µs\t\t%.0f µs\n", r.ConnectWorkerCPUUsPerHandshake, c.ConnectWorkerCPUUs)
	fmt.Fprintf(tw, "pair all\t%.1f s\t\n", r.PairS)
	fmt.Fprintf(tw, "connect all (256 at a time per worker)\t%.1f s (%.0f handshakes/s)\t\n", r.ConnectS, r.ConnectHandshakesPerS)
	if !o.NoRestart {
		fmt.Fprintf(tw, "back and synced after restart\t%.2f s (%.0f handshakes/s)\t\n", r.ReconnectAllS, r.HandshakesPerS)
		if rs := r.Restart; rs != nil {
			fmt.Fprintf(tw, "  restart: drain, start (ready at)\t%.2f s, %.2f s (%.2f s)\t\n", rs.DrainS, rs.StartS, rs.ReadyS)
			fmt.Fprintf(tw, "  restart: jitter (first attempts after the 1012)\t%.2f s (%.2f–%.2f s)\t\n", rs.JitterS, rs.JitterFirstS, rs.JitterLastS)
			fmt.Fprintf(tw, "  restart: attempts that came back\t%.2f–%.2f s\t\n", rs.BackFirstS, rs.BackLastS)
			fmt.Fprintf(tw, "  restart: handshakes (first to last synced)\t%.2f s (%.2f–%.2f s)\t\n", rs.HandshakesS, rs.SyncedFirstS, r.ReconnectAllS)
		}
	}
	fmt.Fprintf(tw, "server CPU, %s idle (its last %.0f s)\t%.2f %% (%.2f %%) of a core\t\n", o.Idle, r.IdleTailS, r.IdleLeaseCPUPct, r.IdleTailCPUPct)
	fmt.Fprintf(tw, "server CPU, publish window (%.1f s)\t%.1f %% of a core, %.1f µs per delivery\t\n", r.FanoutWindowS, r.FanoutServerCPUPct, r.FanoutServerCPUUsPerDelivery)
	fmt.Fprintf(tw, "JetStream writes, publish window\t%.1f /s (shown records %.1f /s)\t\n", r.FanoutJSWritesPerS, r.FanoutJSShownWritesPerS)
	fmt.Fprintf(tw, "server RSS empty / paired\t%.1f / %.1f MiB\t\n", mib(r.ServerRSSEmptyBytes), mib(r.ServerRSSPairedBytes))
	fmt.Fprintf(tw, "server RSS with tablets: after connect / after idle\t%.1f / %.1f MiB\t\n", mib(r.ServerRSSAfterConnectBytes), mib(r.ServerRSSTabletsBytes))
	fmt.Fprintf(tw, "server goroutines paired / tablets\t%.0f / %.0f\t\n", r.GoroutinesPaired, r.GoroutinesTablets)
	_ = tw.Flush()
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

func printOutageTable(w io.Writer, r *loadtest.Result) {
	o := r.Outage
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "Wi-Fi outage: %d tablets, %d dead at once for %.1f s, heartbeat %.0f s, %d events at %g/s, workers: %d\n\n", o.Tablets, o.Dead, o.OutageS, o.HeartbeatS, o.Events, r.Rate, r.Workers)
	fmt.Fprintf(tw, "healthy tablets (%d)\tbefore\tduring the outage\n", o.Healthy)
	fmt.Fprintf(tw, "heartbeat gap p99 / max\t%.0f / %.0f ms\t%.0f / %.0f ms\n", o.HeartbeatGapBeforeP99Ms, o.HeartbeatGapBeforeMaxMs, o.HeartbeatGapP99Ms, o.HeartbeatGapMaxMs)
	fmt.Fprintf(tw, "fan-out p50 / p99 / max\t%.1f / %.1f / %.1f ms\t%.1f / %.1f / %.1f ms\n", o.FanoutBeforeP50Ms, o.FanoutBeforeP99Ms, o.FanoutBeforeMaxMs, o.FanoutP50Ms, o.FanoutP99Ms, o.FanoutMaxMs)
	fmt.Fprintf(tw, "dropped; events missed, repeated\t\t%d; %d, %d %v\n", o.HealthyDropped, o.HealthyMissing, o.HealthyDuplicates, o.HealthyCloses)
	dropped := "not within the wait"
	if o.DeadDroppedS >= 0 {
		dropped = fmt.Sprintf("%.1f s", o.DeadDroppedS)
	}
	fmt.Fprintf(tw, "dead links dropped by the server\t\t%d of %d, all after %s\n", o.DeadDropped, o.Dead, dropped)
	fmt.Fprintf(tw, "server RSS before / peak\t\t%.1f / %.1f MiB\n", mib(o.ServerRSSBeforeBytes), mib(o.ServerRSSPeakBytes))
	fmt.Fprintf(tw, "server CPU during the outage\t\t%.0f %% of a core\n", o.ServerCPUPct)
	_ = tw.Flush()
}

func printStormTable(w io.Writer, r *loadtest.Result) {
	s := r.Storm
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "Far-behind reconnect storm: %d tablets come back at once %d events behind, %d stay connected; %d live events at %g/s, workers: %d\n\n", s.Returning, s.Behind, s.Healthy, s.Events, r.Rate, r.Workers)
	fmt.Fprintf(tw, "all synced after\t%.2f s (%d not)\n", s.SyncedAllS, s.Unsynced)
	fmt.Fprintf(tw, "their sockets: replays / resets / violations\t%d: %d / %d / %d %v\n", s.Sockets, s.Replays, s.Resets, s.Violations, s.ReturningCloses)
	fmt.Fprintf(tw, "server: catch-ups by source, 1013s\t%v, %.0f\n", s.ServerReplays, s.ServerQueueDrops)
	fmt.Fprintf(tw, "server RSS before / peak (sampled) / HWM\t%.1f / %.1f / %.1f MiB\n", mib(s.ServerRSSBeforeBytes), mib(s.ServerRSSPeakBytes), mib(s.ServerHWMBytes))
	fmt.Fprintf(tw, "healthy fan-out p50 / p99 / max, before\t%.1f / %.1f / %.1f ms\n", s.FanoutBeforeP50Ms, s.FanoutBeforeP99Ms, s.FanoutBeforeMaxMs)
	fmt.Fprintf(tw, "healthy fan-out p50 / p99 / max, during\t%.1f / %.1f / %.1f ms\n", s.FanoutP50Ms, s.FanoutP99Ms, s.FanoutMaxMs)
	fmt.Fprintf(tw, "healthy dropped; events missed, repeated\t%d; %d, %d %v\n", s.HealthyDropped, s.HealthyMissing, s.HealthyDuplicates, s.HealthyCloses)
	_ = tw.Flush()
}
