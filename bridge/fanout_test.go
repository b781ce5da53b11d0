package bridge_test

import (
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kioskfeed/kioskfeed/bridge"
	"github.com/kioskfeed/kioskfeed/bridge/bridgetest"
)

// TestFanoutWritersShareTheFeed: a feed's tablets are spread over the bridge's writers
// (three here, whatever the machine's cores), each writer delivers every event to each
// of its tablets once and in order, and a tablet that never reads is closed 1013 once
// its queue is full without holding back the tablets that share its writer or the
// others.
func TestFanoutWritersShareTheFeed(t *testing.T) {
	const writers, observers = 3, 6
	s := startStack(t, stackOpts{bridge: func(c *bridge.Config) {
		c.FanoutWriters = writers
		c.QueueFrames = 8
		c.WriteTimeout = time.Minute // the 1013 frame waits behind the backlog until read
		c.Heartbeat = time.Minute    // no drop for silence while the test publishes
	}})
	slow := s.liveSocket(t, "lobby") // the first tablet: the first writer's
	_ = slow.nc.(*net.TCPConn).SetReadBuffer(64 << 10)
	pumps := make([]*pump, observers)
	for i := range pumps {
		c, _ := s.connect(t, s.pair(t, "lobby"), 0, "")
		if _, _, _, err := c.Collect(wait); err != nil {
			t.Fatal(err)
		}
		pumps[i] = startPump(c)
		defer pumps[i].close(t)
	}
	// Seven tablets, each given to the writer with the fewest of the feed's: 3, 2, 2.
	// The slow one, the first, shares its writer with two observers.
	if got, want := s.br.WriterLoads("lobby"), []int{2, 2, 3}; !slices.Equal(got, want) {
		t.Fatalf("tablets per writer = %v, want %v", got, want)
	}

	// 400 events of 32 KiB: about three times what the kernel's buffers of the slow
	// socket hold. They go out in steps of 4 (half the queue), each step read by every
	// observer before the next, so only the slow tablet can fall behind.
	const events, step = 400, 4
	pad := strings.Repeat("x", 32<<10)
	var want []uint64
	got := make([][]uint64, observers)
	for len(want) < events {
		for range step {
			want = append(want, s.publish(t, "lobby", "item", fmt.Sprintf(`{"n":%d,"pad":%q}`, len(want), pad)))
		}
		for i, p := range pumps {
			for len(got[i]) < len(want) {
				got[i] = append(got[i], p.expect(t, "event").Seq())
			}
		}
	}
	for i := range got {
		if !slices.Equal(got[i], want) {
			t.Fatalf("observer %d got %v\nwant %v", i, got[i], want)
		}
	}
	code, err := bridgetest.ReadClose(slow.r, 30*time.Second)
	if err != nil || code != 1013 {
		t.Fatalf("slow tablet: close = %d, %v; want 1013", code, err)
	}
	// The slow tablet left its writer; the others still own theirs.
	deadline := time.Now().Add(wait)
	for !slices.Equal(s.br.WriterLoads("lobby"), []int{2, 2, 2}) {
		if time.Now().After(deadline) {
			t.Fatalf("tablets per writer after the 1013 = %v, want [2 2 2]", s.br.WriterLoads("lobby"))
		}
		time.Sleep(10 * time.Millisecond)
	}
}
