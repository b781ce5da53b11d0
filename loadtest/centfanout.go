package loadtest

import (
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"
)

// PeerResult is what a run measured of a peer server beside kioskfeed: the same
// workers, subscribers, payload and rate, one after the other on the same machine.
type PeerResult struct {
	Server      string `json:"server"` // name and version
	Subscribers int    `json:"subscribers"`
	// The connect storm: every subscriber connected and subscribed, Ramp at a time per
	// worker as the kioskfeed tablets are; the server's CPU over it, per connection.
	ConnectS             float64 `json:"connect_s"`
	ConnectsPerS         float64 `json:"connects_per_s"`
	ConnectServerCPUUs   float64 `json:"connect_server_cpu_us_per_conn"`
	ConnectWorkerCPUUs   float64 `json:"connect_worker_cpu_us_per_conn"` // the load generator's, same window
	RSSBytesPerSub       float64 `json:"rss_bytes_per_sub"`
	FanoutP50Ms          float64 `json:"fanout_p50_ms"`
	FanoutP90Ms          float64 `json:"fanout_p90_ms"`
	FanoutP99Ms          float64 `json:"fanout_p99_ms"`
	FanoutMaxMs          float64 `json:"fanout_max_ms"`
	FanoutWindowS        float64 `json:"fanout_window_s"`
	FanoutServerCPUPct   float64 `json:"fanout_server_cpu_pct"`
	FanoutServerCPUUsDel float64 `json:"fanout_server_cpu_us_per_delivery"`
	FanoutWorkerCPUUsDel float64 `json:"fanout_worker_cpu_us_per_delivery"` // the load generator's, same window
	PublishP50Ms         float64 `json:"publish_p50_ms"`                    // one publish over its HTTP API
	PublishMaxMs         float64 `json:"publish_max_ms"`
	Deliveries           int     `json:"deliveries"`
	Missing              int     `json:"missing"`
	Duplicates           int     `json:"duplicates"`
}

// centChannel is the one channel of the Centrifugo fan-out, the feed of the kioskfeed one.
const centChannel = "lobby"

