package loadtest

// This file holds a cluster run (Options.Instances, Options.NATSCluster): several
// kioskfeed instances as child processes on a real NATS cluster of child processes
// (clusternats.go), all on loopback, the tablets spread over the instances as a load
// balancer would (worker i's tablets on instance i mod n), then the connect, the idle
// reading, the fan-out across every instance, and one instance killed under its tablets
// (clusterkill.go). Its figures are ClusterResult (clusterresult.go).

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"time"
)

const (
	// maxInstanceTablets is the most tablets one server process takes (a process may
	// hold 20,000 files here: NOTES), in a cluster run per instance.
	maxInstanceTablets = 19000
	// fileMargin is what a process needs besides its sockets: NATS, JetStream, its
	// listeners, logs. It is the margin under the open-files limit.
	fileMargin = 1000
	// maxInstances bounds a cluster run's instances.
	maxInstances = 8
)

// isCluster says whether the options ask for a cluster run.
func (o *Options) isCluster() bool { return o.NATSCluster > 0 || o.Instances > 1 }

// perInstanceNote is what the tablets bound says in a cluster run.
func (o *Options) perInstanceNote() string {
	if o.isCluster() {
		return fmt.Sprintf(" (%d per instance)", maxInstanceTablets)
	}
	return ""
}

// clusterDefaults fills and checks a cluster run's options (before the shared bounds).
func (o *Options) clusterDefaults() error {
	if o.Instances < 0 || o.NATSCluster < 0 {
		return fmt.Errorf("instances and nats-cluster must not be negative, not %d and %d", o.Instances, o.NATSCluster)
	}
	if !o.isCluster() {
		return nil
	}
	if o.Instances == 0 {
		o.Instances = 1
	}
	if o.NATSCluster == 0 {
		o.NATSCluster = 3
	}
	switch {
	case o.Instances > maxInstances:
		return fmt.Errorf("instances must be 1 to %d, not %d", maxInstances, o.Instances)
	case o.NATSCluster != 1 && o.NATSCluster != 3 && o.NATSCluster != 5:
		return fmt.Errorf("nats-cluster must be 1, 3 or 5 nodes (a quorum survives one loss from 3), not %d", o.NATSCluster)
	case o.Scenario != ScenarioFull:
		return fmt.Errorf("a cluster run (instances, nats-cluster) is a run of its own, not with scenario %s", o.Scenario)
	case o.Tablets < o.Instances:
		return fmt.Errorf("a cluster run needs a tablet per instance at least: %d tablets for %d instances", o.Tablets, o.Instances)
	}
	return nil
}

// clusterRun is the state of a cluster run beside the run's own.
type clusterRun struct {
	*run
	urls  string // the NATS cluster's client URLs
	nats  []*natsNode
	inst  []*instance
	limit int // the open-files limit a child process may raise itself to
	res   *ClusterResult
	// closes are each worker's tablets' closes by code before the kill phase.
	closes map[int]map[string]int
}

// instance is one kioskfeed instance of a cluster run.
type instance struct {
	name      string
	port      int
	base      string
	c         *child
	workers   []int // the workers whose tablets it takes
	tablets   int
	conflicts float64 // kioskfeed_lease_conflicts_total at the start of the window counted
	cpu       *CPUWindow
	rssBefore int64
	killed    bool
}

// openFilesLimit is the hard RLIMIT_NOFILE, the most files a child (a Go program, which
// raises its soft limit to the hard one) can hold.
func openFilesLimit() int {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Max > 1<<30 {
		return 1 << 30
	}
	return int(lim.Max)
}

