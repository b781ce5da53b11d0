package loadtest

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
)

// workerProc is the load tool's handle on one worker process: commands go to its
// stdin, replies come from its stdout, one JSON line each; its stderr is its log.
type workerProc struct {
	name string
	c    *child
	mu   sync.Mutex
	in   io.WriteCloser
	out  *bufio.Scanner
}

func startWorker(r *run, i int) (*workerProc, error) {
	w := &workerProc{name: "worker-" + strconv.Itoa(i)}
	c, err := startChild(w.name, r.opts.Exe, []string{"loadtest", "worker"}, nil, filepath.Join(r.dir, w.name+".log"), func(cmd *exec.Cmd) error {
		in, err := cmd.StdinPipe()
		if err != nil {
			return err
		}
		cmd.Stdout = nil
		out, err := cmd.StdoutPipe()
		if err != nil {
			return err
		}
		w.in = in
		w.out = bufio.NewScanner(out)
		w.out.Buffer(make([]byte, 64<<10), 256<<20)
		return nil
	})
	if err != nil {
		return nil, err
	}
	w.c = c
	r.track(c)
	return w, nil
}

// call sends one command and waits for its reply.
func (w *workerProc) call(cmd command) (reply, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var rep reply
	raw, _ := json.Marshal(cmd)
	if _, err := w.in.Write(append(raw, '\n')); err != nil {
		return rep, fmt.Errorf("%s: %w; see %s", w.name, err, w.c.log.Name())
	}
	if !w.out.Scan() {
		return rep, fmt.Errorf("%s stopped answering (%v); see %s", w.name, w.out.Err(), w.c.log.Name())
	}
	if err := json.Unmarshal(w.out.Bytes(), &rep); err != nil {
		return rep, fmt.Errorf("%s: unreadable reply: %w", w.name, err)
	}
	if rep.Err != "" {
		return rep, fmt.Errorf("%s: %s", w.name, rep.Err)
	}
	return rep, nil
}

// quit asks the worker to end and closes its input.
func (w *workerProc) quit() error {
	_, err := w.call(command{Op: "quit"})
	_ = w.in.Close()
	return err
}
