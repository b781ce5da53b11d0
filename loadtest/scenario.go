package loadtest

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// The two scenarios of issue 12, each a run of its own (Options.Scenario): what a
// building's tablets live through, measured on the tablets that are not to blame.
//
// Wi-Fi outage: N tablets are connected; a share of them go dead at once (their
// sockets stay open, and they stop reading, so they answer no ping and their receive
// windows fill). Events keep flowing for OutageFor. The healthy tablets must get every
// heartbeat on time, every event, and keep their sockets; the server must drop the dead
// ones within its silence limit.
//
// Far-behind reconnect storm: a share of N tablets leave, Behind events are published,
// and they all come back at once with the since they had. Each must catch up by the
// contract (a gap-free replay from since+1, or a reset and the state, then gap-free
// live events), the server's memory must stay bounded, and the tablets that stayed
// connected must keep getting events without a drop.

// OutageResult is a Wi-Fi outage's figures. Heartbeat gaps are the times between two
// heartbeats a healthy tablet received (the one still open at the end included);
// latencies are publish→delivery for every healthy tablet and event.
type OutageResult struct {
	Tablets    int     `json:"tablets"`
	Dead       int     `json:"dead"`
	Healthy    int     `json:"healthy"`
	HeartbeatS float64 `json:"heartbeat_s"`
	OutageS    float64 `json:"outage_s"` // from the tablets' death to the last event published
	Events     int     `json:"events"`   // published during the outage

	HealthyDropped    int            `json:"healthy_dropped"` // healthy tablets whose socket ended during the outage
	HealthyMissing    int            `json:"healthy_missing"`
	HealthyDuplicates int            `json:"healthy_duplicates"`
	HealthyCloses     map[string]int `json:"healthy_closes,omitempty"` // how healthy tablets' sockets ended, by close code (1006: none)
	FirstDrop         string         `json:"first_drop,omitempty"`

	HeartbeatGapP99Ms       float64 `json:"heartbeat_gap_p99_ms"`
	HeartbeatGapMaxMs       float64 `json:"heartbeat_gap_max_ms"`
	HeartbeatGapBeforeP99Ms float64 `json:"heartbeat_gap_before_p99_ms"`
	HeartbeatGapBeforeMaxMs float64 `json:"heartbeat_gap_before_max_ms"`

	FanoutBeforeP50Ms float64 `json:"fanout_before_p50_ms"`
	FanoutBeforeP99Ms float64 `json:"fanout_before_p99_ms"`
	FanoutBeforeMaxMs float64 `json:"fanout_before_max_ms"`
	FanoutP50Ms       float64 `json:"fanout_p50_ms"`
	FanoutP99Ms       float64 `json:"fanout_p99_ms"`
	FanoutMaxMs       float64 `json:"fanout_max_ms"`

	// DeadDroppedS is from the outage's start until the server counted no dead socket
	// any more (kioskfeed_ws_connections down to the healthy tablets' open sockets); -1 if that did not
	// happen within DropWait. DeadDropped is how many it had dropped by then. The
	// outage (OutageS) lasts at least OutageFor, and until two and a half heartbeats
	// after the last drop, or DropWait.
	DeadDroppedS float64 `json:"dead_dropped_s"`
	DeadDropped  int     `json:"dead_dropped"`

	ServerRSSBeforeBytes int64   `json:"server_rss_before_bytes"`
	ServerRSSPeakBytes   int64   `json:"server_rss_peak_bytes"` // during the outage, sampled every 50 ms
	ServerCPUPct         float64 `json:"server_cpu_pct"`        // of one core, during the outage
}

