package loadtest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTicks is Linux's USER_HZ, the unit of utime and stime in /proc/<pid>/stat. It is
// 100 on every Linux architecture Go supports.
const clockTicks = 100

// procStat is what /proc says about one process: resident memory and CPU time so far.
type procStat struct {
	RSS int64         // bytes
	HWM int64         // bytes: the peak RSS since the start or the last resetPeakRSS
	CPU time.Duration // user + system
}

// readProc reads /proc/<pid>/status (VmRSS) and /proc/<pid>/stat (utime, stime).
func readProc(pid int) (procStat, error) {
	var st procStat
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return st, err
	}
	for line := range strings.SplitSeq(string(status), "\n") {
		name, v, _ := strings.Cut(line, ":")
		var dst *int64
		switch name {
		case "VmRSS":
			dst = &st.RSS
		case "VmHWM":
			dst = &st.HWM
		default:
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
		if err != nil {
			return st, fmt.Errorf("%s %q: %w", name, v, err)
		}
		*dst = kb << 10
	}
	st.CPU, err = ProcCPU(pid)
	return st, err
}

// ProcCPU is the CPU time (user + system) process pid has used so far, from
// /proc/<pid>/stat, in steps of 10 ms (USER_HZ).
func ProcCPU(pid int) (time.Duration, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces and ")"; the fields after its last
	// ")" are fixed.
	end := strings.LastIndexByte(string(stat), ')')
	if end < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(string(stat)[end+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64) // field 14 of stat(5)
	stime, err2 := strconv.ParseInt(f[12], 10, 64) // field 15
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	if utime < 0 || stime < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: negative CPU time", pid)
	}
	return time.Duration(utime+stime) * time.Second / clockTicks, nil
}

// CPUWindow measures a process's CPU time over a span of wall time: StartCPU at its
// beginning, End at its end. The load tool reads the server under test with it; any
// other server on the machine (a peer in a comparison) is read the same way, by pid.
type CPUWindow struct {
	pid  int
	cpu  time.Duration
	wall time.Time
}

// CPUSpan is what a CPUWindow measured: CPU time used and wall time passed.
type CPUSpan struct {
	CPU  time.Duration
	Wall time.Duration
}

// StartCPU begins a window on process pid.
func StartCPU(pid int) (*CPUWindow, error) {
	cpu, err := ProcCPU(pid)
	if err != nil {
		return nil, err
	}
	return &CPUWindow{pid: pid, cpu: cpu, wall: time.Now()}, nil
}

// End ends the window (it may be called again: each call measures from the start).
func (w *CPUWindow) End() (CPUSpan, error) {
	cpu, err := ProcCPU(w.pid)
	if err != nil {
		return CPUSpan{}, err
	}
	return CPUSpan{CPU: cpu - w.cpu, Wall: time.Since(w.wall)}, nil
}

// Pct is the CPU used as a share of one core over the window, in percent.
func (s CPUSpan) Pct() float64 {
	if s.Wall <= 0 {
		return 0
	}
	return 100 * s.CPU.Seconds() / s.Wall.Seconds()
}

// Per is the CPU used per one of n operations (deliveries, requests); 0 for n < 1.
func (s CPUSpan) Per(n int) time.Duration {
	if n < 1 {
		return 0
	}
	return s.CPU / time.Duration(n)
}

// resetPeakRSS sets the process's VmHWM back to its current RSS (Linux 4.0 and later:
// "5" to /proc/<pid>/clear_refs), so that the next reading is the peak of what follows.
func resetPeakRSS(pid int) error {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0)
}

// rssSampler reads a process's RSS at a short interval, for the peak of a phase that
// VmHWM alone would not give when it cannot be reset.
type rssSampler struct {
	stop chan struct{}
	done chan struct{}
	peak int64
}

func sampleRSS(pid int, every time.Duration) *rssSampler {
	s := &rssSampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			if st, err := readProc(pid); err == nil {
				s.peak = max(s.peak, st.RSS)
			}
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

// end stops the sampling and returns the largest RSS read.
func (s *rssSampler) end() int64 {
	close(s.stop)
	<-s.done
	return s.peak
}

// freePort asks the kernel for a free loopback port. Another process could take it
// before the child binds it; on loopback in a load run that does not happen in practice,
// and a child that fails to bind says so.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// child is a process this run started: the server, nats-server or a worker. Its output
// goes to a log file in the run's directory, so a failure can be read afterwards.
type child struct {
	name string
	cmd  *exec.Cmd
	log  *os.File
	done chan struct{}
	err  error // set before done closes
}

// startChild starts exe with args and env added to ours. setup, when not nil, may
// change the command before it starts (pipes for a worker).
func startChild(name, exe string, args, env []string, logPath string, setup func(*exec.Cmd) error) (*child, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout = f
	cmd.Stderr = f
	if setup != nil {
		if err := setup(cmd); err != nil {
			f.Close()
			return nil, err
		}
	}
	// Its own process group: a Ctrl-C on the load tool reaches it only through us, so
	// it is stopped in order (and never outlives the run: see stop and kill).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	c := &child{name: name, cmd: cmd, log: f, done: make(chan struct{})}
	go func() {
		c.err = cmd.Wait()
		f.Close()
		close(c.done)
	}()
	return c, nil
}

func (c *child) pid() int { return c.cmd.Process.Pid }

// stop sends SIGTERM and waits up to grace for the exit, then kills.
func (c *child) stop(grace time.Duration) error {
	select {
	case <-c.done:
		return nil
	default:
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
		return nil
	case <-time.After(grace):
		_ = c.cmd.Process.Kill()
		<-c.done
		return fmt.Errorf("%s did not stop within %s after SIGTERM; killed", c.name, grace)
	}
}

func (c *child) kill() {
	_ = c.cmd.Process.Kill()
	<-c.done
}

// exited reports an early exit as an error naming the child's log.
func (c *child) exited() error {
	select {
	case <-c.done:
		return fmt.Errorf("%s exited (%v); see %s", c.name, c.err, c.log.Name())
	default:
		return nil
	}
}

// waitHTTP polls url until it answers 200, the child exits, or ctx ends.
func waitHTTP(ctx context.Context, c *child, url string) error {
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if err := c.exited(); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready at %s: %w", c.name, url, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// scrapeSeries reads every series of one metric from a Prometheus text endpoint, keyed
// by its labels as written ("" for none), e.g. {`source="reset"`: 12}.
func scrapeSeries(ctx context.Context, url, name string) (map[string]float64, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), name)
		if !ok {
			continue
		}
		labels := ""
		switch {
		case strings.HasPrefix(rest, "{"):
			end := strings.LastIndexByte(rest, '}')
			if end < 0 {
				continue
			}
			labels, rest = rest[1:end], rest[end+1:]
		case !strings.HasPrefix(rest, " "):
			continue // another metric whose name starts with this one
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", url, name, err)
		}
		out[labels] = v
	}
	return out, sc.Err()
}

// scrapeMetric reads one unlabelled gauge (go_goroutines, ...) from a Prometheus text
// endpoint.
func scrapeMetric(ctx context.Context, url, name string) (float64, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("%s: no metric %s", url, name)
}
