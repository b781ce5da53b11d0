package loadtest

// This file holds a worker process's side of the protocol with the load tool: the
// command and reply lines, the worker's state, its command loop (RunWorker) and the
// dispatch of each op. What the ops do to the tablets is in workertablets.go.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// command is one request from the load tool to a worker process, one JSON line on the
// worker's stdin; the worker answers each with one reply line on its stdout.
type command struct {
	Op string `json:"op"`

	// pair
	BaseURL    string   `json:"base_url,omitempty"`
	AdminToken string   `json:"admin_token,omitempty"`
	Feed       string   `json:"feed,omitempty"`
	N          int      `json:"n,omitempty"`
	Sources    []string `json:"sources,omitempty"` // also connect and nats_connect: the addresses to dial from
	NamePrefix string   `json:"name_prefix,omitempty"`

	// connect (kioskfeed) and nats_connect
	WSURL  string `json:"ws_url,omitempty"`
	Addr   string `json:"addr,omitempty"`
	Origin string `json:"origin,omitempty"`
	Ramp   int    `json:"ramp,omitempty"` // first connects in flight at once
	Ack    bool   `json:"ack,omitempty"`  // acknowledge events with shown, at most once a second

	// connect in a cluster run: every instance's address, the worker's own first, to
	// fall over to (clustertablet.go)
	Addrs []string `json:"addrs,omitempty"`

	Subject string `json:"subject,omitempty"`
	// cent_connect: the key that signs the subscribers' connection tokens (PKCS#8 PEM);
	// the users are NamePrefix plus a number.
	KeyPEM string `json:"key_pem,omitempty"`

	// phase, collect, await_sync
	Target  string `json:"target,omitempty"` // "tablets" or "nats"
	Phase   int    `json:"phase,omitempty"`
	Events  int    `json:"events,omitempty"`
	Since   int64  `json:"since,omitempty"` // unix ns
	Timeout int64  `json:"timeout_ms,omitempty"`

	// Scenarios. mark sets which tablets are affected (Share of them, spread evenly);
	// outage kills the affected, leave ends their loops, return starts them again;
	// watch and gaps measure heartbeats; check reports the catch-up check. Group picks
	// the tablets of phase, collect, await_sync, watch, gaps and check.
	Share float64 `json:"share,omitempty"`
	Group string  `json:"group,omitempty"` // "" (all), "affected" or "healthy"
}

// The groups of a command.
const (
	groupAll      = ""
	groupAffected = "affected"
	groupHealthy  = "healthy"
)

// reply is a worker's answer. Latencies are µs, one per delivered event.
type reply struct {
	Op         string         `json:"op"`
	Err        string         `json:"error,omitempty"`
	N          int            `json:"n"`
	Failed     int            `json:"failed,omitempty"`
	FirstErr   string         `json:"first_error,omitempty"`
	Latencies  []int32        `json:"latencies,omitempty"`
	Missing    int            `json:"missing,omitempty"`
	Duplicates int            `json:"duplicates,omitempty"`
	First      int64          `json:"first,omitempty"` // unix ns
	Last       int64          `json:"last,omitempty"`
	Welcomes   int64          `json:"welcomes,omitempty"`
	Closes     map[string]int `json:"closes,omitempty"`

	// await_sync after a restart: the first and last of the tablets' first attempts
	// after their 1012 (the jitter window), and of the attempts that brought them back.
	RetryFirst int64 `json:"retry_first,omitempty"` // unix ns
	RetryLast  int64 `json:"retry_last,omitempty"`
	BackFirst  int64 `json:"back_first,omitempty"`
	BackLast   int64 `json:"back_last,omitempty"`

	Gaps       []int32 `json:"gaps,omitempty"`    // ms between heartbeats (gaps)
	Dropped    int     `json:"dropped,omitempty"` // tablets whose socket ended since watch (gaps)
	Sockets    int     `json:"sockets,omitempty"` // check: sockets welcomed while checked
	Replays    int     `json:"replays,omitempty"`
	Resets     int     `json:"resets,omitempty"`
	Violations int     `json:"violations,omitempty"`
}

// worker holds one child process's tablets and its peers' subscribers (NATS or
// Centrifugo: one peer at a time).
type worker struct {
	ctx     context.Context
	tctx    context.Context // the tablets' loops run under it, until disconnect
	cfg     *connectConfig  // of the last connect
	tablets []*tablet
	subs    []*natsSub
	cancelT context.CancelFunc
	cancelN context.CancelFunc
	wg      sync.WaitGroup
}

