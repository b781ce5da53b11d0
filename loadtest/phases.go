package loadtest

// This file holds the phases of the full run, each measured from outside the server:
// pairing, the connect storm, the idle reading (memory and CPU), the paced fan-out over
// the HTTP API, the restart (reconnect storm), and the same fan-out through
// nats-server's own WebSocket listener; and the paced publishing and per-group
// collection (groupPhase, collect) that the scenarios use too.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

func (r *run) pair(ctx context.Context) error {
	start := time.Now()
	reps, err := r.callAll(func(i int) command {
		return command{Op: "pair", BaseURL: r.base, AdminToken: r.adminToken, Feed: feed, N: r.share(r.opts.Tablets, i), Sources: []string{"127.0.0.1"}, NamePrefix: fmt.Sprintf("load-%d-", i), Timeout: timeoutMS(10 * time.Minute)}
	})
	if err != nil {
		return err
	}
	if failed, first := sumFailed(reps); failed > 0 {
		return fmt.Errorf("pairing: %d of %d tablets failed, first: %s", failed, r.opts.Tablets, first)
	}
	r.res.PairS = time.Since(start).Seconds()
	r.logf("paired %d tablets in %.1fs", r.opts.Tablets, r.res.PairS)
	return nil
}

func (r *run) connect(ctx context.Context) error {
	cpu, err := StartCPU(r.server.pid())
	if err != nil {
		return err
	}
	wcpu, err := r.startWorkersCPU()
	if err != nil {
		return err
	}
	err = r.connectStorm(func(i int) command {
		return command{Op: "connect", WSURL: "ws://127.0.0.1:" + strconv.Itoa(r.port) + "/ws", Addr: "127.0.0.1:" + strconv.Itoa(r.port), Origin: r.base, Sources: sources(i, 4), Ramp: 256, Ack: r.opts.Ack, Timeout: timeoutMS(5 * time.Minute)}
	})
	if err != nil {
		return err
	}
	if span, err := cpu.End(); err == nil {
		r.res.ConnectServerCPUUsPerHandshake = float64(span.Per(r.opts.Tablets).Nanoseconds()) / 1000
	}
	r.res.ConnectWorkerCPUUsPerHandshake = wcpu.usPer(r.opts.Tablets)
	r.logf("%d tablets connected and synced in %.1fs (%.0f handshakes/s)", r.opts.Tablets, r.res.ConnectS, r.res.ConnectHandshakesPerS)
	return nil
}

// connectStorm has every worker connect its tablets with the command cmd(i) gives it,
// fails unless every tablet synced, and records how long the storm took.
func (r *run) connectStorm(cmd func(i int) command) error {
	start := time.Now()
	reps, err := r.callAll(cmd)
	if err != nil {
		return err
	}
	if failed, first := sumFailed(reps); failed > 0 {
		return fmt.Errorf("connect: %d of %d tablets never synced, first error: %s", failed, r.opts.Tablets, first)
	}
	r.res.ConnectS = time.Since(start).Seconds()
	r.res.ConnectHandshakesPerS = float64(r.opts.Tablets) / r.res.ConnectS
	return nil
}

