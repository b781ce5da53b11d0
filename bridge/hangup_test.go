//go:build linux

package bridge_test

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kioskfeed/kioskfeed/bridge"
)

// TestFailedDrainAfterCleanupHangsUp: a tablet that stops reading is closed 1013; it
// answers nothing, so after closeGrace its session ends while the drain is still stuck
// writing to it, and the hang-up is left to the drain. When that write then fails (the
// write deadline), the drain must close the socket itself (a reset: the tablet is dead).
// It used to close nothing, and the conn and its file stayed open until the runtime
// happened to finalize them.
func TestFailedDrainAfterCleanupHangsUp(t *testing.T) {
	s := startStack(t, stackOpts{bridge: func(c *bridge.Config) {
		c.QueueFrames = 8
		c.WriteTimeout = 4 * time.Second // longer than closeGrace (2 s): cleanup comes first
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
	rc, err := slow.nc.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	state := func() (st uint8) {
		_ = rc.Control(func(fd uintptr) {
			if info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO); err == nil {
				st = info.State
			}
		})
		return st
	}
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
