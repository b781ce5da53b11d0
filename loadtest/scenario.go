package loadtest

// This file holds what the scenarios share: their set-up and tear-down (pair, connect,
// mark the affected share), the heartbeat watch, the sums over the groups' close codes
// and heartbeat gaps, and publishing until told to stop. The Wi-Fi outage is in
// outage.go, the far-behind reconnect storm in storm.go.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
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

// errScenario is a scenario whose tablets did not fare as they must.
var errScenario = errors.New("scenario failed")

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