// StormResult is a far-behind reconnect storm's figures.
type StormResult struct {
	Tablets   int `json:"tablets"`
	Returning int `json:"returning"` // tablets that left and came back
	Healthy   int `json:"healthy"`   // tablets that stayed connected
	Behind    int `json:"behind"`    // events published while they were away
	Events    int `json:"events"`    // live events published during the storm

	SyncedAllS float64 `json:"synced_all_s"` // from the return to the last returning tablet's synced
	Unsynced   int     `json:"unsynced"`     // returning tablets not synced within 2 minutes
	// How the returning tablets' sockets caught up (each socket once; a tablet closed
	// mid-storm, e.g. 1013, comes back on another socket), and the sequence violations
	// found (must be 0).
	Sockets         int            `json:"sockets"`
	Replays         int            `json:"replays"`
	Resets          int            `json:"resets"`
	Violations      int            `json:"violations"`
	FirstViolation  string         `json:"first_violation,omitempty"`
	ReturningCloses map[string]int `json:"returning_closes,omitempty"`
	// ServerReplays is the server's own count of catch-ups during the storm, by source
	// (kioskfeed_replays_total: memory, jetstream, reset).
	ServerReplays    map[string]float64 `json:"server_replays,omitempty"`
	ServerQueueDrops float64            `json:"server_queue_drops"` // 1013s during the storm

	HealthyDropped    int            `json:"healthy_dropped"`
	HealthyMissing    int            `json:"healthy_missing"`
	HealthyDuplicates int            `json:"healthy_duplicates"`
	HealthyCloses     map[string]int `json:"healthy_closes,omitempty"`
	FirstDrop         string         `json:"first_drop,omitempty"`

	FanoutBeforeP50Ms float64 `json:"fanout_before_p50_ms"`
	FanoutBeforeP99Ms float64 `json:"fanout_before_p99_ms"`
	FanoutBeforeMaxMs float64 `json:"fanout_before_max_ms"`
	FanoutP50Ms       float64 `json:"fanout_p50_ms"` // healthy tablets, during the storm
	FanoutP99Ms       float64 `json:"fanout_p99_ms"`
	FanoutMaxMs       float64 `json:"fanout_max_ms"`

	ServerRSSBeforeBytes int64 `json:"server_rss_before_bytes"`
	ServerRSSPeakBytes   int64 `json:"server_rss_peak_bytes"` // sampled every 20 ms during the storm
	ServerHWMBytes       int64 `json:"server_hwm_bytes"`      // VmHWM after the storm, reset just before it
}

// errScenario is a scenario whose tablets did not fare as they must.
var errScenario = errors.New("scenario failed")