// idle lets the tablets sit connected and measures the server's memory and CPU.
func (r *run) idle(ctx context.Context, pairedRSS int64) error {
	time.Sleep(r.opts.Settle)
	before, err := readProc(r.server.pid())
	if err != nil {
		return err
	}
	cpu, err := StartCPU(r.server.pid())
	if err != nil {
		return err
	}
	r.res.GoroutinesTablets, _ = scrapeMetric(ctx, r.base+"/metrics", "go_goroutines")
	r.res.HeapInuseTablets, _ = scrapeMetric(ctx, r.base+"/metrics", "go_memstats_heap_inuse_bytes")
	r.logf("idle for %s with %d tablets (RSS %.1f MiB)", r.opts.Idle, r.opts.Tablets, float64(before.RSS)/(1<<20))
	// And the idle's last part alone (the last minute, or its second half if shorter):
	// a fleet's first connection has each device's first-seen alert record written,
	// 256 a tick (alerts), so the steady state shows only after that.
	tail := min(time.Minute, r.opts.Idle/2)
	var tailCPU *CPUWindow
	for _, d := range []time.Duration{r.opts.Idle - tail, tail} {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(d):
		}
		if tailCPU == nil {
			if tailCPU, err = StartCPU(r.server.pid()); err != nil {
				return err
			}
		}
	}
	span, err := cpu.End()
	if err != nil {
		return err
	}
	tailSpan, err := tailCPU.End()
	if err != nil {
		return err
	}
	r.res.IdleTailCPUPct, r.res.IdleTailS = tailSpan.Pct(), tailSpan.Wall.Seconds()
	after, err := readProc(r.server.pid())
	if err != nil {
		return err
	}
	r.res.IdleLeaseCPUPct = span.Pct()
	r.res.IdleServerCPUMs = float64(span.CPU.Milliseconds())
	// The reading after the idle period, when the connect storm's garbage has had time
	// to be collected (Go collects at least every 2 minutes, so an idle of 150 s or more
	// gives the steady state); the reading just after the storm is kept beside it.
	r.res.ServerRSSAfterConnectBytes = before.RSS
	r.res.ServerRSSTabletsBytes = after.RSS
	r.res.RSSBytesPerTablet = float64(after.RSS-pairedRSS) / float64(r.opts.Tablets)
	r.logf("idle: %.2f%% of a core (%.2f%% over the last %.0fs); %.0f bytes of RSS per tablet", r.res.IdleLeaseCPUPct, r.res.IdleTailCPUPct, r.res.IdleTailS, r.res.RSSBytesPerTablet)
	return nil
}

// payload is one load event's data: phase, number, send time, and padding to size.
func payload(size, phase, n int) []byte {
	head := fmt.Sprintf(`{"p":%d,"n":%d,"t":%d,"pad":"`, phase, n, time.Now().UnixNano())
	pad := max(size-len(head)-2, 0)
	return []byte(head + strings.Repeat("x", pad) + `"}`)
}

// pace calls publish for events 1..E at the configured rate, open-loop: each publish
// starts on its schedule, whether or not the previous one has answered, so a peer
// whose publish call waits for its fan-out (Centrifugo's HTTP API did: 250-620 ms a
// call at 10,000-18,000 subscribers) is offered the same rate as the others instead of
// slowing the publisher down, which would hide its backlog. At most maxPublishing calls
// are in flight; past that a publish waits for a slot, and the result says how late
// (paced: each publish's duration).
func (r *run) pace(ctx context.Context, events int, publish func(n int) error) error {
	interval := time.Duration(float64(time.Second) / r.opts.Rate)
	start := time.Now()
	r.paced = r.paced[:0]
	var (
		mu    sync.Mutex
		first error
		wg    sync.WaitGroup
		slots = make(chan struct{}, maxPublishing)
	)
	failed := func() error {
		mu.Lock()
		defer mu.Unlock()
		return first
	}
	for n := 1; n <= events && failed() == nil; n++ {
		if d := time.Until(start.Add(time.Duration(n-1) * interval)); d > 0 {
			select {
			case <-ctx.Done():
				wg.Wait()
				return ctx.Err()
			case <-time.After(d):
			}
		}
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return ctx.Err()
		}
		wg.Add(1)
		go func(n int) {
			defer wg.Done()
			defer func() { <-slots }()
			began := time.Now()
			err := publish(n)
			mu.Lock()
			defer mu.Unlock()
			if err != nil && first == nil {
				first = err
			}
			r.paced = append(r.paced, time.Since(began))
		}(n)
	}
	wg.Wait()
	return failed()
}

// maxPublishing bounds the publishes pace has in flight at once.
const maxPublishing = 16

func (r *run) publishHTTP(ctx context.Context, client *http.Client, phase, n int) error {
	data := payload(r.opts.Payload, phase, n)
	body := fmt.Sprintf(`{"id":"lt-%d-%d","kind":"state","data":%s}`, phase, n, data)
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, r.base+"/api/feeds/"+feed+"/events", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+r.producer)
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("publish: HTTP %d %s", resp.StatusCode, raw)
	}
	return nil
}

