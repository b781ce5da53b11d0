package loadtest

// This file holds a cluster run's kill phase: with events flowing, the last instance is
// killed with SIGKILL (no drain, no close frames), its tablets fall over to the
// survivors as behind a load balancer, and the phase measures the time from the kill
// until every one of them is synced on a survivor, the survivors' handshakes per second
// and CPU each, and that no tablet missed or repeated an event across the move. It is
// skipped, and says why, when the survivors could not hold the moved sockets under the
// open-files limit.

import (
	"context"
	"fmt"
	"time"

	"golang.org/x/sync/errgroup"
)

const (
	// killPhase is the phase number of the kill phase's events.
	killPhase = 3
	// killMaxEvents bounds the kill phase's events: the server's default catchup_limit
	// (200) less a margin.
	killMaxEvents = 150
)

// killSkip says why the kill phase cannot run, or "".
func (cr *clusterRun) killSkip() string {
	n := len(cr.inst)
	switch {
	case n < 2:
		return "one instance: there is no survivor to move its tablets to"
	case cr.opts.NoKill:
		return "not asked for (kill off)"
	}
	victim := cr.inst[n-1]
	need := 0
	for _, in := range cr.inst[:n-1] {
		need = max(need, in.tablets+(victim.tablets+n-2)/(n-1))
	}
	if need+fileMargin > cr.limit {
		return fmt.Sprintf("survivors would need %d sockets each (%d files with the margin), the open-files limit is %d", need, need+fileMargin, cr.limit)
	}
	return ""
}

// callSome is callAll for some workers only.
func (cr *clusterRun) callSome(workers []int, cmd func(i int) command) (map[int]reply, error) {
	reps := make([]reply, len(workers))
	var g errgroup.Group
	for j, i := range workers {
		g.Go(func() error {
			rep, err := cr.workers[i].call(cmd(i))
			reps[j] = rep
			return err
		})
	}
	err := g.Wait()
	out := make(map[int]reply, len(workers))
	for j, i := range workers {
		out[i] = reps[j]
	}
	return out, err
}