// verdict is the outage's outcome: an error when a healthy tablet was dropped or
// missed an event, or the server kept a dead link past the wait.
func (o *OutageResult) verdict() error {
	var errs []error
	if o.HealthyDropped > 0 {
		errs = append(errs, fmt.Errorf("%d healthy tablets were dropped (closes %v); the first: %s", o.HealthyDropped, o.HealthyCloses, o.FirstDrop))
	}
	if o.HealthyMissing > 0 || o.HealthyDuplicates > 0 {
		errs = append(errs, fmt.Errorf("healthy tablets missed %d and repeated %d events", o.HealthyMissing, o.HealthyDuplicates))
	}
	if o.DeadDroppedS < 0 {
		errs = append(errs, fmt.Errorf("the server had dropped %d of %d dead links when the wait ended", o.DeadDropped, o.Dead))
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("outage: %w: %w", errScenario, errors.Join(errs...))
}

// verdict is the storm's outcome: an error when a returning tablet broke the catch-up
// contract or never synced, or a healthy tablet was dropped or missed an event.
func (s *StormResult) verdict() error {
	var errs []error
	if s.Violations > 0 {
		errs = append(errs, fmt.Errorf("%d catch-up violations; the first: %s", s.Violations, s.FirstViolation))
	}
	if s.Unsynced > 0 {
		errs = append(errs, fmt.Errorf("%d of %d returning tablets never synced", s.Unsynced, s.Returning))
	}
	if s.HealthyDropped > 0 {
		errs = append(errs, fmt.Errorf("%d healthy tablets were dropped (closes %v); the first: %s", s.HealthyDropped, s.HealthyCloses, s.FirstDrop))
	}
	if s.HealthyMissing > 0 || s.HealthyDuplicates > 0 {
		errs = append(errs, fmt.Errorf("healthy tablets missed %d and repeated %d events", s.HealthyMissing, s.HealthyDuplicates))
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("storm: %w: %w", errScenario, errors.Join(errs...))
}

// setUp starts the server and the workers, pairs and connects every tablet, and marks
// the share the scenario acts on. It returns how many that is.
func (r *run) setUp(ctx context.Context) (affected int, err error) {
	if err := r.startServer(ctx, "server-1"); err != nil {
		return 0, err
	}
	if err := r.makeProducer(ctx); err != nil {
		return 0, err
	}
	if err := r.startWorkers(); err != nil {
		return 0, err
	}
	if err := r.pair(ctx); err != nil {
		return 0, err
	}
	if err := r.connect(ctx); err != nil {
		return 0, err
	}
	reps, err := r.callAll(func(int) command { return command{Op: "mark", Share: r.opts.Share} })
	if err != nil {
		return 0, err
	}
	for _, rep := range reps {
		affected += rep.N
	}
	if affected == 0 || affected == r.opts.Tablets {
		return 0, fmt.Errorf("a share of %g of %d tablets (over %d workers) leaves %d affected: the scenario needs some of each", r.opts.Share, r.opts.Tablets, len(r.workers), affected)
	}
	return affected, nil
}

// tearDown ends every tablet's socket and stops the server.
func (r *run) tearDown() error {
	if _, err := r.callAll(func(int) command { return command{Op: "disconnect"} }); err != nil {
		return err
	}
	return r.server.stop(30 * time.Second)
}

func (r *run) sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// groupPhase publishes events 1..n of a phase at the set rate (every tablet expects
// them) and collects what group received.
func (r *run) groupPhase(ctx context.Context, phase, n int, group string) (lat []int32, missing, dups int, err error) {
	if _, err := r.callAll(func(int) command { return command{Op: "phase", Phase: phase, Events: n} }); err != nil {
		return nil, 0, 0, err
	}
	client := &http.Client{}
	defer client.CloseIdleConnections()
	if err := r.pace(ctx, n, func(i int) error { return r.publishHTTP(ctx, client, phase, i) }); err != nil {
		return nil, 0, 0, err
	}
	return r.collectGroup(group, n)
}

func (r *run) collectGroup(group string, n int) ([]int32, int, int, error) {
	reps, err := r.callAll(func(int) command {
		return command{Op: "collect", Group: group, Events: n, Timeout: timeoutMS(time.Minute)}
	})
	if err != nil {
		return nil, 0, 0, err
	}
	var lat []int32
	missing, dups := 0, 0
	for _, rep := range reps {
		lat = append(lat, rep.Latencies...)
		missing += rep.Missing
		dups += rep.Duplicates
	}
	if failed, first := sumFailed(reps); failed > 0 {
		r.logf("%d %s tablets missed events; the first: %s", failed, group, first)
	}
	return lat, missing, dups, nil
}

// watch starts the heartbeat watch of group; gaps ends it.
func (r *run) watch(group string) error {
	_, err := r.callAll(func(int) command { return command{Op: "watch", Group: group} })
	return err
}

type gapReport struct {
	gaps    []int32
	dropped int
	closes  map[string]int
	first   string
}

func (r *run) gaps(group string) (gapReport, error) {
	reps, err := r.callAll(func(int) command { return command{Op: "gaps", Group: group} })
	g := gapReport{closes: map[string]int{}}
	for _, rep := range reps {
		g.gaps = append(g.gaps, rep.Gaps...)
		g.dropped += rep.Dropped
		if g.first == "" {
			g.first = rep.FirstErr
		}
	}
	return g, err
}

// closesOf sums the close codes the group's tablets have seen so far.
func (r *run) closesOf(group string) (map[string]int, error) {
	reps, err := r.callAll(func(int) command { return command{Op: "check", Group: group} })
	out := map[string]int{}
	for _, rep := range reps {
		for k, v := range rep.Closes {
			out[k] += v
		}
	}
	return out, err
}

// gapPercentiles are p99 and max of heartbeat gaps in ms.
func gapPercentiles(gaps []int32) (p99, maxMs float64) {
	if len(gaps) == 0 {
		return 0, 0
	}
	s := slices.Clone(gaps)
	slices.Sort(s)
	i := int(0.99*float64(len(s))+0.999999) - 1
	return float64(s[min(max(i, 0), len(s)-1)]), float64(s[len(s)-1])
}

func diffCloses(after, before map[string]int) map[string]int {
	out := map[string]int{}
	for k, v := range after {
		if d := v - before[k]; d > 0 {
			out[k] = d
		}
	}
	return out
}

// outage runs the Wi-Fi outage scenario.
func (r *run) outage(ctx context.Context) error {
	o := &OutageResult{Tablets: r.opts.Tablets, HeartbeatS: r.opts.Heartbeat.Seconds(), OutageS: r.opts.OutageFor.Seconds()}
	r.res.Outage = o
	dead, err := r.setUp(ctx)
	if err != nil {
		return err
	}
	o.Dead, o.Healthy = dead, r.opts.Tablets-dead
	// Every tablet hears two heartbeats first, so that each gap has a beginning.
	if err := r.sleep(ctx, 2*r.opts.Heartbeat+time.Second); err != nil {
		return err
	}

	// Before: the same tablets, all of them alive, the same rate.
	r.logf("outage: before, %d events at %g/s", r.opts.Events, r.opts.Rate)
	if err := r.watch(groupHealthy); err != nil {
		return err
	}
	beforeStart := time.Now()
	lat, _, _, err := r.groupPhase(ctx, 1, r.opts.Events, groupHealthy)
	if err != nil {
		return err
	}
	p := percentiles(lat)
	o.FanoutBeforeP50Ms, o.FanoutBeforeP99Ms, o.FanoutBeforeMaxMs = p[0], p[2], p[3]
	// The heartbeats before are watched as long as a healthy tablet's patience at
	// least, so that their gaps compare with those during the outage.
	if err := r.sleep(ctx, time.Until(beforeStart.Add(5*r.opts.Heartbeat/2))); err != nil {
		return err
	}
	before, err := r.gaps(groupHealthy)
	if err != nil {
		return err
	}
	o.HeartbeatGapBeforeP99Ms, o.HeartbeatGapBeforeMaxMs = gapPercentiles(before.gaps)
	closesBefore, err := r.closesOf(groupHealthy)
	if err != nil {
		return err
	}
	procBefore, err := readProc(r.server.pid())
	if err != nil {
		return err
	}
	o.ServerRSSBeforeBytes = procBefore.RSS

	// The outage.
	if err := r.watch(groupHealthy); err != nil {
		return err
	}
	sampler := sampleRSS(r.server.pid(), 50*time.Millisecond)
	start := time.Now()
	if _, err := r.callAll(func(int) command { return command{Op: "outage"} }); err != nil {
		sampler.end()
		return err
	}
	r.logf("outage: %d of %d tablets dead, events at %g/s", o.Dead, o.Tablets, r.opts.Rate)
	maxEvents := max(1, int(math.Ceil(r.opts.Rate*(r.opts.DropWait+r.opts.OutageFor).Seconds())))
	if _, err := r.callAll(func(int) command { return command{Op: "phase", Phase: 2, Events: maxEvents} }); err != nil {
		sampler.end()
		return err
	}
	stop := make(chan struct{})
	var published int
	var pubErr error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		published, pubErr = r.publishUntil(ctx, 2, maxEvents, stop)
	}()
	r.awaitDeadDropped(ctx, start, o)
	close(stop)
	wg.Wait()
	o.OutageS = time.Since(start).Seconds()
	o.Events = published
	if pubErr != nil {
		sampler.end()
		return pubErr
	}
	lat, missing, dups, err := r.collectGroup(groupHealthy, published)
	if err != nil {
		sampler.end()
		return err
	}
	during, err := r.gaps(groupHealthy)
	procAfter, perr := readProc(r.server.pid())
	if err := errors.Join(err, perr); err != nil {
		sampler.end()
		return err
	}
	elapsed := time.Since(start)
	o.ServerRSSPeakBytes = sampler.end()
	o.ServerCPUPct = 100 * (procAfter.CPU - procBefore.CPU).Seconds() / elapsed.Seconds()
	p = percentiles(lat)
	o.FanoutP50Ms, o.FanoutP99Ms, o.FanoutMaxMs = p[0], p[2], p[3]
	o.HealthyMissing, o.HealthyDuplicates = missing, dups
	o.HeartbeatGapP99Ms, o.HeartbeatGapMaxMs = gapPercentiles(during.gaps)
	o.HealthyDropped, o.FirstDrop = during.dropped, during.first
	closesAfter, err := r.closesOf(groupHealthy)
	if err != nil {
		return err
	}
	o.HealthyCloses = diffCloses(closesAfter, closesBefore)
	r.logf("outage: healthy tablets: heartbeat gap p99 %.0f ms, max %.0f ms (before: %.0f, %.0f); fan-out p50 %.1f ms p99 %.1f ms (before: %.1f, %.1f); %d dropped, %d events missed; dead links dropped after %.1fs (%d of %d); server RSS %.1f → peak %.1f MiB",
		o.HeartbeatGapP99Ms, o.HeartbeatGapMaxMs, o.HeartbeatGapBeforeP99Ms, o.HeartbeatGapBeforeMaxMs, o.FanoutP50Ms, o.FanoutP99Ms, o.FanoutBeforeP50Ms, o.FanoutBeforeP99Ms,
		o.HealthyDropped, o.HealthyMissing, o.DeadDroppedS, o.DeadDropped, o.Dead, float64(o.ServerRSSBeforeBytes)/(1<<20), float64(o.ServerRSSPeakBytes)/(1<<20))
	// The verdict first: a server that cannot stop (its heartbeat stuck on dead
	// sockets) is one more finding, not a reason to hide the others.
	return errors.Join(o.verdict(), r.tearDown())
}

// awaitDeadDropped lets the outage go on, polling the server's socket count, until
// OutageFor has passed, the server counts only the healthy tablets' sockets (the dead
// ones dropped) and two and a half heartbeats more (a healthy tablet's patience) have
// passed after that, so that what the drops did to the others is seen; or until
// DropWait. It records when the dead links were gone and how many were.
func (r *run) awaitDeadDropped(ctx context.Context, start time.Time, o *OutageResult) {
	o.DeadDroppedS = -1
	var droppedAt time.Time
	after := 5*r.opts.Heartbeat/2 + time.Second
	for ctx.Err() == nil {
		now := time.Now()
		if droppedAt.IsZero() {
			if left, err := r.deadLeft(ctx); err == nil {
				o.DeadDropped = min(o.Dead, max(0, o.Dead-left))
				if left <= 0 {
					droppedAt = now
					o.DeadDroppedS = now.Sub(start).Seconds()
				}
			}
		}
		elapsed := now.Sub(start)
		if elapsed >= r.opts.DropWait || (elapsed >= r.opts.OutageFor && !droppedAt.IsZero() && now.Sub(droppedAt) >= after) {
			return
		}
		_ = r.sleep(ctx, 100*time.Millisecond)
	}
}

// deadLeft is how many dead sockets the server still counts: all it counts less the
// healthy tablets' open sockets, which come and go if the server drops them too.
func (r *run) deadLeft(ctx context.Context) (int, error) {
	conns, err := scrapeMetric(ctx, r.base+"/metrics", "kioskfeed_ws_connections")
	if err != nil {
		return 0, err
	}
	reps, err := r.callAll(func(int) command { return command{Op: "open", Group: groupHealthy} })
	if err != nil {
		return 0, err
	}
	open := 0
	for _, rep := range reps {
		open += rep.N
	}
	return int(conns) - open, nil
}

// storm runs the far-behind reconnect storm scenario.
func (r *run) storm(ctx context.Context) error {
	s := &StormResult{Tablets: r.opts.Tablets, Behind: r.opts.Behind}
	r.res.Storm = s
	returning, err := r.setUp(ctx)
	if err != nil {
		return err
	}
	s.Returning, s.Healthy = returning, r.opts.Tablets-returning

	r.logf("storm: before, %d events at %g/s", r.opts.Events, r.opts.Rate)
	lat, _, _, err := r.groupPhase(ctx, 1, r.opts.Events, groupHealthy)
	if err != nil {
		return err
	}
	p := percentiles(lat)
	s.FanoutBeforeP50Ms, s.FanoutBeforeP99Ms, s.FanoutBeforeMaxMs = p[0], p[2], p[3]

	// They leave, and fall behind.
	if _, err := r.callAll(func(int) command { return command{Op: "leave"} }); err != nil {
		return err
	}
	if err := r.awaitConns(ctx, s.Healthy, time.Minute); err != nil {
		return err
	}
	r.logf("storm: %d tablets left; %d events published while they are away", s.Returning, s.Behind)
	if err := r.publishBehind(ctx, 2, s.Behind); err != nil {
		return err
	}
	if _, missing, _, err := r.collectGroup(groupHealthy, s.Behind); err != nil {
		return err
	} else if missing > 0 {
		return fmt.Errorf("storm: healthy tablets missed %d of the events published while the others were away", missing)
	}

	// They come back, all at once, while live events flow.
	time.Sleep(r.opts.Settle)
	procBefore, err := readProc(r.server.pid())
	if err != nil {
		return err
	}
	s.ServerRSSBeforeBytes = procBefore.RSS
	replaysBefore, _ := scrapeSeries(ctx, r.base+"/metrics", "kioskfeed_replays_total")
	dropsBefore, _ := scrapeMetric(ctx, r.base+"/metrics", "kioskfeed_ws_queue_drops_total")
	healthyClosesBefore, err := r.closesOf(groupHealthy)
	if err != nil {
		return err
	}
	returningClosesBefore, err := r.closesOf(groupAffected)
	if err != nil {
		return err
	}
	hwmErr := resetPeakRSS(r.server.pid())
	sampler := sampleRSS(r.server.pid(), 20*time.Millisecond)
	maxLive := max(10, int(r.opts.Rate*150)) // 2.5 minutes of live events at most
	if _, err := r.callAll(func(int) command { return command{Op: "phase", Phase: 3, Events: maxLive} }); err != nil {
		sampler.end()
		return err
	}
	if err := r.watch(groupHealthy); err != nil {
		sampler.end()
		return err
	}
	stopLive := make(chan struct{})
	var live int
	var liveErr error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		live, liveErr = r.publishUntil(ctx, 3, maxLive, stopLive)
	}()
	finishLive := func() {
		close(stopLive)
		wg.Wait()
	}
	// A second of live events first, so the healthy tablets' latency covers the storm's
	// start.
	time.Sleep(time.Second)
	back := time.Now()
	r.logf("storm: %d tablets come back at once, %d events behind", s.Returning, s.Behind)
	if _, err := r.callAll(func(int) command { return command{Op: "return", Ramp: 1 << 20} }); err != nil {
		finishLive()
		sampler.end()
		return err
	}
	reps, err := r.callAll(func(int) command {
		return command{Op: "await_sync", Group: groupAffected, Since: back.UnixNano(), Timeout: timeoutMS(2 * time.Minute)}
	})
	if err != nil {
		finishLive()
		sampler.end()
		return err
	}
	var last int64
	for _, rep := range reps {
		last = max(last, rep.Last)
		s.Unsynced += rep.Failed
	}
	if last > 0 {
		s.SyncedAllS = time.Duration(last - back.UnixNano()).Seconds()
	}
	r.logf("storm: %d synced %.2fs after coming back (%d not)", s.Returning-s.Unsynced, s.SyncedAllS, s.Unsynced)
	// Live events go on a while after the last sync, so each socket's sequence is
	// checked past its catch-up too.
	time.Sleep(time.Second + time.Duration(float64(time.Second)*3/r.opts.Rate))
	finishLive()
	s.ServerRSSPeakBytes = sampler.end()
	if liveErr != nil {
		return liveErr
	}
	s.Events = live
	if hwmErr == nil {
		if st, err := readProc(r.server.pid()); err == nil {
			s.ServerHWMBytes = st.HWM
		}
	}
	lat, missing, dups, err := r.collectGroup(groupHealthy, live)
	if err != nil {
		return err
	}
	p = percentiles(lat)
	s.FanoutP50Ms, s.FanoutP99Ms, s.FanoutMaxMs = p[0], p[2], p[3]
	s.HealthyMissing, s.HealthyDuplicates = missing, dups
	g, err := r.gaps(groupHealthy)
	if err != nil {
		return err
	}
	s.HealthyDropped, s.FirstDrop = g.dropped, g.first
	checks, err := r.callAll(func(int) command { return command{Op: "check", Group: groupAffected} })
	if err != nil {
		return err
	}
	returningCloses := map[string]int{}
	for _, c := range checks {
		s.Sockets += c.Sockets
		s.Replays += c.Replays
		s.Resets += c.Resets
		s.Violations += c.Violations
		if s.FirstViolation == "" {
			s.FirstViolation = c.FirstErr
		}
		for k, v := range c.Closes {
			returningCloses[k] += v
		}
	}
	s.ReturningCloses = diffCloses(returningCloses, returningClosesBefore)
	healthyCloses, err := r.closesOf(groupHealthy)
	if err != nil {
		return err
	}
	s.HealthyCloses = diffCloses(healthyCloses, healthyClosesBefore)
	if after, err := scrapeSeries(ctx, r.base+"/metrics", "kioskfeed_replays_total"); err == nil {
		s.ServerReplays = map[string]float64{}
		for k, v := range after {
			if d := v - replaysBefore[k]; d > 0 {
				s.ServerReplays[strings.Trim(strings.TrimPrefix(k, "source="), `"`)] = d
			}
		}
	}
	if after, err := scrapeMetric(ctx, r.base+"/metrics", "kioskfeed_ws_queue_drops_total"); err == nil {
		s.ServerQueueDrops = after - dropsBefore
	}
	r.logf("storm: sockets %d: %d replays, %d resets, %d violations; server RSS %.1f → peak %.1f MiB (HWM %.1f); healthy: fan-out p50 %.1f ms p99 %.1f ms (before: %.1f, %.1f), %d dropped, %d missed",
		s.Sockets, s.Replays, s.Resets, s.Violations, float64(s.ServerRSSBeforeBytes)/(1<<20), float64(s.ServerRSSPeakBytes)/(1<<20), float64(s.ServerHWMBytes)/(1<<20),
		s.FanoutP50Ms, s.FanoutP99Ms, s.FanoutBeforeP50Ms, s.FanoutBeforeP99Ms, s.HealthyDropped, s.HealthyMissing)
	return errors.Join(s.verdict(), r.tearDown())
}

