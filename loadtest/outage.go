package loadtest

// This file holds the Wi-Fi outage scenario: its figures (OutageResult) and verdict, the
// run itself (before, then a share of the tablets dead while events flow), and the wait
// until the server has dropped the dead links.

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"
)

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
	lat, missing, dups, err := r.collect("tablets", groupHealthy, published)
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
