//go:build linux

package bridge_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"golang.org/x/sys/unix"

	"github.com/kioskfeed/kioskfeed/bridge"
	"github.com/kioskfeed/kioskfeed/bridge/bridgetest"
)

// TestFailedDrainAfterCleanupHangsUp: a tablet that stops reading is closed 1013; it
// answers nothing, so after CloseGrace its session ends while the drain is still stuck
// writing to it, and the hang-up is left to the drain. When that write then fails (the
// write deadline), the drain must close the socket itself (a reset: the tablet is dead).
// It used to close nothing, and the conn and its file stayed open until the runtime
// happened to finalize them.
func TestFailedDrainAfterCleanupHangsUp(t *testing.T) {
	s := startStack(t, stackOpts{bridge: func(c *bridge.Config) {
		c.QueueFrames = 8
		c.WriteTimeout = 4 * time.Second // longer than CloseGrace (2 s): cleanup comes first
		c.Heartbeat = time.Minute        // no drop for silence meanwhile
	}})
	slow := s.liveSocket(t, "lobby")
	_ = slow.nc.(*net.TCPConn).SetReadBuffer(4 << 10)
	// 12.5 MiB: far more than the kernel's buffers hold, and than the queue: 1013 follows, then
	// the drain blocks on the unread socket.
	pad := strings.Repeat("x", 32<<10)
	for i := range 400 {
		s.publish(t, "lobby", "item", fmt.Sprintf(`{"n":%d,"pad":%q}`, i, pad))
	}
	// Without reading a byte (reading would let the drain's write go through), watch
	// the socket's TCP state: the server's reset closes it.
	state := tcpState(t, slow.nc.(*net.TCPConn))
	const established, closed = 1, 7 // TCP_ESTABLISHED, TCP_CLOSE (after a reset)
	// Established, unless publishing on a loaded machine outlasted the write timeout and
	// the grace (6 s), and the drain has hung up already: what is tested.
	switch st := state(); st {
	case established:
	case closed:
		t.Logf("TCP state %d (closed) already once the events were published: the hang-up came during the publishing", st)
		return
	default:
		t.Fatalf("TCP state %d once the events were published, want %d (established) or %d (reset by the server)", st, established, closed)
	}
	deadline := time.Now().Add(30 * time.Second)
	for state() != closed {
		if time.Now().After(deadline) {
			t.Fatalf("TCP state %d 30 s after the tablet stopped reading, want %d (reset by the server): the failed drain did not hang up", state(), closed)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestDrainClosesAtTheEcho: once a tablet has answered the drain's 1012, the close
// handshake is over and the server closes the TCP connection at once (RFC 6455 §7.1.1),
// without waiting for the tablet's FIN. The tablet here answers and then holds its
// socket open, and CloseGrace is an hour: Shutdown used to wait that long, the server
// half-closed and reading, one such wait per tablet. Now it returns, the tablet reads
// the server's FIN, and a byte it writes after that is answered with a reset: the
// server's socket is gone, not half-closed.
func TestDrainClosesAtTheEcho(t *testing.T) {
	s := startStack(t, stackOpts{bridge: func(c *bridge.Config) { c.CloseGrace = time.Hour }})
	c, _ := s.connect(t, s.pair(t, "lobby"), 0, "")
	if _, _, _, err := c.Collect(wait); err != nil {
		t.Fatal(err)
	}
	shut := make(chan error, 1)
	ctx, cancel := context.WithTimeout(bg, 30*time.Second)
	defer cancel()
	go func() { shut <- s.br.Shutdown(ctx) }()
	// ExpectClose answers the close frame and leaves the TCP connection open.
	if code, err := c.ExpectClose(wait); err != nil || code != 1012 {
		t.Fatalf("drain: %d, %v; want 1012", code, err)
	}
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v, want it done once the tablet answered (it held its socket open)", err)
	}
	nc := c.NetConn().(*net.TCPConn)
	_ = nc.SetReadDeadline(time.Now().Add(wait))
	if n, err := nc.Read(make([]byte, 64)); n != 0 || !errors.Is(err, io.EOF) {
		t.Fatalf("after the drain: read %d bytes, %v; want EOF (the server's FIN)", n, err)
	}
	state := tcpState(t, nc)
	const closed = 7 // TCP_CLOSE: the server's reset came
	deadline := time.Now().Add(wait)
	for state() != closed {
		if time.Now().After(deadline) {
			t.Fatalf("TCP state %d after writing to the drained socket, want %d: the server still holds it half-closed", state(), closed)
		}
		_ = nc.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = nc.Write([]byte{0x8a, 0x80, 0, 0, 0, 0}) // a masked pong, if anyone read it
		time.Sleep(20 * time.Millisecond)
	}
}

// tcpState reads nc's TCP state (TCP_INFO) each time it is called.
func tcpState(t *testing.T, nc *net.TCPConn) func() uint8 {
	t.Helper()
	rc, err := nc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	return func() (st uint8) {
		_ = rc.Control(func(fd uintptr) {
			if info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO); err == nil {
				st = info.State
			}
		})
		return st
	}
}

// TestTabletsCloseIsEchoedThenHungUp: a tablet that closes first gets its code echoed
// and then the server's FIN, not a reset: with the close handshake over, the server
// closes the TCP connection at once (closeRead), and the echo it had just written must
// still reach the tablet ahead of the FIN.
func TestTabletsCloseIsEchoedThenHungUp(t *testing.T) {
	s := startStack(t, stackOpts{})
	c, _ := s.connect(t, s.pair(t, "lobby"), 0, "")
	if _, _, _, err := c.Collect(wait); err != nil {
		t.Fatal(err)
	}
	if err := c.SendFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(4000, "bye"))); err != nil {
		t.Fatal(err)
	}
	nc := c.NetConn()
	if code, err := bridgetest.ReadClose(nc, wait); err != nil || code != 4000 {
		t.Fatalf("the server's answer to our close 4000: %d, %v; want 4000 echoed", code, err)
	}
	_ = nc.SetReadDeadline(time.Now().Add(wait))
	if n, err := nc.Read(make([]byte, 64)); n != 0 || !errors.Is(err, io.EOF) {
		t.Fatalf("after the echo: read %d bytes, %v; want EOF (the server's FIN, not a reset)", n, err)
	}
}
