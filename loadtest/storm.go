package loadtest

// This file holds the far-behind reconnect storm scenario: its figures (StormResult) and
// verdict, the run itself (a share of the tablets leave, fall Behind events behind, and
// come back at once while live events flow), and the waits and bursts it needs.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"
)

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
	if _, missing, _, err := r.collect("tablets", groupHealthy, s.Behind); err != nil {
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
	lat, missing, dups, err := r.collect("tablets", groupHealthy, live)
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
