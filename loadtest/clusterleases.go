package loadtest

// This file holds a cluster run's count of lease conflicts: connections refused because
// another live connection held the device's lease, as the servers count them
// (kioskfeed_lease_conflicts_total) and as the tablets see them (4409 closes). Over the
// connect and the fan-out each tablet has one socket, so there must be none; over the
// kill phase they are counted apart (ClusterKill), since a survivor refuses a moved
// tablet while the dead instance's liveness key has not expired (docs/protocol.md §7).

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"time"
)

// count adds up the lease conflicts of the connect and the fan-out: each instance's
// kioskfeed_lease_conflicts_total since its start, and the 4409 closes the tablets saw.
func (cr *clusterRun) count(ctx context.Context) error {
	var errs []error
	for k, in := range cr.inst {
		v, err := scrapeMetric(ctx, in.base+"/metrics", "kioskfeed_lease_conflicts_total")
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", in.name, err))
			continue
		}
		cr.res.PerInstance[k].LeaseConflicts = v - in.conflicts
		cr.res.LeaseConflicts += int(v - in.conflicts)
		in.conflicts = v // the kill phase counts from here
	}
	closes, err := cr.tabletCloses()
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	cr.closes = closes
	cr.res.TabletCloses = map[string]int{}
	for _, byCode := range closes {
		for code, n := range byCode {
			cr.res.TabletCloses[code] += n
		}
	}
	cr.res.Closes4409 = cr.res.TabletCloses["4409"]
	return errors.Join(errs...)
}

// tabletCloses is each worker's tablets' closes so far, by code. Every tablet has
// synced since the start of time, so await_sync answers at once, with the closes.
func (cr *clusterRun) tabletCloses() (map[int]map[string]int, error) {
	reps, err := cr.callAll(func(int) command { return command{Op: "await_sync", Since: 1, Timeout: timeoutMS(time.Minute)} })
	if err != nil {
		return nil, err
	}
	out := make(map[int]map[string]int, len(reps))
	for i, rep := range reps {
		out[i] = maps.Clone(rep.Closes)
	}
	return out, nil
}

// handshakes is an instance's kioskfeed_ws_handshakes_total by outcome.
func handshakes(ctx context.Context, in *instance) map[string]float64 {
	series, _ := scrapeSeries(ctx, in.base+"/metrics", "kioskfeed_ws_handshakes_total")
	out := map[string]float64{}
	for labels, v := range series {
		if o, ok := strings.CutPrefix(labels, `outcome="`); ok {
			out[strings.TrimSuffix(o, `"`)] = v
		}
	}
	return out
}

// killTally counts the kill phase's lease conflicts and handshakes on the survivors,
// and the closes the moved tablets saw.
type killTally struct {
	hs0 []map[string]float64
}

func (cr *clusterRun) startTally(ctx context.Context, survivors []*instance) *killTally {
	t := &killTally{}
	for _, in := range survivors {
		t.hs0 = append(t.hs0, handshakes(ctx, in))
	}
	return t
}

// end fills k's conflicts, handshakes and closes.
func (t *killTally) end(ctx context.Context, cr *clusterRun, survivors []*instance, moved []int, k *ClusterKill) error {
	k.SurvivorHandshakes = map[string]int{}
	var errs []error
	for j, in := range survivors {
		for outcome, v := range handshakes(ctx, in) {
			if d := int(v - t.hs0[j][outcome]); d > 0 {
				k.SurvivorHandshakes[outcome] += d
			}
		}
		v, err := scrapeMetric(ctx, in.base+"/metrics", "kioskfeed_lease_conflicts_total")
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", in.name, err))
			continue
		}
		k.LeaseConflicts += int(v - in.conflicts)
	}
	after, err := cr.tabletCloses()
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	k.Closes = map[string]int{}
	for _, i := range moved {
		for code, n := range after[i] {
			if d := n - cr.closes[i][code]; d > 0 {
				k.Closes[code] += d
			}
		}
	}
	k.Closes4409 = k.Closes["4409"]
	return errors.Join(errs...)
}
