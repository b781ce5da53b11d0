package loadtest

// This file holds one run's frame: Run, the state it keeps (run), the full run's order
// of phases, and the processes it manages: the server under test (its environment,
// start, restart) and the worker processes it commands (callAll). The phases
// themselves are in phases.go, the scenarios in scenario.go, outage.go and storm.go.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
)

const feed = "load"

// run is the state of one load run.
type run struct {
	opts       Options
	dir        string
	port       int
	base       string
	adminToken string
	producer   string
	env        []string
	server     *child
	workers    []*workerProc
	children   []*child
	mu         sync.Mutex
	res        Result
	paced      []time.Duration // how long each publish of the last pace took (pace)
}

func (r *run) logf(format string, args ...any) {
	fmt.Fprintf(r.opts.Progress, "%s  %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
}

// Run performs one load run: pair, connect, idle, fan-out, restart, then the same
// fan-out through nats-server's WebSocket listener. It returns the figures, and an
// error when a phase failed or any tablet missed or repeated an event.
func Run(ctx context.Context, opts Options) (*Result, error) {
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	r := &run{opts: opts}
	r.res = Result{Tablets: opts.Tablets, Events: opts.Events, Rate: opts.Rate, PayloadBytes: opts.Payload, Scenario: opts.Scenario}
	if opts.Dir == "" {
		dir, err := os.MkdirTemp("", "kioskfeed-loadtest-")
		if err != nil {
			return nil, err
		}
		r.dir = dir
	} else {
		r.dir = opts.Dir
		if err := unusedDir(r.dir); err != nil {
			return nil, err
		}
		if err := os.MkdirAll(r.dir, 0o700); err != nil {
			return nil, err
		}
	}
	defer r.cleanup()
	stop := context.AfterFunc(ctx, r.killAll)
	defer stop()
	var err error
	switch {
	case opts.isCluster():
		err = r.cluster(ctx)
	case opts.Scenario == ScenarioOutage:
		err = r.outage(ctx)
	case opts.Scenario == ScenarioStorm:
		err = r.storm(ctx)
	default:
		err = r.phases(ctx)
	}
	if err == nil && opts.Dir == "" {
		_ = os.RemoveAll(r.dir)
	} else if err != nil {
		err = fmt.Errorf("%w (logs in %s)", err, r.dir)
	}
	return &r.res, err
}

// unusedDir refuses a directory that holds anything: the run would start its servers
// on the last run's data, and its publishes, whose event ids repeat the last run's,
// would be taken as duplicates of events already stored, so no tablet would get one.
func unusedDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if len(entries) > 0 {
		return fmt.Errorf("dir must be new or empty, not %s, which holds %s and %d more (a run there would start on the last run's data)", dir, entries[0].Name(), len(entries)-1)
	}
	return nil
}

func (r *run) phases(ctx context.Context) error {
	if err := r.startServer(ctx, "server-1"); err != nil {
		return err
	}
	if err := r.makeProducer(ctx); err != nil {
		return err
	}
	time.Sleep(r.opts.Settle)
	empty, err := readProc(r.server.pid())
	if err != nil {
		return err
	}
	r.res.ServerRSSEmptyBytes = empty.RSS
	if err := r.startWorkers(); err != nil {
		return err
	}
	if err := r.pair(ctx); err != nil {
		return err
	}
	// A fresh process for the measurements: the pairing's garbage would otherwise sit
	// in the heap and flatter the per-tablet figure.
	if err := r.restartServer(ctx, "server-2"); err != nil {
		return err
	}
	time.Sleep(r.opts.Settle)
	paired, err := readProc(r.server.pid())
	if err != nil {
		return err
	}
	r.res.ServerRSSPairedBytes = paired.RSS
	r.res.GoroutinesPaired, _ = scrapeMetric(ctx, r.base+"/metrics", "go_goroutines")
	if err := r.connect(ctx); err != nil {
		return err
	}
	if err := r.idle(ctx, paired.RSS); err != nil {
		return err
	}
	if err := r.fanout(ctx); err != nil {
		return err
	}
	if !r.opts.NoRestart {
		if err := r.restart(ctx); err != nil {
			return err
		}
	}
	if _, err := r.callAll(func(int) command { return command{Op: "disconnect"} }); err != nil {
		return err
	}
	if err := r.server.stop(30 * time.Second); err != nil {
		return err
	}
	if !r.opts.NoNATS {
		if err := r.natsFanout(ctx); err != nil {
			return err
		}
	}
	if !r.opts.NoCentrifugo {
		if r.res.Centrifugo, err = r.centrifugoFanout(ctx); err != nil {
			return err
		}
	}
	switch {
	case r.res.Missing > 0 || r.res.Duplicates > 0 || r.res.AfterRestartMissing > 0:
		return fmt.Errorf("kioskfeed tablets missed %d and repeated %d events (%d missed after the restart)", r.res.Missing, r.res.Duplicates, r.res.AfterRestartMissing)
	case r.res.NATSMissing > 0 || r.res.NATSDuplicates > 0:
		return fmt.Errorf("NATS WebSocket subscribers missed %d and repeated %d messages", r.res.NATSMissing, r.res.NATSDuplicates)
	case r.res.Centrifugo != nil && (r.res.Centrifugo.Missing > 0 || r.res.Centrifugo.Duplicates > 0):
		return fmt.Errorf("Centrifugo subscribers missed %d and repeated %d publications", r.res.Centrifugo.Missing, r.res.Centrifugo.Duplicates)
	}
	return nil
}

