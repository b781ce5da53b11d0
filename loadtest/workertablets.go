package loadtest

// This file holds a worker's management of its tablets and NATS subscribers: pairing
// them, starting and stopping their loops, marking the scenario's share, and waiting
// for and collecting what they received (deliveries, syncs, heartbeat gaps, closes).

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/kioskfeed/kioskfeed/client"
	"golang.org/x/sync/errgroup"
)

// DPoP proof (POST /api/pair).
func (w *worker) pair(ctx context.Context, cmd command) reply {
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	defer hc.CloseIdleConnections()
	tablets := make([]*tablet, cmd.N)
	var failed atomic.Int64
	var firstErr atomic.Value
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(32)
	for i := range cmd.N {
		g.Go(func() error {
			t, err := pairOne(ctx, hc, cmd, i)
			if err != nil {
				failed.Add(1)
				firstErr.CompareAndSwap(nil, err.Error())
				return nil
			}
			tablets[i] = t
			return nil
		})
	}
	_ = g.Wait()
	for _, t := range tablets {
		if t != nil {
			w.tablets = append(w.tablets, t)
		}
	}
	rep := reply{N: len(w.tablets), Failed: int(failed.Load())}
	if e, ok := firstErr.Load().(string); ok {
		rep.FirstErr = e
	}
	return rep
}

func pairOne(ctx context.Context, hc *http.Client, cmd command, i int) (*tablet, error) {
	body, _ := json.Marshal(map[string]string{"ttl": "10m"})
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, cmd.BaseURL+"/api/admin/feeds/"+cmd.Feed+"/pins", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+cmd.AdminToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		return nil, fmt.Errorf("issue PIN: HTTP %d %s", resp.StatusCode, raw)
	}
	var pin struct {
		PIN string `json:"pin"`
	}
	if err := json.Unmarshal(raw, &pin); err != nil {
		return nil, fmt.Errorf("issue PIN: %w", err)
	}
	key, err := client.NewKey()
	if err != nil {
		return nil, err
	}
	dev := client.NewDevice(cmd.BaseURL, key)
	dev.HTTP, dev.UserAgent = hc, userAgent
	if err := dev.PairWithPIN(ctx, cmd.Feed, pin.PIN, cmd.NamePrefix+strconv.Itoa(i)); err != nil {
		return nil, fmt.Errorf("pair: %w", err)
	}
	return &tablet{
		dev:         dev,
		src:         net.ParseIP(cmd.Sources[i%len(cmd.Sources)]),
		firstSynced: make(chan struct{}),
	}, nil
}

// group is the worker's tablets of one group (groupAll, groupAffected, groupHealthy),
// less those forgotten (4403).
func (w *worker) group(g string) []*tablet {
	var out []*tablet
	for _, t := range w.tablets {
		if t.forgotten.Load() || (g == groupAffected && !t.affected) || (g == groupHealthy && t.affected) {
			continue
		}
		out = append(out, t)
	}
	return out
}

// mark makes share of the worker's tablets the affected ones, spread evenly over them
// (and so over the source addresses): tablet j is affected when ⌊(j+1)·share⌋ passes
// an integer.
func (w *worker) mark(share float64) reply {
	rep := reply{}
	for j, t := range w.tablets {
		t.affected = int(float64(j+1)*share) > int(float64(j)*share)
		rep.N += btoi(t.affected)
	}
	return rep
}

// startLoop runs t's connection loop until the worker disconnects or t is told to leave.
func (w *worker) startLoop(t *tablet) {
	ctx, cancel := context.WithCancel(w.tctx)
	t.cancel, t.done = cancel, make(chan struct{})
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		defer close(t.done)
		t.loop(ctx)
	}()
}

// comeBack starts the affected tablets' loops again, all at once (cmd.Ramp in flight),
// each with the since and epoch it had when it left, and the catch-up check on.
func (w *worker) comeBack(cmd command) reply {
	group := w.group(groupAffected)
	cfg := *w.cfg
	cfg.gate = make(chan struct{}, max(cmd.Ramp, 1))
	for _, t := range group {
		t.cfg = &cfg
		t.startCheck()
		w.startLoop(t)
	}
	return reply{N: len(group)}
}

// gaps ends the heartbeat watch and reports its gaps, and which tablets' sockets ended
// since it began.
func (w *worker) gaps(cmd command) reply {
	now := time.Now()
	group := w.group(cmd.Group)
	rep := reply{N: len(group), Closes: map[string]int{}}
	for _, t := range group {
		rep.Gaps = append(rep.Gaps, t.unwatch(now)...)
		if t.ends.Load() > t.endsMark {
			rep.Dropped++
			if rep.FirstErr == "" {
				rep.FirstErr = t.describe()
			}
		}
	}
	return rep
}

// connect starts every tablet's connection loop and waits until each has synced once.
func (w *worker) connect(ctx context.Context, cmd command) reply {
	cfg := &connectConfig{addr: cmd.Addr, addrs: cmd.Addrs, origin: cmd.Origin, ack: cmd.Ack, gate: make(chan struct{}, max(cmd.Ramp, 1))}
	tctx, cancel := context.WithCancel(w.ctx)
	w.tctx, w.cancelT, w.cfg = tctx, cancel, cfg
	for i, t := range w.tablets {
		t.cfg = cfg
		if len(cmd.Sources) > 0 { // spread over the addresses, as the NATS subscribers are
			t.src = net.ParseIP(cmd.Sources[i%len(cmd.Sources)])
		}
		w.startLoop(t)
	}
	rep := reply{N: len(w.tablets)}
	for _, t := range w.tablets {
		select {
		case <-t.firstSynced:
		case <-ctx.Done():
			rep.Failed++
			if e, ok := t.lastErr.Load().(string); ok && rep.FirstErr == "" {
				rep.FirstErr = e
			}
		}
	}
	rep.Closes = w.closeCounts()
	for _, t := range w.tablets {
		rep.Welcomes += t.welcomes.Load()
	}
	return rep
}

