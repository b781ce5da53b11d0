//go:build linux

package bridge

import (
	"errors"
	"net"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// poller tells which idle sockets have something to read, so that an idle tablet costs
// no goroutine (and no goroutine stack, the largest part of a tablet's memory before):
// one goroutine waits in epoll_wait for all of them and tells the socket's session,
// which reads a whole ping or pong right there (takePingPong) and starts a goroutine for
// anything else, ending when it has read it. This is the design of gobwas/ws's own
// "million WebSockets" article.
//
// A registration is one-shot (EPOLLONESHOT): after an event the socket is not watched
// until rearm, so one socket is never read by two goroutines. Go's own poller keeps
// watching the same socket for the reads and writes the session does; the kernel allows
// a socket in several epoll sets.
type poller struct {
	epfd int
	wake int // an eventfd that ends wait

	mu   sync.Mutex
	regs map[int32]pollReg // by fd
	gen  uint32
	done chan struct{}
}

type pollReg struct {
	gen uint32
	fn  func()
}

// pollHandle names one registration. The generation tells a new socket that got a
// closed one's fd number from an event meant for the old one.
type pollHandle struct {
	fd  int
	gen uint32
}

var errNotPollable = errors.New("connection has no file descriptor to poll")

const pollEvents = unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT

func newPoller() (*poller, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(epfd)
		return nil, err
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: -1}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wake, &ev); err != nil {
		unix.Close(epfd)
		unix.Close(wake)
		return nil, err
	}
	p := &poller{epfd: epfd, wake: wake, regs: map[int32]pollReg{}, done: make(chan struct{})}
	go p.wait()
	return p, nil
}

// add registers conn, not yet watched: fn will run on the poller's goroutine each time
// the armed socket is readable (or the peer hung up), once per arming; it must not
// block, and starts a goroutine for work that may. Then arm, and rearm
// after each run; remove before closing conn.
func (p *poller) add(conn net.Conn, fn func()) (pollHandle, error) {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return pollHandle{}, errNotPollable
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return pollHandle{}, err
	}
	fd := -1
	if err := rc.Control(func(f uintptr) { fd = int(f) }); err != nil {
		return pollHandle{}, err
	}
	p.mu.Lock()
	p.gen++
	h := pollHandle{fd: fd, gen: p.gen}
	p.regs[int32(fd)] = pollReg{gen: h.gen, fn: fn}
	p.mu.Unlock()
	return h, nil
}

// arm starts watching h's socket. What the caller wrote before arm is visible to fn
// (the registry's lock orders them).
func (p *poller) arm(h pollHandle) error {
	p.mu.Lock()
	_, ok := p.regs[int32(h.fd)]
	p.mu.Unlock()
	if !ok {
		return errNotPollable
	}
	ev := unix.EpollEvent{Events: pollEvents, Fd: int32(h.fd), Pad: int32(h.gen)}
	if err := unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, h.fd, &ev); err != nil {
		p.forget(h)
		return err
	}
	return nil
}

// rearm watches h's socket again, after its fn has read what there was.
func (p *poller) rearm(h pollHandle) error {
	ev := unix.EpollEvent{Events: pollEvents, Fd: int32(h.fd), Pad: int32(h.gen)}
	return unix.EpollCtl(p.epfd, unix.EPOLL_CTL_MOD, h.fd, &ev)
}

// remove stops watching h's socket. Call it before the socket is closed, so that its
// fd number, once reused, is never armed on the old registration's behalf.
func (p *poller) remove(h pollHandle) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.forgetLocked(h) {
		_ = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, h.fd, nil)
	}
}

func (p *poller) forget(h pollHandle) {
	p.mu.Lock()
	p.forgetLocked(h)
	p.mu.Unlock()
}

// forgetLocked drops h's registration if it is still h's (not a later socket's on the
// same fd number) and reports whether it was.
func (p *poller) forgetLocked(h pollHandle) bool {
	if r, ok := p.regs[int32(h.fd)]; ok && r.gen == h.gen {
		delete(p.regs, int32(h.fd))
		return true
	}
	return false
}

func (p *poller) wait() {
	defer close(p.done)
	events := make([]unix.EpollEvent, 256)
	for {
		n, err := unix.EpollWait(p.epfd, events, -1)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return
		}
		for _, ev := range events[:n] {
			if ev.Fd == -1 {
				return // close
			}
			p.mu.Lock()
			r, ok := p.regs[ev.Fd]
			p.mu.Unlock()
			if ok && r.gen == uint32(ev.Pad) {
				r.fn() // it must not block: the session starts a goroutine for what may
			}
		}
	}
}

// close ends the waiting goroutine and releases the epoll instance. Every socket must
// be removed first.
func (p *poller) close() {
	var one [8]byte
	one[0] = 1
	_, _ = unix.Write(p.wake, one[:])
	<-p.done
	unix.Close(p.epfd)
	unix.Close(p.wake)
}

// takePingPong reads the socket's next frame if it is a ping or a pong whose bytes are all
// in the socket's buffer already, without blocking, and returns them (whole is true).
// Otherwise it takes nothing and returns nil, or, if the kernel gave fewer bytes than it
// showed (it does not, but a reader must not be wrong then), what it took and false.
// The poller's reads take what the socket holds instead (takeInput, inlineFrame), which
// saves the peek; this one stays for a caller that must take nothing else.
func takePingPong(fd int) (b []byte, whole bool) {
	var peek [2 + 4 + 125]byte // a masked control frame's header and longest payload
	n, _, err := unix.Recvfrom(fd, peek[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
	if err != nil || n < 2 {
		return nil, false
	}
	op, length := peek[0]&0x0f, int(peek[1]&0x7f)
	if peek[0]&0xf0 != 0x80 || (op != 0x9 && op != 0xa) || peek[1]&0x80 == 0 || length > 125 {
		return nil, false // not a final, masked, unextended ping or pong: the reader decides
	}
	total := 2 + 4 + length
	if n < total {
		return nil, false
	}
	b = make([]byte, total)
	got, _, err := unix.Recvfrom(fd, b, unix.MSG_DONTWAIT)
	if err != nil || got <= 0 {
		return nil, false
	}
	return b[:got], got == total
}

// takeInput reads what the socket holds, up to maxTakeInput bytes, without blocking:
// nil when nothing can be read now (empty, closed by the peer, or failed: the reader
// then meets the same). What it returns is the start of the socket's input.
func takeInput(fd int) []byte {
	var buf [maxTakeInput]byte
	n, _, err := unix.Recvfrom(fd, buf[:], unix.MSG_DONTWAIT)
	if err != nil || n <= 0 {
		return nil
	}
	return append([]byte(nil), buf[:n]...) // what was read, in an allocation its size
}

// writeNow writes b to the socket without blocking (Go's sockets are non-blocking) and
// returns how much the kernel took.
func writeNow(fd int, b []byte) (int, error) {
	for {
		n, err := unix.Write(fd, b)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		return max(n, 0), err
	}
}