// cluster is the whole cluster run.
func (r *run) cluster(ctx context.Context) error {
	o := r.opts
	cr := &clusterRun{run: r, limit: openFilesLimit()}
	cr.res = &ClusterResult{Instances: o.Instances, NATSNodes: o.NATSCluster, Replicas: min(3, o.NATSCluster), OpenFilesLimit: cr.limit}
	r.res.Cluster = cr.res
	r.res.Scenario = "cluster"
	cr.layout()
	if err := cr.checkFiles(); err != nil {
		return err
	}
	urls, err := cr.startNATSCluster(ctx, o.NATSCluster)
	if err != nil {
		return err
	}
	cr.urls = urls
	if err := cr.startInstances(ctx, "a"); err != nil {
		return err
	}
	if err := r.makeProducer(ctx); err != nil {
		return err
	}
	if err := cr.startWorkers(); err != nil {
		return err
	}
	if err := r.pair(ctx); err != nil { // through instance 0: the public URL
		return err
	}
	// Fresh processes for the measurements, as in the full run: the pairing's garbage
	// would otherwise sit in instance 0's heap.
	for _, in := range cr.inst {
		if err := in.c.stop(30 * time.Second); err != nil {
			return err
		}
	}
	if err := cr.startInstances(ctx, "b"); err != nil {
		return err
	}
	time.Sleep(o.Settle)
	natsBefore, err := cr.readNATS()
	if err != nil {
		return err
	}
	for _, in := range cr.inst {
		st, err := readProc(in.c.pid())
		if err != nil {
			return err
		}
		in.rssBefore = st.RSS
		in.conflicts, _ = scrapeMetric(ctx, in.base+"/metrics", "kioskfeed_lease_conflicts_total")
	}
	if err := cr.connect(ctx); err != nil {
		return err
	}
	if err := cr.idle(ctx, natsBefore); err != nil {
		return err
	}
	if err := cr.fanout(ctx); err != nil {
		return err
	}
	if err := cr.count(ctx); err != nil {
		return err
	}
	if err := cr.kill(ctx); err != nil {
		return err
	}
	if _, err := r.callAll(func(int) command { return command{Op: "disconnect"} }); err != nil {
		return err
	}
	for _, in := range cr.inst {
		if !in.killed {
			if err := in.c.stop(30 * time.Second); err != nil {
				return err
			}
		}
	}
	return cr.res.verdict()
}

// layout decides how many workers there are (a multiple of the instances, so each
// takes the same number) and which instance each one's tablets go to.
func (cr *clusterRun) layout() {
	n := cr.opts.Instances
	w := (cr.opts.Tablets + cr.opts.PerWorker - 1) / cr.opts.PerWorker
	w = (max(w, n) + n - 1) / n * n
	cr.inst = make([]*instance, n)
	for k := range cr.inst {
		cr.inst[k] = &instance{name: fmt.Sprintf("instance-%d", k)}
	}
	for i := range w {
		in := cr.inst[i%n]
		in.workers = append(in.workers, i)
		in.tablets += cr.opts.Tablets/w + btoi(i < cr.opts.Tablets%w) // run.share with w workers
	}
}

// checkFiles refuses a run that cannot hold its sockets: an instance's share or a
// worker's tablets (plus the margin) over the open-files limit.
func (cr *clusterRun) checkFiles() error {
	for _, in := range cr.inst {
		if need := in.tablets + fileMargin; need > cr.limit {
			return fmt.Errorf("%s would need %d files for its %d tablets, the open-files limit is %d", in.name, need, in.tablets, cr.limit)
		}
	}
	if need := cr.opts.PerWorker + fileMargin; need > cr.limit {
		return fmt.Errorf("a worker of %d tablets would need %d files, the open-files limit is %d", cr.opts.PerWorker, need, cr.limit)
	}
	// A worker dials from sourcesPerWorker addresses, each with its own ephemeral ports
	// towards each instance; a moved tablet dials another instance, so ports are not
	// shared across the move either.
	if per, ports := (cr.opts.PerWorker+sourcesPerWorker-1)/sourcesPerWorker, ephemeralPorts(); per > ports {
		return fmt.Errorf("a worker of %d tablets would dial %d from each of its %d source addresses, there are %d ephemeral ports", cr.opts.PerWorker, per, sourcesPerWorker, ports)
	}
	return nil
}

// sourcesPerWorker is how many loopback addresses a worker's tablets dial from.
const sourcesPerWorker = 4

// ephemeralPorts is the size of the kernel's ephemeral port range (28,232 by default).
func ephemeralPorts() int {
	raw, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 28232
	}
	var lo, hi int
	if _, err := fmt.Sscan(string(raw), &lo, &hi); err != nil || hi < lo {
		return 28232
	}
	return hi - lo + 1
}

// env is instance k's settings: the run's, then the cluster's (its own listener and
// data directory; the NATS cluster; the replicas; the signing key every instance
// shares, as deploy/kioskfeed.yaml says), then the user's, which win.
func (cr *clusterRun) env(k int) []string {
	base := cr.serverEnv() // sets the run's port (instance 0's), public URL and admin token
	user := len(base) - len(cr.opts.ServerEnv)
	if cr.inst[k].port == 0 {
		cr.inst[k].port = cr.port
		if k > 0 {
			cr.inst[k].port, _ = freePort()
		}
		cr.inst[k].base = "http://127.0.0.1:" + strconv.Itoa(cr.inst[k].port)
	}
	own := []string{
		"KIOSKFEED_LISTEN=127.0.0.1:" + strconv.Itoa(cr.inst[k].port),
		"KIOSKFEED_DATA_DIR=" + filepath.Join(cr.dir, fmt.Sprintf("data-%d", k)),
		"KIOSKFEED_NATS_URL=" + cr.urls,
		"KIOSKFEED_NATS_REPLICAS=" + strconv.Itoa(cr.res.Replicas),
		"KIOSKFEED_SIGNING_KEY_FILE=" + filepath.Join(cr.dir, "signing-keys.pem"),
	}
	return slices.Insert(slices.Clone(base), user, own...)
}

