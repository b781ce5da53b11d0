package bridge_test

import (
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kioskfeed/kioskfeed/bridge"
	"github.com/kioskfeed/kioskfeed/bridge/bridgetest"
	"github.com/kioskfeed/kioskfeed/broker/brokertest"
)

// TestDeadLinksDoNotStallHeartbeats (issue 12 §1): a building's Wi-Fi drops and many
// tablets die at once: their sockets stay open, but they read nothing and answer no
// ping. Dropping them must not hold up anyone else: every healthy tablet of the
// instance hears every heartbeat on time (no gap of two heartbeats; the protocol has a
// tablet reconnect after 2.5 of silence) and is never dropped, while the dead ones
// are. Dropping one used to wait up to 2 s for its FIN-and-drain on the heartbeat's
// own goroutine, so 24 dead links silenced the instance for 48 s.
func TestDeadLinksDoNotStallHeartbeats(t *testing.T) {
	t.Run("poller", deadLinks)
	t.Run("a reader goroutine per socket", func(t *testing.T) {
		bridge.DisablePolling(t)
		deadLinks(t)
	})
}

func deadLinks(t *testing.T) {
	const (
		hb      = time.Second
		dead    = 24
		healthy = 4
	)
	reg := prometheus.NewRegistry()
	s := startStack(t, stackOpts{bridge: func(c *bridge.Config) { c.Heartbeat = hb; c.Registerer = reg }})

	// The dead links: welcomed and caught up, then never read again (their kernel takes
	// a little, in a small receive buffer, then nothing).
	for range dead {
		c, _ := s.connect(t, s.pair(t, "lobby"), 0, "")
		if _, _, _, err := c.Collect(wait); err != nil {
			t.Fatal(err)
		}
		_ = c.NetConn().(*net.TCPConn).SetReadBuffer(4 << 10)
	}

	// The healthy tablets read everything and note when each heartbeat came.
	type watch struct {
		mu    sync.Mutex
		beats []time.Time
		err   error
	}
	watches := make([]*watch, healthy)
	var conns []*bridgetest.Conn
	for i := range healthy {
		c, _ := s.connect(t, s.pair(t, "lobby"), 0, "")
		if _, _, _, err := c.Collect(wait); err != nil {
			t.Fatal(err)
		}
		w := &watch{beats: []time.Time{time.Now()}} // a gap is counted from the catch-up
		watches[i] = w
		conns = append(conns, c)
		go func() {
			for {
				m, err := c.Next(time.Minute)
				w.mu.Lock()
				if err != nil {
					w.err = err
					w.mu.Unlock()
					return
				}
				if m.Type == "heartbeat" {
					w.beats = append(w.beats, time.Now())
				}
				w.mu.Unlock()
			}
		}()
	}
	beats := func(w *watch) int {
		w.mu.Lock()
		defer w.mu.Unlock()
		return len(w.beats)
	}

	// The dead links are dropped (after two heartbeats of silence)...
	dropped := false
	for end := time.Now().Add(30 * time.Second); !dropped && time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		dropped = counter(t, reg, "kioskfeed_ws_connections", "", "") == healthy
	}
	// ...and the healthy tablets keep hearing heartbeats after that too.
	if dropped {
		after := make([]int, healthy)
		for i, w := range watches {
			after[i] = beats(w)
		}
		brokertest.Eventually(t, 10*hb, "three more heartbeats after the drop", func() bool {
			for i, w := range watches {
				if beats(w) < after[i]+3 {
					return false
				}
			}
			return true
		})
	}
	end := time.Now() // a silence up to here counts too
	for _, c := range conns {
		_ = c.Abort() // ends the readers
	}

	for i, w := range watches {
		w.mu.Lock()
		var worst time.Duration
		for j := 1; j < len(w.beats); j++ {
			worst = max(worst, w.beats[j].Sub(w.beats[j-1]))
		}
		worst = max(worst, end.Sub(w.beats[len(w.beats)-1]))
		n, err := len(w.beats)-1, w.err
		w.mu.Unlock()
		if err != nil && !isAborted(err) {
			t.Errorf("healthy tablet %d was dropped: %v", i, err)
		}
		if worst > 2*hb {
			t.Errorf("healthy tablet %d: %d heartbeats, longest gap %v, want at most %v", i, n, worst, 2*hb)
		}
		t.Logf("healthy tablet %d: %d heartbeats, longest gap %v", i, n, worst.Round(time.Millisecond))
	}
	if !dropped {
		t.Fatalf("open sockets %v after 30 s, want the %d healthy ones: the dead links were not all dropped",
			counter(t, reg, "kioskfeed_ws_connections", "", ""), healthy)
	}
}

// isAborted says err is this side's own Abort, not the server's doing.
func isAborted(err error) bool { return errors.Is(err, net.ErrClosed) }