func (cr *clusterRun) kill(ctx context.Context) error {
	if why := cr.killSkip(); why != "" {
		cr.res.KillSkipped = why
		cr.logf("kill phase skipped: %s", why)
		return nil
	}
	n := len(cr.inst)
	victim, survivors := cr.inst[n-1], cr.inst[:n-1]
	k := &ClusterKill{Instance: victim.name, Tablets: victim.tablets}
	cr.res.Kill = k
	// Events flow through the kill and the move at the run's rate, killMaxEvents at
	// most: a moved tablet then catches up by replay, not with a reset and the state
	// (catchup_limit, default 200: docs/protocol.md §5), so every one of them is owed.
	maxEvents := killMaxEvents
	if _, err := cr.callAll(func(int) command { return command{Op: "phase", Phase: killPhase, Events: maxEvents} }); err != nil {
		return err
	}
	interval := time.Duration(float64(time.Second) / cr.opts.Rate)
	stop := make(chan struct{})
	type published struct {
		n   int
		err error
	}
	pub := make(chan published, 1)
	go func() {
		sent, err := cr.publishUntil(ctx, killPhase, maxEvents, stop)
		pub <- published{sent, err}
	}()
	stopped := false
	halt := func() (int, error) {
		if !stopped {
			close(stop)
			stopped = true
		}
		p := <-pub
		return p.n, p.err
	}
	defer func() {
		if !stopped {
			_, _ = halt()
		}
	}()
	// Two events before the kill, so the move begins mid-stream.
	if err := cr.sleep(ctx, 2*interval); err != nil {
		return err
	}
	tally := cr.startTally(ctx, survivors)
	cpus := make([]*CPUWindow, len(survivors))
	for j, in := range survivors {
		var err error
		if cpus[j], err = StartCPU(in.c.pid()); err != nil {
			return err
		}
	}
	cr.logf("kill: SIGKILL %s with its %d tablets connected, events flowing", victim.name, victim.tablets)
	killAt := time.Now()
	victim.c.kill()
	victim.killed = true
	reps, err := cr.callSome(victim.workers, func(int) command {
		return command{Op: "await_sync", Since: killAt.UnixNano(), Timeout: timeoutMS(3 * time.Minute)}
	})
	if err != nil {
		return err
	}
	var first, last int64
	for _, rep := range reps {
		k.Unsynced += rep.Failed
		if rep.FirstErr != "" && k.FirstError == "" {
			k.FirstError = rep.FirstErr
		}
		if rep.Last > 0 {
			last = max(last, rep.Last)
			if first == 0 || rep.First < first {
				first = rep.First
			}
		}
	}
	if k.Unsynced > 0 {
		return fmt.Errorf("kill: %d of %d tablets of %s not synced on a survivor within 3 minutes, first error: %s", k.Unsynced, victim.tablets, victim.name, k.FirstError)
	}
	k.MovedAllS = time.Duration(last - killAt.UnixNano()).Seconds()
	k.FirstSyncedS = time.Duration(first - killAt.UnixNano()).Seconds()
	if span := time.Duration(last - first).Seconds(); span > 0 {
		k.HandshakesPerS = float64(victim.tablets) / span
	}
	for _, w := range cpus {
		if span, err := w.End(); err == nil {
			k.SurvivorCPUPct += span.Pct()
		}
	}
	cr.logf("kill: all %d tablets of %s synced on the survivors %.2fs after the kill (first after %.2fs; %.0f handshakes/s)", victim.tablets, victim.name, k.MovedAllS, k.FirstSyncedS, k.HandshakesPerS)
	k.SurvivorConnections = cr.survivorConnections(ctx, survivors)
	// Two more events after the move, then the check that every tablet has every event
	// of the phase, once and in order.
	if err := cr.sleep(ctx, 2*interval); err != nil {
		return err
	}
	sent, err := halt()
	if err != nil {
		return fmt.Errorf("kill: publishing: %w", err)
	}
	k.Events = sent
	creps, err := cr.callAll(func(int) command {
		return command{Op: "collect", Target: "tablets", Events: sent, Timeout: timeoutMS(time.Minute)}
	})
	if err != nil {
		return err
	}
	moved := map[int]bool{}
	for _, i := range victim.workers {
		moved[i] = true
	}
	var stayed []int32
	for i, rep := range creps {
		if moved[i] {
			k.MovedMissing += rep.Missing
			k.MovedDuplicates += rep.Duplicates
			continue
		}
		stayed = append(stayed, rep.Latencies...)
		k.StayedMissing += rep.Missing
		k.StayedDuplicates += rep.Duplicates
	}
	if err := tally.end(ctx, cr, survivors, victim.workers, k); err != nil {
		return err
	}
	p := percentiles(stayed)
	k.StayedFanoutP50Ms, k.StayedFanoutP99Ms = p[0], p[2]
	if failed, first := sumFailed(creps); failed > 0 {
		cr.logf("kill: %d tablets missed events; the first: %s", failed, first)
	}
	cr.logf("kill: %d events across the move; moved tablets missed %d, repeated %d; the others missed %d, repeated %d (p99 %.1fms); %d sockets on the survivors",
		sent, k.MovedMissing, k.MovedDuplicates, k.StayedMissing, k.StayedDuplicates, k.StayedFanoutP99Ms, k.SurvivorConnections)
	cr.logf("kill: the survivors' handshakes %v, lease conflicts %d; the moved tablets' closes %v", k.SurvivorHandshakes, k.LeaseConflicts, k.Closes)
	return nil
}

// survivorConnections is the survivors' kioskfeed_ws_connections summed, read until it
// is every tablet or 10 s pass (a socket's end is counted as it is noticed).
func (cr *clusterRun) survivorConnections(ctx context.Context, survivors []*instance) int {
	deadline := time.Now().Add(10 * time.Second)
	for {
		sum := 0
		for _, in := range survivors {
			v, _ := scrapeMetric(ctx, in.base+"/metrics", "kioskfeed_ws_connections")
			sum += int(v)
		}
		if sum == cr.opts.Tablets || time.Now().After(deadline) || ctx.Err() != nil {
			return sum
		}
		time.Sleep(100 * time.Millisecond)
	}
}