// awaitConns waits until the server counts at most n sockets.
func (r *run) awaitConns(ctx context.Context, n int, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		conns, err := scrapeMetric(ctx, r.base+"/metrics", "kioskfeed_ws_connections")
		if err == nil && int(conns) <= n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the server still counts %g sockets after %s, want at most %d (%v)", conns, within, n, err)
		}
		if err := r.sleep(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
}

// publishBehind publishes events 1..n of a phase as fast as one producer can (each
// waits for its acknowledgement), with every tablet expecting them.
func (r *run) publishBehind(ctx context.Context, phase, n int) error {
	if _, err := r.callAll(func(int) command { return command{Op: "phase", Phase: phase, Events: n} }); err != nil {
		return err
	}
	client := &http.Client{}
	defer client.CloseIdleConnections()
	for i := 1; i <= n; i++ {
		if err := r.publishHTTP(ctx, client, phase, i); err != nil {
			return err
		}
	}
	return nil
}

// publishUntil publishes events of a phase at the set rate until stop closes (or max
// were sent) and returns how many it sent.
func (r *run) publishUntil(ctx context.Context, phase, maxEvents int, stop <-chan struct{}) (int, error) {
	client := &http.Client{}
	defer client.CloseIdleConnections()
	interval := time.Duration(float64(time.Second) / r.opts.Rate)
	start := time.Now()
	for n := 1; n <= maxEvents; n++ {
		select {
		case <-stop:
			return n - 1, nil
		case <-ctx.Done():
			return n - 1, ctx.Err()
		case <-time.After(time.Until(start.Add(time.Duration(n-1) * interval))):
		}
		if err := r.publishHTTP(ctx, client, phase, n); err != nil {
			return n - 1, err
		}
	}
	return maxEvents, nil
}