// startInstances starts every instance, one after the other (the first makes the
// shared signing key and the streams), and waits for each to be ready.
func (cr *clusterRun) startInstances(ctx context.Context, round string) error {
	for k, in := range cr.inst {
		name := in.name + round
		c, err := startChild(name, cr.opts.ServerExe, []string{"serve"}, cr.env(k), filepath.Join(cr.dir, name+".log"), nil)
		if err != nil {
			return err
		}
		cr.track(c)
		in.c = c
		if k == 0 {
			cr.server = c
		}
		wctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
		err = waitHTTP(wctx, c, in.base+"/readyz")
		cancel()
		if err != nil {
			return err
		}
		cr.logf("%s ready (pid %d) at %s", name, c.pid(), in.base)
	}
	return nil
}

// startWorkers starts the workers layout decided on.
func (cr *clusterRun) startWorkers() error {
	n := 0
	for _, in := range cr.inst {
		n += len(in.workers)
	}
	for i := range n {
		w, err := startWorker(cr.run, i)
		if err != nil {
			return err
		}
		cr.workers = append(cr.workers, w)
	}
	cr.res.Workers, cr.run.res.Workers = n, n
	return nil
}

// instanceOf is the instance worker i's tablets connect to first.
func (cr *clusterRun) instanceOf(i int) int { return i % len(cr.inst) }

// backends is worker i's list of instance addresses for its tablets: its own first,
// then the others, which a tablet falls over to as a load balancer would
// (tablet.dialBackends).
func (cr *clusterRun) backends(i int) []string {
	k := cr.instanceOf(i)
	var out []string
	for j := range cr.inst {
		out = append(out, "127.0.0.1:"+strconv.Itoa(cr.inst[(k+j)%len(cr.inst)].port))
	}
	return out
}

// connect connects every tablet to its instance and measures the storm.
func (cr *clusterRun) connect(ctx context.Context) error {
	for _, in := range cr.inst {
		var err error
		if in.cpu, err = StartCPU(in.c.pid()); err != nil {
			return err
		}
	}
	err := cr.connectStorm(func(i int) command {
		b := cr.backends(i)
		return command{Op: "connect", Addr: b[0], Addrs: b, Origin: cr.base, Sources: sources(i, sourcesPerWorker), Ramp: 256, Ack: cr.opts.Ack, Timeout: timeoutMS(5 * time.Minute)}
	})
	if err != nil {
		return err
	}
	cr.res.ConnectS, cr.res.ConnectHandshakesPerS = cr.run.res.ConnectS, cr.run.res.ConnectHandshakesPerS
	cr.res.PerInstance = make([]ClusterInstance, len(cr.inst))
	for k, in := range cr.inst {
		pi := &cr.res.PerInstance[k]
		pi.Name, pi.Tablets, pi.Workers = in.name, in.tablets, len(in.workers)
		if span, err := in.cpu.End(); err == nil {
			pi.ConnectServerCPUUsPerHandshake = float64(span.Per(in.tablets).Nanoseconds()) / 1000
		}
	}
	cr.logf("%d tablets connected to %d instances and synced in %.1fs (%.0f handshakes/s)", cr.opts.Tablets, len(cr.inst), cr.res.ConnectS, cr.res.ConnectHandshakesPerS)
	return nil
}

// readNATS reads every NATS node's memory and CPU.
func (cr *clusterRun) readNATS() ([]procStat, error) {
	out := make([]procStat, len(cr.nats))
	for i, n := range cr.nats {
		st, err := readProc(n.c.pid())
		if err != nil {
			return nil, fmt.Errorf("%s: %w", n.name, err)
		}
		out[i] = st
	}
	return out, nil
}

