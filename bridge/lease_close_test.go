package bridge_test

import (
	"io"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/kioskfeed/kioskfeed/bridge"
	"github.com/kioskfeed/kioskfeed/bridge/bridgetest"
)

// TestCloseDuringProbeIsNoAnswer: a tablet that closes its socket and at once connects
// again (the Go client's Close sends its close frame and hangs up without waiting) can
// have its old socket probed before the server has read that close frame. The close
// frame, read after the probe's ping, used to count as the answer: the old socket was
// taken for alive and the new one refused 4409 (a CI failure of the client's
// TestConnectCatchUpAndLiveEventsInOrder). Here the old socket answers the probe's
// ping with its close frame; the new one must be welcomed.
func TestCloseDuringProbeIsNoAnswer(t *testing.T) {
	s := startStack(t, stackOpts{bridge: func(c *bridge.Config) { c.Heartbeat = time.Minute }}) // no heartbeat ping to mistake for the probe's
	tab := s.pair(t, "lobby")
	old, _ := s.connect(t, tab, 0, "")
	if _, _, _, err := old.Collect(wait); err != nil {
		t.Fatal(err)
	}

	type result struct {
		c   *bridgetest.Conn
		err error
	}
	done := make(chan result, 1)
	go func() {
		c, err := bridgetest.Dial(bg, s.wsURL, s.origin, s.Listener.Addr().String())
		if err == nil {
			_, err = c.Handshake(tab, s.wsURL, 0, "", wait)
		}
		done <- result{c, err}
	}()

	nc := old.NetConn()
	_ = nc.SetReadDeadline(time.Now().Add(wait))
	for { // the new socket's handshake probes the old one: a ping
		hdr, err := ws.ReadHeader(nc)
		if err != nil {
			t.Fatalf("waiting for the lease probe's ping on the old socket: %v", err)
		}
		if _, err := io.CopyN(io.Discard, nc, hdr.Length); err != nil {
			t.Fatal(err)
		}
		if hdr.OpCode == ws.OpPing {
			break
		}
	}
	if err := old.SendFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusNormalClosure, ""))); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.c != nil {
		defer r.c.Abort()
	}
	if r.err != nil {
		t.Fatalf("the new socket: %v; want a welcome (the old one closed, it did not answer the probe)", r.err)
	}
}
