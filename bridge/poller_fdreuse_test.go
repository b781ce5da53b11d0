//go:build linux

package bridge

import (
	"net"
	"syscall"
	"testing"
	"time"
)

// A session's cleanup may remove its poller registration after its conn was closed
// (drain hangs up as soon as the queue is out and reading is finished). By then the fd
// number may belong to a new tablet's conn, registered and armed: the late remove must
// not unwatch the new socket, or the new tablet is never read (4408 after 10 s).
func TestPollerLateRemoveKeepsTheFdsNextOwner(t *testing.T) {
	p, err := newPoller()
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	pair := func() (server, client net.Conn) { // the old tablet's
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		s, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		return s, c
	}
	fdOf := func(c net.Conn) int {
		rc, _ := c.(syscall.Conn).SyscallConn()
		fd := -1
		_ = rc.Control(func(f uintptr) { fd = int(f) })
		return fd
	}

	old, oldClient := pair()
	defer oldClient.Close()
	h1, err := p.add(old, func() {})
	if err != nil || p.arm(h1) != nil {
		t.Fatalf("register the old conn: %v", err)
	}
	freshClient, err := net.Dial("tcp", ln.Addr().String()) // waits in the backlog
	if err != nil {
		t.Fatal(err)
	}
	_ = old.Close() // the hang-up came first: its fd number is free
	fresh, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	if fdOf(fresh) != h1.fd {
		t.Fatalf("the new conn has fd %d, not the old one's %d: the test needs the kernel's lowest-free rule", fdOf(fresh), h1.fd)
	}
	defer fresh.Close()
	defer freshClient.Close()
	readable := make(chan struct{}, 1)
	h2, err := p.add(fresh, func() { readable <- struct{}{} })
	if err != nil || p.arm(h2) != nil {
		t.Fatalf("register the new conn: %v", err)
	}

	p.remove(h1) // the old session's cleanup, late

	if _, err := freshClient.Write([]byte{0x89, 0x80, 1, 2, 3, 4}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-readable:
	case <-time.After(5 * time.Second):
		t.Fatal("the new conn was never reported readable: the old registration's remove unwatched it")
	}
	p.remove(h2)
}