// centrifugoFanout runs the fan-out through Centrifugo: the pinned server configured
// for our job (centrifugo.go), N subscribers from the same workers, the same payload
// and rate, published through its HTTP API as kioskfeed's events are through ours.
func (r *run) centrifugoFanout(ctx context.Context) (*PeerResult, error) {
	exe, err := CentrifugoBinary(ctx, "", r.logf)
	if err != nil {
		return nil, err
	}
	p, err := startCentrifugo(ctx, exe, r.dir, 100)
	if err != nil {
		return nil, err
	}
	r.track(p.c)
	defer func() { _ = p.stop() }()
	res := &PeerResult{Server: "centrifugo " + CentrifugoVersion, Subscribers: r.opts.Tablets}
	time.Sleep(r.opts.Settle)
	empty, err := readProc(p.c.pid())
	if err != nil {
		return nil, err
	}
	cpu, err := StartCPU(p.c.pid())
	if err != nil {
		return nil, err
	}
	wcpu, err := r.startWorkersCPU()
	if err != nil {
		return nil, err
	}
	start := time.Now()
	reps, err := r.callAll(func(i int) command {
		return command{Op: "cent_connect", WSURL: p.wsURL(), Addr: "127.0.0.1:" + strconv.Itoa(p.port), Origin: p.origin,
			Subject: centChannel, N: r.share(r.opts.Tablets, i), Sources: sources(i, 4), Ramp: 256,
			KeyPEM: p.keyPEM, NamePrefix: fmt.Sprintf("w%d-", i), Timeout: timeoutMS(5 * time.Minute)}
	})
	if err != nil {
		return nil, err
	}
	if failed, first := sumFailed(reps); failed > 0 {
		return nil, fmt.Errorf("centrifugo: %d of %d subscribers failed, first error: %s", failed, r.opts.Tablets, first)
	}
	connect, err := cpu.End()
	if err != nil {
		return nil, err
	}
	res.ConnectS = time.Since(start).Seconds()
	res.ConnectsPerS = float64(r.opts.Tablets) / res.ConnectS
	res.ConnectServerCPUUs = float64(connect.Per(r.opts.Tablets).Nanoseconds()) / 1000
	res.ConnectWorkerCPUUs = wcpu.usPer(r.opts.Tablets)
	time.Sleep(r.opts.Settle)
	full, err := readProc(p.c.pid())
	if err != nil {
		return nil, err
	}
	res.RSSBytesPerSub = float64(full.RSS-empty.RSS) / float64(r.opts.Tablets)
	r.logf("centrifugo: %d subscribers in %.1fs (%.0f/s, %.0f µs of server CPU each), %.0f bytes of RSS each",
		r.opts.Tablets, res.ConnectS, res.ConnectsPerS, res.ConnectServerCPUUs, res.RSSBytesPerSub)

	if _, err := r.callAll(func(int) command { return command{Op: "phase", Target: "nats", Phase: 1, Events: r.opts.Events} }); err != nil {
		return nil, err
	}
	if cpu, err = StartCPU(p.c.pid()); err != nil {
		return nil, err
	}
	if wcpu, err = r.startWorkersCPU(); err != nil {
		return nil, err
	}
	if err := r.pace(ctx, r.opts.Events, func(n int) error {
		return p.publish(ctx, centChannel, payload(r.opts.Payload, 1, n))
	}); err != nil {
		return nil, err
	}
	lat, missing, dups, err := r.collect("nats", groupAll, r.opts.Events)
	if err != nil {
		return nil, err
	}
	span, err := cpu.End()
	if err != nil {
		return nil, err
	}
	pc := percentiles(lat)
	res.FanoutP50Ms, res.FanoutP90Ms, res.FanoutP99Ms, res.FanoutMaxMs = pc[0], pc[1], pc[2], pc[3]
	res.Deliveries, res.Missing, res.Duplicates = len(lat), missing, dups
	res.FanoutWindowS = span.Wall.Seconds()
	res.FanoutServerCPUPct = span.Pct()
	res.FanoutServerCPUUsDel = float64(span.Per(len(lat)).Nanoseconds()) / 1000
	res.FanoutWorkerCPUUsDel = wcpu.usPer(len(lat))
	res.PublishP50Ms, res.PublishMaxMs = r.publishTimes()
	r.logf("centrifugo fan-out: p50 %.1fms p99 %.1fms max %.1fms; %d delivered, %d missing; server %.1f%% of a core (%.1f µs per delivery, the workers %.1f µs)",
		pc[0], pc[2], pc[3], len(lat), missing, res.FanoutServerCPUPct, res.FanoutServerCPUUsDel, res.FanoutWorkerCPUUsDel)
	_, err = r.callAll(func(int) command { return command{Op: "nats_close"} })
	return res, err
}

// centConnect opens cmd.N Centrifugo subscribers on channel cmd.Subject, users
// cmd.NamePrefix plus their number, each with a token signed by cmd.KeyPEM.
func (w *worker) centConnect(ctx context.Context, cmd command) reply {
	key, err := parseECKey(cmd.KeyPEM)
	if err != nil {
		return reply{Err: err.Error()}
	}
	return w.openSubs(ctx, cmd, func(i int) (*natsSub, func(context.Context), error) {
		tok, err := centToken(key, cmd.NamePrefix+strconv.Itoa(i), 24*time.Hour)
		if err != nil {
			return nil, nil, err
		}
		s := &centSub{natsSub: natsSub{src: net.ParseIP(cmd.Sources[i%len(cmd.Sources)]), url: cmd.WSURL, addr: cmd.Addr,
			subject: cmd.Subject, ready: make(chan struct{})}, token: tok, origin: cmd.Origin}
		return &s.natsSub, s.run, nil
	})
}

func parseECKey(p string) (*ecdsa.PrivateKey, error) {
	block, _ := pem.Decode([]byte(p))
	if block == nil {
		return nil, errors.New("cent_connect: no PEM key")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("cent_connect: %w", err)
	}
	ec, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, errors.New("cent_connect: not an EC key")
	}
	return ec, nil
}