// idle lets the tablets sit connected for the idle and reads each process's memory.
func (cr *clusterRun) idle(ctx context.Context, natsBefore []procStat) error {
	cr.logf("idle for %s with %d tablets over %d instances", cr.opts.Idle, cr.opts.Tablets, len(cr.inst))
	if err := cr.sleep(ctx, cr.opts.Settle+cr.opts.Idle); err != nil {
		return err
	}
	for k, in := range cr.inst {
		st, err := readProc(in.c.pid())
		if err != nil {
			return err
		}
		pi := &cr.res.PerInstance[k]
		pi.RSSBeforeBytes, pi.RSSAfterBytes = in.rssBefore, st.RSS
		pi.RSSBytesPerTablet = float64(st.RSS-in.rssBefore) / float64(max(in.tablets, 1))
		cr.logf("%s: %d tablets, %.0f bytes of RSS each (%.1f MiB in all)", in.name, in.tablets, pi.RSSBytesPerTablet, mebi(st.RSS))
	}
	after, err := cr.readNATS()
	if err != nil {
		return err
	}
	for i, n := range cr.nats {
		cr.res.NATS = append(cr.res.NATS, ClusterNATSNode{Name: n.name, RSSBeforeBytes: natsBefore[i].RSS, RSSAfterBytes: after[i].RSS,
			RSSBytesPerTablet: float64(after[i].RSS-natsBefore[i].RSS) / float64(cr.opts.Tablets)})
	}
	return nil
}

func mebi(b int64) float64 { return float64(b) / (1 << 20) }

// fanout publishes the events through instance 0's HTTP API (every instance's hub gets
// them from JetStream) and collects each instance's deliveries.
func (cr *clusterRun) fanout(ctx context.Context) error {
	cr.logf("fan-out: %d events at %g/s to %d tablets over %d instances", cr.opts.Events, cr.opts.Rate, cr.opts.Tablets, len(cr.inst))
	for _, in := range cr.inst {
		var err error
		if in.cpu, err = StartCPU(in.c.pid()); err != nil {
			return err
		}
	}
	natsCPU := make([]*CPUWindow, len(cr.nats))
	for i, n := range cr.nats {
		var err error
		if natsCPU[i], err = StartCPU(n.c.pid()); err != nil {
			return err
		}
	}
	if _, err := cr.callAll(func(int) command { return command{Op: "phase", Phase: 1, Events: cr.opts.Events} }); err != nil {
		return err
	}
	client := &http.Client{}
	defer client.CloseIdleConnections()
	if err := cr.pace(ctx, cr.opts.Events, func(i int) error { return cr.publishHTTP(ctx, client, 1, i) }); err != nil {
		return err
	}
	reps, err := cr.callAll(func(int) command {
		return command{Op: "collect", Target: "tablets", Events: cr.opts.Events, Timeout: timeoutMS(time.Minute)}
	})
	if err != nil {
		return err
	}
	var all []int32
	for k, in := range cr.inst {
		var lat []int32
		pi := &cr.res.PerInstance[k]
		for _, i := range in.workers {
			lat = append(lat, reps[i].Latencies...)
			pi.Missing += reps[i].Missing
			pi.Duplicates += reps[i].Duplicates
		}
		p := percentiles(lat)
		pi.FanoutP50Ms, pi.FanoutP99Ms, pi.FanoutMaxMs, pi.Deliveries = p[0], p[2], p[3], len(lat)
		if span, err := in.cpu.End(); err == nil {
			pi.FanoutServerCPUUsPerDelivery = float64(span.Per(len(lat)).Nanoseconds()) / 1000
			pi.FanoutServerCPUPct = span.Pct()
		}
		all = append(all, lat...)
		cr.res.Missing += pi.Missing
		cr.res.Duplicates += pi.Duplicates
		cr.logf("%s fan-out: p50 %.1fms p99 %.1fms; %d delivered, %d missing, %d repeated", in.name, p[0], p[2], len(lat), pi.Missing, pi.Duplicates)
	}
	for i := range cr.nats {
		if span, err := natsCPU[i].End(); err == nil && i < len(cr.res.NATS) {
			cr.res.NATS[i].FanoutCPUPct = span.Pct()
		}
	}
	if failed, first := sumFailed(reps); failed > 0 {
		cr.logf("%d tablets missed events; the first: %s", failed, first)
	}
	p := percentiles(all)
	c := cr.res
	c.FanoutP50Ms, c.FanoutP90Ms, c.FanoutP99Ms, c.FanoutMaxMs, c.Deliveries = p[0], p[1], p[2], p[3], len(all)
	top := &cr.run.res
	top.FanoutP50Ms, top.FanoutP90Ms, top.FanoutP99Ms, top.FanoutMaxMs = p[0], p[1], p[2], p[3]
	top.Deliveries, top.Missing, top.Duplicates = len(all), c.Missing, c.Duplicates
	cr.logf("fan-out across %d instances: p50 %.1fms p99 %.1fms max %.1fms; %d delivered, %d missing, %d repeated", len(cr.inst), p[0], p[2], p[3], len(all), c.Missing, c.Duplicates)
	return nil
}

func (cr *clusterRun) sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}
