package bridge

// This file owns the goroutines the poller hands a socket's frames to (readable): the
// auth message of every handshake, and any frame it does not read itself. They are kept
// for a while between frames, so a connect storm's handshakes run on stacks already
// grown to the handshake's depth (the ES256 check, JSON, the lease's KV call) rather
// than each on a new goroutine's small stack that doubles its way up: in a 10,000-tablet
// connect storm runtime.copystack was 5 % of the server's CPU.

import "time"

// readerIdle is how long a reader goroutine waits for the next frame before it exits:
// long enough to serve a whole storm, short enough that an idle fleet keeps none (nor
// their stacks).
const readerIdle = 5 * time.Second

// readerPool runs functions on goroutines it keeps while they have work. It never
// queues: a function with no idle goroutine to take it gets a new one, so no socket's
// frames ever wait behind another's.
type readerPool struct {
	work chan func()   // unbuffered: a send succeeds only into an idle goroutine
	done chan struct{} // closed by the bridge's Shutdown: idle goroutines exit at once
}

func newReaderPool(done chan struct{}) *readerPool {
	return &readerPool{work: make(chan func()), done: done}
}

// run runs f on an idle goroutine of the pool, or on a new one.
func (p *readerPool) run(f func()) {
	select {
	case p.work <- f:
	default:
		go p.loop(f)
	}
}

// loop runs f, then whatever the pool hands it, until it has been idle readerIdle.
func (p *readerPool) loop(f func()) {
	idle := time.NewTimer(readerIdle)
	defer idle.Stop()
	for {
		f()
		f = nil // not kept alive while idle
		idle.Reset(readerIdle)
		select {
		case f = <-p.work:
		case <-idle.C:
			return
		case <-p.done:
			return
		}
	}
}