// groupPhase publishes events 1..n of a phase over the HTTP API at the set rate (every
// tablet expects them) and collects what group received (groupAll: every tablet).
func (r *run) groupPhase(ctx context.Context, phase, n int, group string) (lat []int32, missing, dups int, err error) {
	if _, err := r.callAll(func(int) command { return command{Op: "phase", Phase: phase, Events: n} }); err != nil {
		return nil, 0, 0, err
	}
	client := &http.Client{}
	defer client.CloseIdleConnections()
	if err := r.pace(ctx, n, func(i int) error { return r.publishHTTP(ctx, client, phase, i) }); err != nil {
		return nil, 0, 0, err
	}
	return r.collect("tablets", group, n)
}

// collect waits for the workers to collect events 1..n of the phase: target "tablets"
// (of group) or "nats" (the NATS subscribers). It returns every latency and what was
// missing or repeated.
func (r *run) collect(target, group string, n int) ([]int32, int, int, error) {
	reps, err := r.callAll(func(int) command {
		return command{Op: "collect", Target: target, Group: group, Events: n, Timeout: timeoutMS(time.Minute)}
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
		who := target
		if group != groupAll {
			who = group + " tablets"
		}
		r.logf("%d %s missed events; the first: %s", failed, who, first)
	}
	return lat, missing, dups, nil
}

func (r *run) fanout(ctx context.Context) error {
	r.logf("fan-out: %d events at %g/s to %d tablets", r.opts.Events, r.opts.Rate, r.opts.Tablets)
	// The publish window: from just before the first publish until every tablet has
	// reported every event. The server's CPU and what it stored in JetStream over it.
	seqs0, _ := scrapeSeries(ctx, r.base+"/metrics", "kioskfeed_jetstream_last_seq")
	cpu, err := StartCPU(r.server.pid())
	if err != nil {
		return err
	}
	wcpu, err := r.startWorkersCPU()
	if err != nil {
		return err
	}
	lat, missing, dups, err := r.groupPhase(ctx, 1, r.opts.Events, groupAll)
	if err != nil {
		return err
	}
	span, err := cpu.End()
	if err != nil {
		return err
	}
	r.res.FanoutWorkerCPUUsPerDelivery = wcpu.usPer(len(lat))
	r.res.FanoutPublishP50Ms, r.res.FanoutPublishMaxMs = r.publishTimes()
	seqs1, _ := scrapeSeries(ctx, r.base+"/metrics", "kioskfeed_jetstream_last_seq")
	p := percentiles(lat)
	r.res.FanoutP50Ms, r.res.FanoutP90Ms, r.res.FanoutP99Ms, r.res.FanoutMaxMs = p[0], p[1], p[2], p[3]
	r.res.Deliveries, r.res.Missing, r.res.Duplicates = len(lat), missing, dups
	r.res.FanoutWindowS = span.Wall.Seconds()
	r.res.FanoutServerCPUPct = span.Pct()
	r.res.FanoutServerCPUUsPerDelivery = float64(span.Per(len(lat)).Nanoseconds()) / 1000
	r.res.FanoutJSWrites = streamDeltas(seqs0, seqs1)
	total := 0.0
	for _, n := range r.res.FanoutJSWrites {
		total += n
	}
	r.res.FanoutJSWritesPerS = total / span.Wall.Seconds()
	r.res.FanoutJSShownWritesPerS = r.res.FanoutJSWrites[shownStream] / span.Wall.Seconds()
	r.logf("fan-out: p50 %.1fms p99 %.1fms max %.1fms; %d delivered, %d missing, %d repeated; a publish took %.1fms (p50), %.1fms at most", p[0], p[2], p[3], len(lat), missing, dups, r.res.FanoutPublishP50Ms, r.res.FanoutPublishMaxMs)
	r.logf("fan-out: server %.1f%% of a core over %.1fs (%.1f µs per delivery, the workers %.1f µs); JetStream %.1f writes/s (%.1f/s shown records) %v",
		r.res.FanoutServerCPUPct, r.res.FanoutWindowS, r.res.FanoutServerCPUUsPerDelivery, r.res.FanoutWorkerCPUUsPerDelivery, r.res.FanoutJSWritesPerS, r.res.FanoutJSShownWritesPerS, r.res.FanoutJSWrites)
	return nil
}

// shownStream is the stream behind the bucket of shown records (bridge.BucketShown).
const shownStream = "KV_kioskfeed_shown"

// streamDeltas are the messages each stream stored between two readings of
// kioskfeed_jetstream_last_seq (keyed by its labels, `stream="NAME"`), by stream name;
// streams that stored nothing are left out.
func streamDeltas(before, after map[string]float64) map[string]float64 {
	out := map[string]float64{}
	for labels, v := range after {
		name, ok := strings.CutPrefix(labels, `stream="`)
		if !ok || !strings.HasSuffix(name, `"`) {
			continue
		}
		if d := v - before[labels]; d > 0 {
			out[strings.TrimSuffix(name, `"`)] = d
		}
	}
	return out
}

// restart stops the server (drain, 1012) and starts it again, and measures how long
// until every tablet is back and synced.
func (r *run) restart(ctx context.Context) error {
	begin := time.Now()
	r.logf("restart: stopping the server with %d tablets connected", r.opts.Tablets)
	if err := r.server.stop(30 * time.Second); err != nil {
		return err
	}
	exited := time.Now()
	if err := r.startServer(ctx, "server-3"); err != nil {
		return err
	}
	ready := time.Now()
	reps, err := r.callAll(func(int) command {
		return command{Op: "await_sync", Since: begin.UnixNano(), Timeout: timeoutMS(2 * time.Minute)}
	})
	if err != nil {
		return err
	}
	if failed, first := sumFailed(reps); failed > 0 {
		return fmt.Errorf("restart: %d tablets not back within 2 minutes, last error: %s", failed, first)
	}
	var first, last, retryFirst, retryLast, backFirst, backLast int64
	r.res.RestartCloses = map[string]int{}
	for _, rep := range reps {
		first, last = spread(first, last, rep.First, 0)
		first, last = spread(first, last, rep.Last, 0)
		retryFirst, retryLast = spread(retryFirst, retryLast, rep.RetryFirst, 0)
		retryFirst, retryLast = spread(retryFirst, retryLast, rep.RetryLast, 0)
		backFirst, backLast = spread(backFirst, backLast, rep.BackFirst, 0)
		backFirst, backLast = spread(backFirst, backLast, rep.BackLast, 0)
		for k, v := range rep.Closes {
			r.res.RestartCloses[k] += v
		}
	}
	from := func(ns int64) float64 {
		if ns == 0 {
			return 0
		}
		return time.Duration(ns - begin.UnixNano()).Seconds()
	}
	r.res.ReconnectAllS = from(last)
	rs := &RestartResult{
		DrainS: exited.Sub(begin).Seconds(), StartS: ready.Sub(exited).Seconds(), ReadyS: ready.Sub(begin).Seconds(),
		JitterFirstS: from(retryFirst), JitterLastS: from(retryLast), JitterS: time.Duration(retryLast - retryFirst).Seconds(),
		BackFirstS: from(backFirst), BackLastS: from(backLast),
		SyncedFirstS: from(first), HandshakesS: time.Duration(last - first).Seconds(),
	}
	// The rate the server kept up while the tablets came back (the PWA spreads them
	// over 2 s after a 1012, so this is not the server's ceiling: connect_s shows that).
	if rs.HandshakesS > 0 {
		rs.HandshakesPerS = float64(r.opts.Tablets) / rs.HandshakesS
		r.res.HandshakesPerS = rs.HandshakesPerS
	}
	r.res.Restart = rs
	r.logf("restart: all %d back and synced %.2fs after the stop began: drain %.2fs, start %.2fs (ready at %.2fs); first attempts after the 1012 at %.2f–%.2fs (%.2fs window), the ones that came back at %.2f–%.2fs; handshakes %.2fs (synced at %.2f–%.2fs, %.0f/s)",
		r.opts.Tablets, r.res.ReconnectAllS, rs.DrainS, rs.StartS, rs.ReadyS, rs.JitterFirstS, rs.JitterLastS, rs.JitterS,
		rs.BackFirstS, rs.BackLastS, rs.HandshakesS, rs.SyncedFirstS, r.res.ReconnectAllS, rs.HandshakesPerS)
	// And the feed still reaches every one of them.
	_, missing, dups, err := r.groupPhase(ctx, 2, 1, groupAll)
	if err != nil {
		return err
	}
	r.res.AfterRestartMissing = missing
	r.res.Duplicates += dups
	return nil
}

// natsFanout runs the same fan-out through nats-server's own WebSocket listener: N raw
// subscribers on one subject, the same payload and rate, published over NATS.
func (r *run) natsFanout(ctx context.Context) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	wsPort, err := freePort()
	if err != nil {
		return err
	}
	c, err := startChild("nats-server", r.opts.Exe, []string{"loadtest", "nats-server", "--port", strconv.Itoa(port), "--ws-port", strconv.Itoa(wsPort)}, nil, filepath.Join(r.dir, "nats-server.log"), nil)
	if err != nil {
		return err
	}
	r.track(c)
	defer func() { _ = c.stop(10 * time.Second) }()
	natsURL := "nats://127.0.0.1:" + strconv.Itoa(port)
	var nc *nats.Conn
	for start := time.Now(); ; {
		nc, err = nats.Connect(natsURL, nats.Name("loadtest-publisher"))
		if err == nil {
			break
		}
		if exit := c.exited(); exit != nil || time.Since(start) > 30*time.Second {
			return fmt.Errorf("nats-server: %w", errors.Join(err, exit))
		}
		time.Sleep(50 * time.Millisecond)
	}
	defer nc.Close()
	time.Sleep(r.opts.Settle)
	empty, err := readProc(c.pid())
	if err != nil {
		return err
	}
	const subject = "load.fanout"
	reps, err := r.callAll(func(i int) command {
		return command{Op: "nats_connect", WSURL: "ws://127.0.0.1:" + strconv.Itoa(wsPort), Addr: "127.0.0.1:" + strconv.Itoa(wsPort), Subject: subject, N: r.share(r.opts.Tablets, i), Sources: sources(i, 4), Ramp: 256, Timeout: timeoutMS(5 * time.Minute)}
	})
	if err != nil {
		return err
	}
	if failed, first := sumFailed(reps); failed > 0 {
		return fmt.Errorf("nats-server WebSocket: %d of %d subscribers failed, first error: %s", failed, r.opts.Tablets, first)
	}
	time.Sleep(r.opts.Settle)
	full, err := readProc(c.pid())
	if err != nil {
		return err
	}
	r.res.NATSWSRSSBytesPerSub = float64(full.RSS-empty.RSS) / float64(r.opts.Tablets)
	r.logf("nats-server ws: %d subscribers, %.0f bytes of RSS each", r.opts.Tablets, r.res.NATSWSRSSBytesPerSub)
	if _, err := r.callAll(func(int) command { return command{Op: "phase", Target: "nats", Phase: 1, Events: r.opts.Events} }); err != nil {
		return err
	}
	cpu, err := StartCPU(c.pid())
	if err != nil {
		return err
	}
	wcpu, err := r.startWorkersCPU()
	if err != nil {
		return err
	}
	if err := r.pace(ctx, r.opts.Events, func(n int) error {
		return nc.Publish(subject, payload(r.opts.Payload, 1, n))
	}); err != nil {
		return err
	}
	lat, missing, dups, err := r.collect("nats", groupAll, r.opts.Events)
	if err != nil {
		return err
	}
	if span, err := cpu.End(); err == nil {
		r.res.NATSWSServerCPUUsPerDelivery = float64(span.Per(len(lat)).Nanoseconds()) / 1000
	}
	r.res.NATSWSWorkerCPUUsPerDelivery = wcpu.usPer(len(lat))
	p := percentiles(lat)
	r.res.NATSWSFanoutP50Ms, r.res.NATSWSFanoutP90Ms, r.res.NATSWSFanoutP99Ms, r.res.NATSWSFanoutMaxMs = p[0], p[1], p[2], p[3]
	r.res.NATSDeliveries, r.res.NATSMissing, r.res.NATSDuplicates = len(lat), missing, dups
	r.logf("nats-server ws fan-out: p50 %.1fms p99 %.1fms max %.1fms; %d delivered, %d missing", p[0], p[2], p[3], len(lat), missing)
	_, err = r.callAll(func(int) command { return command{Op: "nats_close"} })
	return err
}