func (r *run) serverEnv() []string {
	if r.env != nil {
		return r.env
	}
	tok := make([]byte, 24)
	_, _ = rand.Read(tok)
	r.adminToken = hex.EncodeToString(tok)
	port, _ := freePort()
	r.port = port
	r.base = "http://127.0.0.1:" + strconv.Itoa(port)
	r.env = append([]string{
		"KIOSKFEED_LISTEN=127.0.0.1:" + strconv.Itoa(port),
		"KIOSKFEED_PUBLIC_URL=" + r.base,
		"KIOSKFEED_DATA_DIR=" + filepath.Join(r.dir, "data"),
		"KIOSKFEED_NATS_URL=",
		"KIOSKFEED_NATS_LISTEN=",
		"KIOSKFEED_ADMIN_TOKEN=" + r.adminToken,
		"KIOSKFEED_PAIR_BURST=1000000",
		"KIOSKFEED_PAIR_EVERY=1ms",
		// Every load tablet comes from a few loopback addresses: a storm of thousands
		// per address is the test, not an attack.
		"KIOSKFEED_WS_CONNECT_BURST=1000000",
		"KIOSKFEED_WS_CONNECT_EVERY=1ms",
		"KIOSKFEED_TOKEN_TTL=2h",
		"KIOSKFEED_MAX_CONNECTIONS=0",
		"KIOSKFEED_LOG_LEVEL=warn",
	}, r.opts.ServerEnv...)
	if r.opts.Heartbeat > 0 {
		// Before the user's settings, which win (the last of a key is used).
		r.env = slices.Insert(r.env, len(r.env)-len(r.opts.ServerEnv), "KIOSKFEED_HEARTBEAT="+r.opts.Heartbeat.String())
	}
	return r.env
}

func (r *run) startServer(ctx context.Context, name string) error {
	c, err := startChild(name, r.opts.ServerExe, []string{"serve"}, r.serverEnv(), filepath.Join(r.dir, name+".log"), nil)
	if err != nil {
		return err
	}
	r.track(c)
	r.server = c
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := waitHTTP(wctx, c, r.base+"/readyz"); err != nil {
		return err
	}
	r.logf("%s ready (pid %d) at %s", name, c.pid(), r.base)
	return nil
}

// restartServer stops the server (SIGTERM: it drains, closing sockets with 1012) and
// starts a new process on the same data directory.
func (r *run) restartServer(ctx context.Context, name string) error {
	if err := r.server.stop(30 * time.Second); err != nil {
		return err
	}
	return r.startServer(ctx, name)
}

func (r *run) track(c *child) {
	r.mu.Lock()
	r.children = append(r.children, c)
	r.mu.Unlock()
}

func (r *run) killAll() {
	r.mu.Lock()
	all := slices.Clone(r.children)
	r.mu.Unlock()
	for _, c := range all {
		c.kill()
	}
}

func (r *run) cleanup() {
	for _, w := range r.workers {
		_ = w.quit()
	}
	r.killAll()
}

func (r *run) adminCall(ctx context.Context, method, path string, body any, want int, out any) error {
	raw, _ := json.Marshal(body)
	req, err := http.NewRequestWithContext(ctx, method, r.base+path, bytes.NewReader(raw))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+r.adminToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s: HTTP %d %s", method, path, resp.StatusCode, data)
	}
	if out != nil {
		return json.Unmarshal(data, out)
	}
	return nil
}

func (r *run) makeProducer(ctx context.Context) error {
	var key struct {
		Key string `json:"key"`
	}
	if err := r.adminCall(ctx, http.MethodPost, "/api/admin/producer-keys", map[string]any{"name": "loadtest", "feeds": []string{feed}}, http.StatusCreated, &key); err != nil {
		return err
	}
	r.producer = key.Key
	return nil
}

func (r *run) startWorkers() error {
	n := (r.opts.Tablets + r.opts.PerWorker - 1) / r.opts.PerWorker
	for i := range n {
		w, err := startWorker(r, i)
		if err != nil {
			return err
		}
		r.workers = append(r.workers, w)
	}
	r.res.Workers = n
	return nil
}

// share is how many of n things worker i takes.
func (r *run) share(n, i int) int {
	w := len(r.workers)
	return n/w + btoi(i < n%w)
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func timeoutMS(d time.Duration) int64 { return d.Milliseconds() }

// callAll sends each worker its command (made by cmd from the worker's index) and
// waits for every answer.
func (r *run) callAll(cmd func(i int) command) ([]reply, error) {
	reps := make([]reply, len(r.workers))
	var g errgroup.Group
	for i, w := range r.workers {
		g.Go(func() error {
			rep, err := w.call(cmd(i))
			reps[i] = rep
			return err
		})
	}
	return reps, g.Wait()
}
