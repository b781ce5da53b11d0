package bridge

import (
	"bytes"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"
)

// goroutineID is the running goroutine's number, from its stack's first line.
func goroutineID() uint64 {
	b := make([]byte, 64)
	b = b[:runtime.Stack(b, false)]
	b = bytes.TrimPrefix(b, []byte("goroutine "))
	id, _ := strconv.ParseUint(string(b[:bytes.IndexByte(b, ' ')]), 10, 64)
	return id
}

// TestReaderPoolKeepsItsGoroutine: a reader goroutine that finished its frame takes the
// next one handed to it, on the same goroutine (and stack).
func TestReaderPoolKeepsItsGoroutine(t *testing.T) {
	done := make(chan struct{})
	p := newReaderPool(done)
	ids := make(chan uint64, 2)
	p.run(func() { ids <- goroutineID() })
	first := <-ids
	select { // blocks until the goroutine is idle and takes it
	case p.work <- func() { ids <- goroutineID() }:
	case <-time.After(10 * time.Second):
		t.Fatal("the pool's goroutine never asked for more work")
	}
	if second := <-ids; second != first {
		t.Fatalf("the second function ran on goroutine %d, want the pool's %d", second, first)
	}
	close(done) // it exits: the package's TestMain fails on a goroutine left running
}

// TestReaderPoolNeverQueues: with every goroutine of the pool busy, run starts another
// at once: one socket's frames never wait behind another's.
func TestReaderPoolNeverQueues(t *testing.T) {
	const n = 20
	done := make(chan struct{})
	defer close(done)
	p := newReaderPool(done)
	var running sync.WaitGroup
	running.Add(n)
	release := make(chan struct{})
	for range n {
		p.run(func() {
			running.Done()
			<-release
		})
	}
	all := make(chan struct{})
	go func() { running.Wait(); close(all) }()
	select {
	case <-all:
	case <-time.After(10 * time.Second):
		t.Fatalf("not all %d functions ran at once: run queued some behind the busy ones", n)
	}
	close(release)
}