// RunWorker is the body of a worker process ("kioskfeed loadtest worker"): it takes
// commands on in and answers on out until in ends or it is told to quit.
func RunWorker(ctx context.Context, in io.Reader, out io.Writer) error {
	w := &worker{ctx: ctx}
	defer w.shutdown()
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	enc := json.NewEncoder(out)
	for sc.Scan() {
		var cmd command
		if err := json.Unmarshal(sc.Bytes(), &cmd); err != nil {
			return fmt.Errorf("worker: bad command: %w", err)
		}
		if cmd.Op == "quit" {
			return enc.Encode(reply{Op: "quit"})
		}
		rep := w.do(cmd)
		rep.Op = cmd.Op
		if err := enc.Encode(rep); err != nil {
			return err
		}
	}
	return sc.Err()
}

func (w *worker) shutdown() {
	if w.cancelT != nil {
		w.cancelT()
	}
	if w.cancelN != nil {
		w.cancelN()
	}
	w.wg.Wait()
}

func (w *worker) do(cmd command) reply {
	timeout := time.Duration(cmd.Timeout) * time.Millisecond
	if timeout <= 0 {
		timeout = 5 * time.Minute
	}
	ctx, cancel := context.WithTimeout(w.ctx, timeout)
	defer cancel()
	switch cmd.Op {
	case "pair":
		return w.pair(ctx, cmd)
	case "connect":
		return w.connect(ctx, cmd)
	case "nats_connect":
		return w.natsConnect(ctx, cmd)
	case "cent_connect":
		return w.centConnect(ctx, cmd)
	case "disconnect":
		if w.cancelT != nil {
			w.cancelT()
		}
		w.wg.Wait()
		return reply{N: len(w.tablets)}
	case "nats_close":
		if w.cancelN != nil {
			w.cancelN()
		}
		w.subs = nil
		return reply{}
	case "phase":
		if cmd.Target == "nats" {
			for _, s := range w.subs {
				s.startPhase(cmd.Phase, cmd.Events)
			}
			return reply{N: len(w.subs)}
		}
		group := w.group(cmd.Group)
		for _, t := range group {
			t.startPhase(cmd.Phase, cmd.Events)
		}
		return reply{N: len(group)}
	case "open":
		rep := reply{}
		for _, t := range w.group(cmd.Group) {
			t.deadMu.Lock()
			rep.N += btoi(t.conn != nil)
			t.deadMu.Unlock()
		}
		return rep
	case "mark":
		return w.mark(cmd.Share)
	case "outage":
		group := w.group(groupAffected)
		for _, t := range group {
			t.kill()
		}
		return reply{N: len(group)}
	case "leave":
		group := w.group(groupAffected)
		for _, t := range group {
			t.cancel()
		}
		for _, t := range group {
			<-t.done
		}
		return reply{N: len(group)}
	case "return":
		return w.comeBack(cmd)
	case "watch":
		group := w.group(cmd.Group)
		for _, t := range group {
			t.watch()
			t.endsMark = t.ends.Load()
		}
		return reply{N: len(group)}
	case "gaps":
		return w.gaps(cmd)
	case "check":
		group := w.group(cmd.Group)
		rep := reply{Closes: closeCounts(group)}
		for _, t := range group {
			sockets, replays, resets, bad, first := t.checked()
			rep.N++
			rep.Sockets += sockets
			rep.Replays += replays
			rep.Resets += resets
			rep.Violations += bad
			if first != "" && rep.FirstErr == "" {
				rep.FirstErr = fmt.Sprintf("device %s: %s", t.dev.Credentials().DeviceID, first)
			}
		}
		return rep
	case "collect":
		return w.collect(ctx, cmd)
	case "await_sync":
		return w.awaitSync(ctx, cmd)
	default:
		return reply{Err: fmt.Sprintf("unknown op %q", cmd.Op)}
	}
}

// pair makes cmd.N tablets, each with its own key, through the real flow: an admin
// issues a PIN (POST /api/admin/feeds/{feed}/pins) and the tablet redeems it with a

// sources are the loopback addresses worker i dials from: several per worker, so that
// the number of sockets is not bounded by one address's ephemeral ports. The worker's
// number takes two octets, so no two workers share an address however many there are.
func sources(worker, perWorker int) []string {
	w := 1 + worker
	out := make([]string, perWorker)
	for j := range out {
		out[j] = net.IPv4(127, byte(w>>8), byte(w), byte(10+j)).String()
	}
	return out
}