func (w *worker) closeCounts() map[string]int { return closeCounts(w.tablets) }

// closeCounts sums how the tablets' sockets ended so far, by close code.
func closeCounts(tablets []*tablet) map[string]int {
	out := map[string]int{}
	for _, t := range tablets {
		t.closes.Range(func(k, v any) bool {
			out[strconv.Itoa(k.(int))] += int(v.(*atomic.Int64).Load())
			return true
		})
	}
	return out
}

// natsConnect opens cmd.N raw NATS WebSocket subscribers on cmd.Subject.
func (w *worker) natsConnect(ctx context.Context, cmd command) reply {
	return w.openSubs(ctx, cmd, func(i int) (*natsSub, func(context.Context), error) {
		s := &natsSub{src: net.ParseIP(cmd.Sources[i%len(cmd.Sources)]), url: cmd.WSURL, addr: cmd.Addr, subject: cmd.Subject, ready: make(chan struct{})}
		return s, s.run, nil
	})
}

// openSubs starts cmd.N peer subscribers made by newSub (what it records, and the loop
// that runs it), cmd.Ramp connecting at a time, and waits until each is ready or failed.
func (w *worker) openSubs(ctx context.Context, cmd command, newSub func(i int) (*natsSub, func(context.Context), error)) reply {
	nctx, cancel := context.WithCancel(w.ctx)
	w.cancelN = cancel
	gate := make(chan struct{}, max(cmd.Ramp, 1))
	for i := range cmd.N {
		s, run, err := newSub(i)
		if err != nil {
			return reply{Err: err.Error()}
		}
		w.subs = append(w.subs, s)
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			select {
			case gate <- struct{}{}:
			case <-nctx.Done():
				return
			}
			go func() {
				select {
				case <-s.ready:
				case <-nctx.Done():
				}
				<-gate
			}()
			run(nctx)
		}()
	}
	rep := reply{N: cmd.N}
	for _, s := range w.subs {
		select {
		case <-s.ready:
		case <-ctx.Done():
		}
		s.mu.Lock()
		err := s.err
		s.mu.Unlock()
		if err != nil || ctx.Err() != nil {
			rep.Failed++
			if err != nil && rep.FirstErr == "" {
				rep.FirstErr = err.Error()
			}
		}
	}
	return rep
}

// collect waits until every tablet (or subscriber) has received every event of the
// phase, or the timeout, and returns all latencies and what was missing or repeated.
func (w *worker) collect(ctx context.Context, cmd command) reply {
	type recorder interface {
		snapshot() (got []int32, received, dups int)
	}
	var all []recorder
	if cmd.Target == "nats" {
		for _, s := range w.subs {
			all = append(all, s)
		}
	} else {
		for _, t := range w.group(cmd.Group) {
			all = append(all, t)
		}
	}
	complete := func() bool {
		for _, r := range all {
			if _, received, _ := r.snapshot(); received < cmd.Events {
				return false
			}
		}
		return true
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !complete() && ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
	}
	rep := reply{N: len(all)}
	for _, r := range all {
		got, _, dups := r.snapshot()
		got = got[:min(len(got), cmd.Events)] // a phase may have been set up for more than were sent
		rep.Duplicates += dups
		missed := 0
		for _, us := range got {
			if us < 0 {
				missed++
				continue
			}
			rep.Latencies = append(rep.Latencies, us)
		}
		rep.Missing += missed
		if missed > 0 {
			rep.Failed++ // tablets (or subscribers) that missed any
			if t, ok := r.(*tablet); ok && rep.FirstErr == "" {
				rep.FirstErr = t.describe()
			}
		}
	}
	return rep
}

// awaitSync waits until every tablet has synced after cmd.Since (a restart began) and
// reports the first and last of those moments.
func (w *worker) awaitSync(ctx context.Context, cmd command) reply {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	live := w.group(cmd.Group)
	for {
		pending := 0
		for _, t := range live {
			if t.syncedAt.Load() <= cmd.Since {
				pending++
			}
		}
		if pending == 0 || ctx.Err() != nil {
			break
		}
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
	}
	rep := reply{N: len(live), Closes: w.closeCounts()}
	var times []int64
	for _, t := range live {
		rep.Welcomes += t.welcomes.Load()
		if at := t.syncedAt.Load(); at > cmd.Since {
			times = append(times, at)
		} else {
			rep.Failed++
			if e, ok := t.lastErr.Load().(string); ok && rep.FirstErr == "" {
				rep.FirstErr = e
			}
		}
	}
	if len(times) > 0 {
		sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
		rep.First, rep.Last = times[0], times[len(times)-1]
	}
	for _, t := range live {
		rep.RetryFirst, rep.RetryLast = spread(rep.RetryFirst, rep.RetryLast, t.retryAt.Load(), cmd.Since)
		rep.BackFirst, rep.BackLast = spread(rep.BackFirst, rep.BackLast, t.backAt.Load(), cmd.Since)
	}
	return rep
}

// spread widens [first, last] (zero: empty) to hold at, if at is after since.
func spread(first, last, at, since int64) (int64, int64) {
	if at <= since {
		return first, last
	}
	if first == 0 || at < first {
		first = at
	}
	return first, max(last, at)
}
